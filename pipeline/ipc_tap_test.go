package pipeline

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/apache/arrow/go/v17/arrow/array"

	"github.com/stitch-xdr/stitch/connectors/ipc"
	"github.com/stitch-xdr/stitch/internal/simulator"
	"github.com/stitch-xdr/stitch/operators/normalize"
)

// A batch whose Arrow encoding is larger than a record may be goes out as
// several records of the same table and tenant, each under the limit,
// which together hold every row once, in order.
func TestHuntingRecordsOverTheLimitAreSplitByRows(t *testing.T) {
	batches := simulatedBatches(t, 20000, normalize.New(normalize.WithBatchRows(1<<20)), simulator.Seed(9))
	var big normalize.Batch
	for _, b := range batches {
		if big.Record == nil || b.Record.NumRows() > big.Record.NumRows() {
			big = b
		}
	}
	whole, err := ipc.NewEncoder(nil, ipc.LZ4).Encode(big)
	if err != nil {
		t.Fatal(err)
	}
	const limit = 32 << 10
	if len(whole.Value) < 4*limit {
		t.Fatalf("the largest batch (%s, %d rows) encodes to %d bytes: too small to test a %d-byte limit", big.Table, big.Record.NumRows(), len(whole.Value), limit)
	}
	tap := &ipcTap{prefix: "hunting.", enc: ipc.NewEncoder(nil, ipc.LZ4), max: limit}
	tx := &recordingTxn{}
	if err := tap.Batch(context.Background(), big, tx); err != nil {
		t.Fatal(err)
	}
	if len(tx.recs) < 4 {
		t.Fatalf("%d records for %d bytes at a limit of %d", len(tx.recs), len(whole.Value), limit)
	}
	var rows int64
	for i, r := range tx.recs {
		if len(r.Value) > limit {
			t.Fatalf("record %d: %d bytes, over the limit of %d", i, len(r.Value), limit)
		}
		var hs []ipc.Header
		for _, h := range r.Headers {
			hs = append(hs, ipc.Header{Key: h.Key, Value: string(h.Value)})
		}
		b, err := ipc.Decode(r.Value, hs, nil)
		if err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
		if r.Topic != "hunting."+big.Table || b.Table != big.Table || b.Tenant != big.Tenant {
			t.Fatalf("record %d: topic %s, table %s, tenant %s; want %s of %s", i, r.Topic, b.Table, b.Tenant, big.Table, big.Tenant)
		}
		want := big.Record.NewSlice(rows, rows+b.Record.NumRows())
		if !array.RecordEqual(want, b.Record) {
			t.Fatalf("record %d: rows %d..%d differ from the batch's", i, rows, rows+b.Record.NumRows())
		}
		want.Release()
		rows += b.Record.NumRows()
		b.Release()
	}
	if rows != big.Record.NumRows() {
		t.Fatalf("%d rows in the records, the batch had %d", rows, big.Record.NumRows())
	}
}

// A single row larger than a record may be cannot be split: it is a
// dead letter with its reason, table and size, and the rows beside it
// still go out.
func TestHuntingRowTooLargeIsADeadLetter(t *testing.T) {
	batches := simulatedBatches(t, 2000, normalize.New(normalize.WithBatchRows(1<<20)), simulator.Seed(11))
	var b normalize.Batch
	for _, x := range batches {
		if x.Table == "DeviceProcessEvents" {
			b = x
		}
	}
	if b.Record == nil || b.Record.NumRows() < 4 {
		t.Fatal("no DeviceProcessEvents batch to test with")
	}
	// A limit below any one row's record (its schema alone is larger):
	// every row is too large.
	tap := &ipcTap{prefix: "hunting.", enc: ipc.NewEncoder(nil, ipc.LZ4), max: 100, deadLetter: "deadletter", keep: 64}
	tx := &recordingTxn{}
	if err := tap.Batch(context.Background(), b, tx); err != nil {
		t.Fatal(err)
	}
	var dead int
	for _, r := range tx.recs {
		if r.Topic != "deadletter" {
			continue
		}
		dead++
		var d struct {
			Reason, Table, Value string
			Bytes                int
			Truncated            bool
		}
		if err := json.Unmarshal(r.Value, &d); err != nil || d.Reason != "row_too_large" || d.Table != "DeviceProcessEvents" ||
			d.Bytes <= tap.max || len(d.Value) != 64 || !d.Truncated {
			t.Fatalf("dead letter %s (%v)", r.Value, err)
		}
	}
	if int64(dead) != b.Record.NumRows() {
		t.Fatalf("%d dead letters for %d rows each too large", dead, b.Record.NumRows())
	}
}
