package pipeline

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/stitch-xdr/stitch/connectors/kafka"
)

// A slow downstream (a cluster that takes 50 ms to acknowledge every
// produce) slows the pipeline down, not its results: the same incidents,
// dead letters and hunting rows as a replay on a fast broker, each once.
func TestSlowBrokerSlowsButLosesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the pipeline twice")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	dir := t.TempDir()
	inputs := append(writeSim(t, dir, 3000, "sim.jsonl"), filepath.Join("..", "testdata", "replay", "mixed-bad.jsonl"))
	cfg := Default()
	cfg.Topics.Partitions = 2
	cfg.Kafka.CommitInterval = Duration(200 * time.Millisecond)
	cfg.Hunting.RetentionEvery = 0
	cfg.Hunting.RollAge = Duration(time.Second) // as replay does: rows are committed when a segment rolls

	ref := cfg
	ref.State.Dir = filepath.Join(dir, "ref")
	t0 := time.Now()
	refSum, out, _ := replay(t, ref, inputs...)
	t.Logf("reference replay: %v", time.Since(t0))
	want := latestIncidents(t, filepath.Join(out, "incidents.jsonl"))

	const latency = 50 * time.Millisecond
	b, err := kafka.StartBroker(kafka.DefaultPartitions(2), kafka.ProduceLatency(latency))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.Addrs()...), kgo.ProducerBatchMaxBytes(int32(kafka.MaxLineBytes)))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if _, err := kadm.NewClient(cl).CreateTopic(ctx, 1, 1, nil, "probe"); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: "probe", Value: []byte("x")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took < latency {
		t.Fatalf("a produce took %v on the slow broker: the latency is not in effect", took)
	}
	cfg.State.Dir = filepath.Join(dir, "slow")
	cfg.Hunting.Dir = filepath.Join(dir, "slow-hunting")
	p, err := New(cfg, WithBrokers(b.Addrs()))
	if err != nil {
		t.Fatal(err)
	}
	if err := p.EnsureTopics(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := kafka.ProduceFiles(ctx, cl, cfg.Topics.Inputs[0], inputs, kafka.KeyByTenant()); err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- p.Run(runCtx) }()
	t0 = time.Now()
	if err := p.WaitIdle(ctx, 100*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	t.Logf("pipeline on the slow broker: idle after %v", time.Since(t0))
	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	got := p.Totals()
	if got.RecordsRead != refSum.RecordsRead || !maps.Equal(got.Normalized, refSum.Normalized) || !maps.Equal(got.HuntingRows, refSum.HuntingRows) {
		t.Errorf("slow broker: read %d, normalized %v, hunting rows %v\nfast broker: read %d, normalized %v, hunting rows %v",
			got.RecordsRead, got.Normalized, got.HuntingRows, refSum.RecordsRead, refSum.Normalized, refSum.HuntingRows)
	}
	cc := kafka.ClientConfig{Brokers: b.Addrs()}
	var dead int
	if _, err := kafka.Drain(ctx, cc, cfg.Topics.DeadLetter, 300*time.Millisecond, func(*kgo.Record) error { dead++; return nil }); err != nil {
		t.Fatal(err)
	}
	if refDead := len(readDeadLetters(t, out)); dead != refDead || dead == 0 {
		t.Errorf("slow broker: %d dead letters, fast broker %d (want the same, and some)", dead, refDead)
	}
	incs := map[string][]byte{}
	versions := map[string]int{}
	if _, err := kafka.Drain(ctx, cc, cfg.Topics.Incidents, 300*time.Millisecond, func(r *kgo.Record) error {
		incs[string(r.Key)] = slices.Clone(r.Value)
		var v struct {
			Version int `json:"version"`
		}
		json.Unmarshal(r.Value, &v)
		versions[fmt.Sprintf("%s@%d", r.Key, v.Version)]++
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	for k, n := range versions {
		if n > 1 {
			t.Errorf("incident version %q published %d times", k, n)
		}
	}
	if g, w := groupings(t, incs), groupings(t, want); !slices.Equal(g, w) {
		t.Fatalf("incidents on the slow broker:\n%s\nwant (fast broker):\n%s", strings.Join(g, "\n"), strings.Join(w, "\n"))
	}
}
