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

	"github.com/goccy/go-yaml"
)

// The shipped stitch.yaml is the defaults written out: loading it must give
// exactly Default(), so the file never lies about what stitch does.
func TestShippedConfigIsTheDefault(t *testing.T) {
	cfg, err := Load("../configs/stitch.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if want := Default(); !reflect.DeepEqual(cfg, want) {
		t.Fatalf("configs/stitch.yaml differs from Default():\n got %+v\nwant %+v", cfg, want)
	}
}

// Every key of the shipped config has a row in configs/README.md.
func TestConfigKeysDocumented(t *testing.T) {
	data, err := os.ReadFile("../configs/stitch.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var tree map[string]any
	if err := yaml.Unmarshal(data, &tree); err != nil {
		t.Fatal(err)
	}
	doc, err := os.ReadFile("../configs/README.md")
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	var walk func(prefix string, v any)
	walk = func(prefix string, v any) {
		m, ok := v.(map[string]any)
		if !ok {
			keys = append(keys, prefix)
			return
		}
		for k, sub := range m {
			p := k
			if prefix != "" {
				p = prefix + "." + k
			}
			walk(p, sub)
		}
	}
	walk("", tree)
	if len(keys) < 50 {
		t.Fatalf("only %d keys found in stitch.yaml", len(keys))
	}
	for _, k := range keys {
		if !strings.Contains(string(doc), "`"+k+"`") {
			t.Errorf("config key %s is not documented in configs/README.md", k)
		}
	}
}

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
	os.WriteFile(path, []byte("correlate:\n  window: 2d\nnormalize:\n  batch_rows: 0\nsimulate:\n  mode: maybe\n"), 0o644)
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
	for _, want := range []string{"normalize.batch_rows", "simulate.mode"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("validation error does not name %s: %v", want, err)
		}
	}
	cfg = Default()
	cfg.ApplyEnv(func(k string) string {
		return map[string]string{EnvBrokers: "a:1, b:2", EnvSASLPassword: "s3cret"}[k]
	})
	if !reflect.DeepEqual(cfg.Kafka.Brokers, []string{"a:1", "b:2"}) || cfg.Kafka.SASL.Password != "s3cret" {
		t.Fatalf("env not applied: %+v", cfg.Kafka)
	}
	if cfg.Embedded() || cfg.Simulating() {
		t.Fatal("with brokers the simulator must be off by default")
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
