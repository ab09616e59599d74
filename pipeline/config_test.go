package pipeline

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"
)

func TestConfigUnknownKeyNamesTheLine(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.yaml")
	os.WriteFile(path, []byte("kafka:\n  group: x\n  comit_interval: 2s\n"), 0o644)
	_, err := Load(path)
	if err == nil {
		t.Fatal("unknown key accepted")
	}
	if !regexp.MustCompile(`\b3\b`).MatchString(err.Error()) || !strings.Contains(err.Error(), "comit_interval") {
		t.Fatalf("error does not name the key and its line: %v", err)
	}
}

func TestConfigOverridesAndValidation(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.yaml")
	os.WriteFile(path, []byte("kafka:\n  compression: brotli\ncorrelate:\n  window: 2d\nnormalize:\n  batch_rows: 0\ntopics:\n  partitions: 0\n  replication_factor: 0\nrespond:\n  playbooks: no-such-playbooks.yaml\n  webhook_attempts: 0\n  webhook_backoff: -1s\n"), 0o644)
	cfg, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Correlate.Window.D() != 48*time.Hour {
		t.Fatalf("window = %v", cfg.Correlate.Window.D())
	}
	if cfg.Topics.Incidents != "incidents" {
		t.Fatal("defaults lost under a partial file")
	}
	err = cfg.Validate()
	for _, want := range []string{"normalize.batch_rows", "topics.partitions", "respond.playbooks: playbooks: stat no-such-playbooks.yaml",
		"topics.replication_factor: 0 is out of range: must be -1 (the broker default) or at least 1",
		"respond.webhook_attempts: 0 is out of range: must be at least 1", "respond.webhook_backoff: -1s is out of range: must be 0s or more",
		`kafka.compression: "brotli" is not one of lz4, zstd, snappy, gzip, none`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("validation error does not name %s: %v", want, err)
		}
	}
	cfg = Default()
	if err := cfg.ApplyEnv(func(k string) string {
		return map[string]string{"STITCH_BROKERS": "a:1, b:2", "STITCH_SASL_PASSWORD": "s3cret"}[k]
	}); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(cfg.Kafka.Brokers, []string{"a:1", "b:2"}) || cfg.Kafka.SASL.Password != "s3cret" {
		t.Fatalf("env not applied: %+v", cfg.Kafka)
	}
	if cfg.Embedded() {
		t.Fatal("with brokers the run is not embedded")
	}
}

// Default() is the default tags; spot-check the kinds of key they fill.
func TestDefaultComesFromTheTags(t *testing.T) {
	cfg := Default()
	if cfg.Kafka.ClientID != "stitch" || cfg.Kafka.Brokers != nil || cfg.Hunting.Retention.D() != 30*24*time.Hour ||
		!reflect.DeepEqual(cfg.Topics.Inputs, []string{"signals"}) || cfg.Topics.ReplicationFactor != -1 || !cfg.Topics.Create {
		t.Fatalf("defaults: %+v", cfg)
	}
	for d, want := range map[Duration]string{
		Duration(30 * 24 * time.Hour): "30d", Duration(24 * time.Hour): "24h", Duration(time.Minute): "1m", Duration(90 * time.Second): "90s",
		Duration(1500 * time.Millisecond): "1.5s", 0: "0s",
	} {
		if d.String() != want {
			t.Errorf("Duration(%v) writes %q, want %q", d.D(), d.String(), want)
		}
	}
}

func TestBackoffGrowsAndCaps(t *testing.T) {
	var total time.Duration
	prev := time.Duration(0)
	for n := 1; n <= 10; n++ {
		d := backoff(n)
		if d < prev || d > 30*time.Second {
			t.Fatalf("backoff(%d) = %v after %v", n, d, prev)
		}
		prev = d
		total += d
	}
	if total < time.Minute || total > 3*time.Minute {
		t.Fatalf("ten failures span %v; want one to three minutes", total)
	}
}

func TestFatalErrorsKeepTheirCause(t *testing.T) {
	cause := errors.New("pebble: no space left on device")
	err := fmt.Errorf("wrapped: %w", fatal(cause))
	if !errors.Is(err, errFatal) || !errors.Is(err, cause) || !strings.Contains(err.Error(), "no space left") {
		t.Fatalf("fatal error lost its cause or mark: %v", err)
	}
}
