package pipeline

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// A drained input's last hunting rows are committed as soon as normalize
// has committed all of its input and the sink has read what it produced,
// not two commit intervals later; a trickle that follows does not roll a
// segment per record (the caught-up roll comes at most once per roll age).
func TestHuntingRollsWhenInputDrained(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the pipeline")
	}
	ctx, addrs, cfg := countingSetup(t, 2)
	dir := t.TempDir()
	cfg.State.Dir = filepath.Join(dir, "state")
	cfg.Hunting.Enabled = true
	cfg.Hunting.Dir = filepath.Join(dir, "hunting")
	cfg.Hunting.RetentionEvery = 0
	// The idle roll of a pause waits two commit intervals (6 s here);
	// normalize still commits a drained input at once (its transaction
	// ends early once the input caught up).
	const interval = 3 * time.Second
	cfg.Kafka.CommitInterval = Duration(interval)
	p := newTestPipeline(t, ctx, cfg, addrs, "hunting-idle-test")
	p.start(ctx)
	for !p.Ready() {
		time.Sleep(10 * time.Millisecond)
	}

	const tenant = "tenant-idle"
	produce := func(from, n int) {
		recs := make([]*kgo.Record, n)
		for i := range recs {
			recs[i] = &kgo.Record{Topic: cfg.Topics.Inputs[0], Key: []byte(tenant), Value: telemetryRecord(tenant, from+i, time.Now())}
		}
		p.produce(ctx, recs...)
	}
	rows := func() int64 { return p.Totals().HuntingTotal() }
	normalized := func() int64 { return p.Totals().Stages["normalize"].RecordsIn[cfg.Topics.Inputs[0]] }

	const n = 200
	produce(0, n)
	var inputDone, rowsDone time.Time
	for limit := time.Now().Add(4 * interval); rowsDone.IsZero(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(limit) {
			t.Fatalf("after %s: normalize committed %d records, Parquet holds %d rows of %d", 4*interval, normalized(), rows(), n)
		}
		if inputDone.IsZero() && normalized() >= n {
			inputDone = time.Now()
		}
		if rows() >= n {
			rowsDone = time.Now()
		}
	}
	if inputDone.IsZero() {
		inputDone = rowsDone
	}
	took := rowsDone.Sub(inputDone)
	t.Logf("normalize's commit to the hunting segment's: %s (idle roll after a pause: %s)", took.Round(time.Millisecond), idleRollAfter(interval))
	if took > interval {
		t.Fatalf("the drained input's hunting rows were committed %s after normalize's commit, want under %s", took, interval)
	}

	// A trickle (a record every 300 ms, each committed by normalize on
	// its own) right after that roll: no segment rolls until the pause
	// rule (two intervals without a record) or the roll age does.
	for i := range 8 {
		produce(n+i, 1)
		time.Sleep(300 * time.Millisecond)
	}
	if got := rows(); got != n {
		t.Fatalf("a trickle within the roll age of the last roll committed %d more rows: a segment per pause", got-n)
	}
	if got := normalized(); got < n+4 {
		t.Fatalf("normalize committed only %d of the trickle's 8 records in its 2.4 s", got-n)
	}
}
