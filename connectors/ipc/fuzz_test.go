package ipc

import (
	"bytes"
	"testing"

	"github.com/apache/arrow/go/v17/arrow/memory"

	"github.com/stitch-xdr/stitch/connectors/parquet/parquettest"
	"github.com/stitch-xdr/stitch/operators/normalize"
)

// FuzzDecode: whatever bytes arrive on a hunting topic, Decode returns a
// batch or an error, never panics, and leaks no Arrow memory either way; a
// batch it returns is one whose columns all have its row count. Seeds:
// encoded batches of a few tables, whole, cut short and with bytes flipped.
func FuzzDecode(f *testing.F) {
	mem := memory.NewGoAllocator()
	for _, table := range []string{"DeviceEvents", "AlertEvidence", "EmailEvents"} {
		in := parquettest.Batch(mem, parquettest.Schema(table, "Evolved"), "t1", rows(3))
		msg, err := Encode(in)
		in.Release()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(msg.Value)
		f.Add(msg.Value[:len(msg.Value)/2])
		flipped := bytes.Clone(msg.Value)
		for i := 64; i < len(flipped); i += 101 {
			flipped[i] ^= 0x5a
		}
		f.Add(flipped)
	}
	f.Add([]byte{})
	f.Add([]byte(`{"records":[]}`))
	f.Fuzz(func(t *testing.T, value []byte) {
		mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
		defer mem.AssertSize(t, 0)
		b, err := Decode(value, []Header{{HeaderTable, "DeviceEvents"}, {HeaderTenant, "t1"}}, mem)
		if err != nil {
			if b.Record != nil {
				t.Fatalf("an error (%v) with a record", err)
			}
			return
		}
		defer b.Release()
		for i, c := range b.Record.Columns() {
			if int64(c.Len()) != b.Record.NumRows() {
				t.Fatalf("column %d has %d rows, the batch %d", i, c.Len(), b.Record.NumRows())
			}
		}
		for i := 0; i < int(b.Record.NumRows()); i++ { // the cells read without a panic
			_ = normalize.Strings(b.Record, "DeviceName").Value(i)
		}
	})
}
