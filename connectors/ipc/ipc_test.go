package ipc

import (
	"bytes"
	"testing"
	"time"

	"github.com/apache/arrow/go/v17/arrow/array"
	"github.com/apache/arrow/go/v17/arrow/memory"
	"github.com/klauspost/compress/zstd"

	"github.com/stitch-xdr/stitch/connectors/parquet/parquettest"
	"github.com/stitch-xdr/stitch/operators/normalize"
)

func rows(n int) []parquettest.Row {
	base := time.Date(2024, 5, 1, 10, 0, 0, 0, time.UTC)
	out := make([]parquettest.Row, n)
	for i := range out {
		out[i] = parquettest.Row{Time: base.Add(time.Duration(n-i) * time.Second), ID: int64(i)}
	}
	return out
}

// Every table's batch survives Encode/Decode cell for cell, with the
// headers a consumer routes on.
func TestRoundTripAllTables(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	enc := NewEncoder(mem, Zstd)
	for _, table := range normalize.Tables() {
		in := parquettest.Batch(mem, parquettest.Schema(table, "Evolved"), "tenant-1", rows(50))
		msg, err := enc.Encode(in)
		if err != nil {
			t.Fatalf("%s: %v", table, err)
		}
		if string(msg.Key) != "tenant-1" {
			t.Errorf("%s: key %q", table, msg.Key)
		}
		want := map[string]string{HeaderContentType: ContentType, HeaderTable: table, HeaderTenant: "tenant-1", HeaderSchemaVersion: "1"}
		for _, h := range msg.Headers {
			if want[h.Key] != h.Value {
				t.Errorf("%s: header %s=%q, want %q", table, h.Key, h.Value, want[h.Key])
			}
			delete(want, h.Key)
		}
		if len(want) != 0 {
			t.Errorf("%s: missing headers %v", table, want)
		}
		out, err := Decode(msg.Value, msg.Headers, mem)
		if err != nil {
			t.Fatalf("%s: %v", table, err)
		}
		if out.Table != table || out.Tenant != "tenant-1" {
			t.Errorf("decoded %s/%s", out.Table, out.Tenant)
		}
		if !out.MinTime.Equal(in.MinTime) || !out.MaxTime.Equal(in.MaxTime) {
			t.Errorf("%s: times %v..%v, want %v..%v", table, out.MinTime, out.MaxTime, in.MinTime, in.MaxTime)
		}
		if !out.Record.Schema().Equal(in.Record.Schema()) {
			t.Errorf("%s: schema changed:\n%s\n%s", table, out.Record.Schema(), in.Record.Schema())
		}
		if v, _ := out.Record.Schema().Metadata().GetValue(normalize.MetaTable); v != table {
			t.Errorf("%s: schema metadata lost", table)
		}
		if !array.RecordEqual(out.Record, in.Record) {
			t.Errorf("%s: records differ", table)
		}
		in.Release()
		out.Release()
	}
}

// Without headers (a tool that dropped them) the table still comes from the
// schema metadata.
func TestDecodeWithoutHeaders(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	in := parquettest.Batch(mem, parquettest.Schema("EmailEvents"), "t", rows(3))
	defer in.Release()
	msg, err := Encode(in)
	if err != nil {
		t.Fatal(err)
	}
	out, err := Decode(msg.Value, nil, mem)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Release()
	if out.Table != "EmailEvents" || out.Record.NumRows() != 3 {
		t.Errorf("got %s with %d rows", out.Table, out.Record.NumRows())
	}
}

// Bad input is an error value, never a panic, and leaks nothing.
func TestDecodeRejectsBadInput(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	in := parquettest.Batch(mem, parquettest.Schema("DeviceEvents"), "t", rows(20))
	msg, err := Encode(in)
	in.Release()
	if err != nil {
		t.Fatal(err)
	}
	cases := map[string]struct {
		value   []byte
		headers []Header
	}{
		"empty":             {nil, nil},
		"json":              {[]byte(`{"records":[]}`), nil},
		"truncated":         {msg.Value[:len(msg.Value)/2], nil},
		"schema only":       {msg.Value[:200], nil},
		"wrong type header": {msg.Value, []Header{{HeaderContentType, "application/json"}}},
	}
	flipped := bytes.Clone(msg.Value)
	for i := 100; i < len(flipped); i += 37 {
		flipped[i] ^= 0xff
	}
	cases["bit flips"] = struct {
		value   []byte
		headers []Header
	}{flipped, nil}
	for name, c := range cases {
		b, err := Decode(c.value, c.headers, mem)
		if err == nil {
			if name == "bit flips" { // may land in data bytes only: still a valid stream
				b.Release()
				continue
			}
			b.Release()
			t.Errorf("%s: decoded without error", name)
		}
	}
}

// BenchmarkEncode compares Arrow body compression (what Encode does) with a
// zstd frame around an uncompressed stream, on the same batch.
func BenchmarkEncode(b *testing.B) {
	mem := memory.NewGoAllocator()
	in := parquettest.Batch(mem, parquettest.Schema("DeviceProcessEvents"), "t", rows(2000))
	defer in.Release()
	b.Run("arrow-zstd", func(b *testing.B) {
		enc := NewEncoder(mem, Zstd)
		var size int
		for b.Loop() {
			m, err := enc.Encode(in)
			if err != nil {
				b.Fatal(err)
			}
			size = len(m.Value)
		}
		b.ReportMetric(float64(size)/2000, "bytes/row")
	})
	b.Run("frame-zstd", func(b *testing.B) {
		zw, _ := zstd.NewWriter(nil)
		var buf bytes.Buffer
		var size int
		for b.Loop() {
			buf.Reset()
			if err := arrowipcWriter(&buf, in); err != nil {
				b.Fatal(err)
			}
			out := zw.EncodeAll(buf.Bytes(), nil)
			size = len(out)
		}
		b.ReportMetric(float64(size)/2000, "bytes/row")
	})
}

// Each body compression decodes back to the same cells.
func TestRoundTripEachCompression(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	in := parquettest.Batch(mem, parquettest.Schema("DeviceProcessEvents"), "tenant-1", rows(500))
	defer in.Release()
	sizes := map[Compression]int{}
	for _, codec := range []Compression{Zstd, LZ4, None} {
		msg, err := NewEncoder(mem, codec).Encode(in)
		if err != nil {
			t.Fatalf("%s: %v", codec, err)
		}
		sizes[codec] = len(msg.Value)
		out, err := Decode(msg.Value, msg.Headers, mem)
		if err != nil {
			t.Fatalf("%s: %v", codec, err)
		}
		if !array.RecordEqual(out.Record, in.Record) {
			t.Errorf("%s: decoded cells differ", codec)
		}
		out.Release()
	}
	if !(sizes[Zstd] < sizes[LZ4] && sizes[LZ4] < sizes[None]) {
		t.Errorf("sizes %v: want zstd < lz4 < none", sizes)
	}
	if _, err := ParseCompression("snappy"); err == nil {
		t.Error("snappy accepted")
	}
}
