package correlate

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow/go/v17/arrow"

	"github.com/stitch-xdr/stitch/internal/simulator"
	"github.com/stitch-xdr/stitch/operators/normalize"
)

// The facts of a batch do not depend on whether Extract canonicalised its
// columns once per distinct value (memoRows) or row by row, or an
// Extractor from what it kept of earlier batches: the same simulated
// stream (attack stories, three tenants, mixed-case names and well-known
// accounts) gives byte-identical facts records, chunked or not.
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
	encode := func(rows int, x *Extractor, spoil bool) (out [][]byte, memoised int) {
		defer func(old int) { memoRows = old }(memoRows)
		memoRows = rows
		for _, b := range batches {
			if b.Record.NumRows() >= int64(rows) {
				memoised++
			}
			var f *Facts
			if x != nil {
				f = x.Extract(b)
			} else {
				f = Extract(b)
			}
			if f == nil {
				out = append(out, nil)
			}
			for _, max := range []int{0, 2048} {
				if f == nil {
					break
				}
				chunks, _, err := f.MarshalChunks(max)
				if err != nil {
					t.Fatal(err)
				}
				out = append(out, chunks...)
			}
			if spoil {
				// What the Extractor keeps must be its own: once the
				// facts are encoded, spoil the batch's strings, as the
				// recycled memory of a released batch would be.
				spoilStrings(b.Record)
			}
		}
		return out, memoised
	}
	memo, m := encode(1, nil, false)
	plain, p := encode(1<<30, nil, false)
	if m != len(batches) || p != 0 || len(batches) < 50 {
		t.Fatalf("%d batches, %d memoised, %d not: the test does not compare the two paths", len(batches), m, p)
	}
	same := func(what string, got [][]byte) {
		t.Helper()
		if len(got) != len(plain) {
			t.Fatalf("%s gave %d records, row by row %d", what, len(got), len(plain))
		}
		for i := range got {
			if !bytes.Equal(got[i], plain[i]) {
				t.Fatalf("record %d differs:\n%s %.300s\nrow by row %.300s", i, what, got[i], plain[i])
			}
		}
	}
	same("memoised", memo)
	whole, _ := encode(1<<30, NewExtractor(), false)
	same("an Extractor", whole)
	// A small bound empties the Extractor's memory many times over.
	defer func(old, oldID int) { maxCanonMemo, maxIdentityMemo = old, oldID }(maxCanonMemo, maxIdentityMemo)
	maxCanonMemo, maxIdentityMemo = 50, 20
	x := NewExtractor()
	kept, _ := encode(1<<30, x, true)
	if x.canons.entries == 0 || len(x.canons.slots) < 5 || x.idents.entries == 0 || len(x.idents.slots) < 3 {
		t.Fatalf("the Extractor kept %d values in %d slots and %d identities in %d: it did not memoise",
			x.canons.entries, len(x.canons.slots), x.idents.entries, len(x.idents.slots))
	}
	same("an Extractor at a small bound", kept) // last: it spoils the batches
	for name, slot := range x.canons.slots {
		for k := range slot {
			if strings.ContainsRune(k, 0xFFFD) || strings.Contains(k, "\xff") {
				t.Fatalf("slot %s keeps %q: a view of a batch's memory, not a copy", name, k)
			}
		}
	}
}

// spoilStrings overwrites the bytes of rec's string columns (and string
// dictionaries).
func spoilStrings(rec arrow.Record) {
	spoil := func(d arrow.ArrayData) {
		if d.DataType().ID() == arrow.STRING && len(d.Buffers()) > 2 && d.Buffers()[2] != nil {
			b := d.Buffers()[2].Bytes()
			for i := range b {
				b[i] = 0xFF
			}
		}
	}
	for _, col := range rec.Columns() {
		spoil(col.Data())
		if col.DataType().ID() == arrow.DICTIONARY {
			spoil(col.Data().Dictionary())
		}
	}
}

// Past its bound an Extractor's memory empties the slot with the most
// values, so that a column of distinct values (file hashes) churns on its
// own and the devices every batch repeats stay memoised.
func TestCanonMemoEmptiesTheLargestSlot(t *testing.T) {
	defer func(old int) { maxCanonMemo = old }(maxCanonMemo)
	maxCanonMemo = 100
	var m canonMemo
	dev, hashes := m.slot("device id"), m.slot("SHA256")
	for i := range 10 {
		m.put(dev, fmt.Sprint("ws-", i), canon{}, maxCanonMemo)
	}
	for i := range 1000 {
		m.put(hashes, fmt.Sprint("hash-", i), canon{}, maxCanonMemo)
		if m.entries > maxCanonMemo || m.entries != len(dev)+len(hashes) {
			t.Fatalf("after %d hashes: %d values counted, %d held, bound %d", i+1, m.entries, len(dev)+len(hashes), maxCanonMemo)
		}
	}
	if len(dev) != 10 {
		t.Fatalf("the devices' slot holds %d of its 10 values: the hashes' churn emptied it", len(dev))
	}
}
