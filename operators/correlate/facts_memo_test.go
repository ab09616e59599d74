package correlate

import (
	"bytes"
	"testing"
	"time"

	"github.com/stitch-xdr/stitch/internal/simulator"
	"github.com/stitch-xdr/stitch/operators/normalize"
)

// The facts of a batch do not depend on whether Extract canonicalised its
// columns once per distinct value (memoRows) or row by row: the same
// simulated stream (attack stories, three tenants, mixed-case names and
// well-known accounts) gives byte-identical facts records, chunked or not.
func TestExtractMemoSameFacts(t *testing.T) {
	sim := simulator.New(simulator.Seed(7), simulator.Tenants(3), simulator.AttackEvery(300))
	n := normalize.New(normalize.WithBatchAge(24 * time.Hour))
	defer n.Close()
	var batches []normalize.Batch
	emit := func(b normalize.Batch) { batches = append(batches, b) }
	for range 20_000 {
		_, v := sim.Next(nil)
		n.Add(normalize.Input{Value: v}, emit, func(normalize.DeadLetter) {})
	}
	n.Flush(emit)
	defer func() {
		for _, b := range batches {
			b.Release()
		}
	}()
	encode := func(rows int) (out [][]byte, memoised int) {
		defer func(old int) { memoRows = old }(memoRows)
		memoRows = rows
		for _, b := range batches {
			if b.Record.NumRows() >= int64(rows) {
				memoised++
			}
			f := Extract(b)
			if f == nil {
				out = append(out, nil)
				continue
			}
			for _, max := range []int{0, 2048} {
				chunks, _, err := f.MarshalChunks(max)
				if err != nil {
					t.Fatal(err)
				}
				out = append(out, chunks...)
			}
		}
		return out, memoised
	}
	memo, m := encode(1)
	plain, p := encode(1 << 30)
	if m != len(batches) || p != 0 || len(batches) < 50 {
		t.Fatalf("%d batches, %d memoised, %d not: the test does not compare the two paths", len(batches), m, p)
	}
	if len(memo) != len(plain) {
		t.Fatalf("memoised extraction gave %d records, row by row %d", len(memo), len(plain))
	}
	for i := range memo {
		if !bytes.Equal(memo[i], plain[i]) {
			t.Fatalf("record %d differs:\nmemoised   %.300s\nrow by row %.300s", i, memo[i], plain[i])
		}
	}
}
