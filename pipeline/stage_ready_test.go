package pipeline

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// A small drain is done about when its records are, not a commit interval
// after the start: a stage with no input (correlate here, which reads
// normalize's facts; none come of the count stage's records) is ready once
// it has joined its group, where it was ready only when its first poll
// gave up, an interval later, and WaitIdle waits for every stage to be.
func TestSmallDrainDoesNotWaitForAnInterval(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the pipeline")
	}
	ctx, addrs, cfg := countingSetup(t, 2)
	cfg.Correlate.Enabled = true // a stateful stage without input
	cfg.State.Dir = filepath.Join(t.TempDir(), "state")
	const interval = 8 * time.Second
	cfg.Kafka.CommitInterval = Duration(interval)
	p := newTestPipeline(t, ctx, cfg, addrs, "ready-test", WithStage(countStage()))
	for _, tn := range []string{"t-a", "t-b", "t-c"} {
		p.produce(ctx, &kgo.Record{Topic: "count.in", Key: []byte(tn), Value: []byte("x")})
	}
	start := time.Now()
	p.start(ctx)
	if err := p.WaitIdle(ctx, 20*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	if n := p.Totals().Stages["count"].RecordsIn["count.in"]; n != 3 {
		t.Fatalf("idle after %s with %d of 3 records read", took, n)
	}
	t.Logf("idle %s after the start", took.Round(time.Millisecond))
	if took > interval/2 {
		t.Errorf("a 3-record drain took %s with a %s commit interval: a stage waited for its first poll to give up", took, interval)
	}
	if err := p.halt(); err != nil {
		t.Fatal(err)
	}
}
