package pipeline

import (
	"context"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/stitch-xdr/stitch/internal/simulator"
	"github.com/stitch-xdr/stitch/operators/correlate"
	"github.com/stitch-xdr/stitch/operators/normalize"
	"github.com/stitch-xdr/stitch/state"
)

// recordingTxn keeps what a transaction produced, in order.
type recordingTxn struct{ recs []*kgo.Record }

func (r *recordingTxn) Produce(_ context.Context, rec *kgo.Record) { r.recs = append(r.recs, rec) }
func (r *recordingTxn) Count(string, string, int64)                {}

// An alert whose evidence arrives in the same transaction is published with
// it from its first version: the facts writer puts evidence before alerts,
// so no incident starts "with no impacted device or user".
func TestFirstIncidentVersionHasItsEvidence(t *testing.T) {
	batches := simulatedBatches(t, 400, normalize.New(), simulator.Seed(3), simulator.AttackAtStart(), simulator.AttackEvery(0))
	// The alerts before their evidence: the order that made a first
	// version without devices or users.
	var alertsFirst []normalize.Batch
	for _, tables := range [][]string{{"AlertInfo"}, {"AlertEvidence"}} {
		for _, b := range batches {
			if b.Table == tables[0] {
				alertsFirst = append(alertsFirst, b)
			}
		}
	}
	for _, b := range batches {
		if b.Table != "AlertInfo" && b.Table != "AlertEvidence" {
			alertsFirst = append(alertsFirst, b)
		}
	}
	f := &factsWriter{topic: "facts"}
	tx := &recordingTxn{}
	ctx := context.Background()
	for _, b := range alertsFirst {
		if err := f.Batch(ctx, b, tx); err != nil {
			t.Fatal(err)
		}
		b.Release()
	}
	if err := f.Flush(ctx, tx); err != nil {
		t.Fatal(err)
	}

	first := map[string]string{}
	applyFacts(t, tx.recs, func(inc correlate.Incident) {
		if _, ok := first[inc.ID]; !ok {
			first[inc.ID] = inc.DisplayName
		}
	})
	if len(first) == 0 {
		t.Fatal("no incident: the story's alerts did not come out")
	}
	for id, name := range first {
		if strings.Contains(name, "no impacted device or user") {
			t.Errorf("incident %s's first version: %q", id, name)
		}
	}
}

// A batch whose facts would make a record larger than the producer or the
// cluster accepts (the failure that stopped normalize for good: every
// retry of the transaction failed with MESSAGE_TOO_LARGE) goes out as
// several records no larger than the limit, which give the same incidents.
func TestFactsOverTheRecordLimitGoOutInChunks(t *testing.T) {
	batches := simulatedBatches(t, 6000, normalize.New(normalize.WithBatchRows(1<<20)),
		simulator.Seed(5), simulator.AttackAtStart(), simulator.AttackEvery(500))
	write := func(max int) []*kgo.Record {
		f := &factsWriter{topic: "facts", max: max}
		tx := &recordingTxn{}
		for _, b := range batches {
			if err := f.Batch(context.Background(), b, tx); err != nil {
				t.Fatal(err)
			}
		}
		if err := f.Flush(context.Background(), tx); err != nil {
			t.Fatal(err)
		}
		return tx.recs
	}
	whole, chunked := write(0), write(8<<10)
	largest := 0
	for _, r := range whole {
		largest = max(largest, len(r.Value))
	}
	if largest <= 8<<10 {
		t.Fatalf("the largest facts record is %d bytes: the input does not test the limit", largest)
	}
	for _, r := range chunked {
		if len(r.Value) > 8<<10 {
			t.Fatalf("a %d-byte facts record with a limit of 8 KiB", len(r.Value))
		}
	}
	want, got := incidentsOf(t, whole), incidentsOf(t, chunked)
	if len(want) == 0 {
		t.Fatal("no incident: the stories' alerts did not come out")
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("%d records of at most 8 KiB gave other incidents than %d records:\n%s\nwant:\n%s",
			len(chunked), len(whole), strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// simulatedBatches normalizes n simulator records; the batches are
// released when the test ends.
func simulatedBatches(t *testing.T, n int, norm *normalize.Normalizer, opts ...simulator.Option) []normalize.Batch {
	t.Helper()
	sim := simulator.New(opts...)
	var batches []normalize.Batch
	emit := func(b normalize.Batch) { batches = append(batches, b) }
	for i := range n {
		_, v := sim.Next(nil)
		norm.Add(normalize.Input{Topic: "signals", Offset: int64(i), Value: v}, emit,
			func(d normalize.DeadLetter) { t.Fatalf("dead letter %s", d.Reason) })
	}
	norm.Flush(emit)
	t.Cleanup(func() {
		for _, b := range batches {
			b.Release()
		}
	})
	return batches
}

// applyFacts applies facts records to a correlator, a transaction each,
// and hands on every incident version it publishes.
func applyFacts(t *testing.T, recs []*kgo.Record, each func(correlate.Incident)) {
	t.Helper()
	st, err := state.Open(filepath.Join(t.TempDir(), "correlate"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	cor, err := correlate.New(st)
	if err != nil {
		t.Fatal(err)
	}
	for i, rec := range recs {
		facts, err := correlate.UnmarshalFacts(rec.Value)
		if err != nil {
			t.Fatal(err)
		}
		if err := cor.Begin(); err != nil {
			t.Fatal(err)
		}
		incs, err := cor.ApplyOffset(0, facts, "facts", int64(i))
		if err != nil {
			t.Fatal(err)
		}
		if err := cor.Commit(); err != nil {
			t.Fatal(err)
		}
		for _, inc := range incs {
			each(inc)
		}
	}
}

// incidentsOf applies facts records (applyFacts) and returns each
// incident's alert ids, sorted.
func incidentsOf(t *testing.T, recs []*kgo.Record) []string {
	t.Helper()
	latest := map[string][]string{}
	applyFacts(t, recs, func(inc correlate.Incident) {
		var ids []string
		for _, a := range inc.Alerts {
			ids = append(ids, a.ID)
		}
		slices.Sort(ids)
		latest[inc.ID] = ids
	})
	var out []string
	for _, ids := range latest {
		out = append(out, strings.Join(ids, ","))
	}
	slices.Sort(out)
	return out
}
