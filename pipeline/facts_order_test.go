package pipeline

import (
	"context"
	"path/filepath"
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
	sim := simulator.New(simulator.Seed(3), simulator.AttackAtStart(), simulator.AttackEvery(0))
	norm := normalize.New()
	var batches []normalize.Batch
	emit := func(b normalize.Batch) { batches = append(batches, b) }
	for i := range 400 {
		_, v := sim.Next(nil)
		norm.Add(normalize.Input{Topic: "signals", Offset: int64(i), Value: v}, emit,
			func(d normalize.DeadLetter) { t.Fatalf("dead letter %s", d.Reason) })
	}
	norm.Flush(emit)
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

	st, err := state.Open(filepath.Join(t.TempDir(), "correlate"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	cor, err := correlate.New(st)
	if err != nil {
		t.Fatal(err)
	}
	first := map[string]string{}
	for i, rec := range tx.recs {
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
			if _, ok := first[inc.ID]; !ok {
				first[inc.ID] = inc.DisplayName
			}
		}
	}
	if len(first) == 0 {
		t.Fatal("no incident: the story's alerts did not come out")
	}
	for id, name := range first {
		if strings.Contains(name, "no impacted device or user") {
			t.Errorf("incident %s's first version: %q", id, name)
		}
	}
}
