package ipc

import (
	"bytes"
	"testing"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/array"
	arrowipc "github.com/apache/arrow/go/v17/arrow/ipc"
	"github.com/apache/arrow/go/v17/arrow/memory"

	"github.com/stitch-xdr/stitch/connectors/parquet/parquettest"
	"github.com/stitch-xdr/stitch/internal/simulator"
	"github.com/stitch-xdr/stitch/operators/normalize"
)

// reference is what Encode wrote before it kept a writer per schema, and
// what the topic's format is: one fresh arrowipc.Writer per batch.
func reference(t testing.TB, rec arrow.Record, codec Compression) []byte {
	t.Helper()
	var buf bytes.Buffer
	opts := []arrowipc.Option{arrowipc.WithSchema(rec.Schema())}
	switch codec {
	case LZ4:
		opts = append(opts, arrowipc.WithLZ4())
	case Zstd:
		opts = append(opts, arrowipc.WithZstd())
	}
	w := arrowipc.NewWriter(&buf, opts...)
	if err := w.Write(rec); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// simulatedBatches normalizes simulated records, committing every per
// records as the pipeline does, plus a generated batch of every table (the
// simulator does not send them all), one with a promoted column.
func simulatedBatches(t testing.TB, mem memory.Allocator, records, per int) []normalize.Batch {
	var out []normalize.Batch
	n := normalize.New(normalize.WithAllocator(mem))
	defer n.Close()
	emit := func(b normalize.Batch) { out = append(out, b) }
	dead := func(d normalize.DeadLetter) { t.Fatalf("dead letter: %s %s", d.Reason, d.Error) }
	sim := simulator.New(simulator.Seed(14), simulator.Tenants(3), simulator.AttackEvery(500))
	for i := range records {
		_, v := sim.Next(nil)
		n.Add(normalize.Input{Value: v}, emit, dead)
		if (i+1)%per == 0 {
			n.Flush(emit)
		}
	}
	n.Flush(emit)
	for _, table := range normalize.Tables() {
		out = append(out, parquettest.Batch(mem, parquettest.Schema(table, "Evolved"), "tenant-g", rows(37)))
	}
	return out
}

// One Encoder over many real batches writes, byte for byte, what a fresh
// Arrow writer writes for each, with every codec; and the values decode
// (through the checks of Decode) to the same cells.
func TestIPCEncodeMatchesArrowWriter(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	batches := simulatedBatches(t, mem, 4_000, 500)
	defer func() {
		for _, b := range batches {
			b.Release()
		}
	}()
	tables := map[string]bool{}
	dictBatches := 0
	for _, b := range batches {
		tables[b.Table] = true
		for _, f := range b.Record.Schema().Fields() {
			if f.Type.ID() == arrow.DICTIONARY {
				dictBatches++
				break
			}
		}
	}
	if len(tables) != len(normalize.Tables()) || dictBatches == 0 || len(batches) < 100 {
		t.Fatalf("%d batches of %d tables, %d with dictionaries: not the coverage this test needs", len(batches), len(tables), dictBatches)
	}
	for _, codec := range []Compression{LZ4, Zstd, None} {
		enc := NewEncoder(mem, codec)
		for i, b := range batches {
			// Twice each: a repeated batch has the very dictionaries the
			// Writer wrote last.
			for range 2 {
				msg, err := enc.Encode(b)
				if err != nil {
					t.Fatalf("%s batch %d (%s): %v", codec, i, b.Table, err)
				}
				if want := reference(t, b.Record, codec); !bytes.Equal(msg.Value, want) {
					t.Fatalf("%s batch %d (%s/%s, %d rows): %d bytes, a fresh writer makes %d (first difference at %d)",
						codec, i, b.Table, b.Tenant, b.Record.NumRows(), len(msg.Value), len(want), firstDiff(msg.Value, want))
				}
				if err := checkStream(msg.Value); err != nil {
					t.Fatalf("%s batch %d: %v", codec, i, err)
				}
				out, err := Decode(msg.Value, msg.Headers, mem)
				if err != nil {
					t.Fatalf("%s batch %d: %v", codec, i, err)
				}
				if !array.RecordEqual(out.Record, b.Record) || !out.Record.Schema().Equal(b.Record.Schema()) {
					t.Errorf("%s batch %d (%s): decoded cells differ", codec, i, b.Table)
				}
				out.Release()
			}
		}
		if enc.fresh != 0 {
			t.Errorf("%s: %d of %d batches written by a fresh writer", codec, enc.fresh, 2*len(batches))
		}
	}
}

// Two schemas alike but for metadata, of the schema or of a column, get
// each their own schema message.
func TestIPCEncodeSchemaMetadataKept(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	base := parquettest.Batch(mem, parquettest.Schema("DeviceProcessEvents", "Evolved"), "t", rows(20))
	defer base.Release()
	s := base.Record.Schema()
	md := arrow.NewMetadata([]string{normalize.MetaTable, normalize.MetaSchemaVersion}, []string{"DeviceProcessEvents", "2"})
	fields := s.Fields()
	fields[len(fields)-1].Metadata = arrow.NewMetadata([]string{normalize.MetaColumnType}, []string{"other"})
	variants := []*arrow.Schema{
		s,
		arrow.NewSchema(s.Fields(), &md), // schema version 2
		arrow.NewSchema(fields, func() *arrow.Metadata { m := s.Metadata(); return &m }()),     // a column's type tag
		arrow.NewSchema(s.Fields(), func() *arrow.Metadata { m := s.Metadata(); return &m }()), // equal to s, another pointer
	}
	for _, codec := range []Compression{LZ4, None} {
		enc := NewEncoder(mem, codec)
		for round := range 2 {
			for i, v := range variants {
				rec := array.NewRecord(v, base.Record.Columns(), base.Record.NumRows())
				msg, err := enc.Encode(normalize.Batch{Record: rec, Table: "DeviceProcessEvents", Tenant: "t"})
				want := reference(t, rec, codec)
				rec.Release()
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(msg.Value, want) {
					t.Errorf("%s round %d variant %d: not what a fresh writer makes (first difference at %d)", codec, round, i, firstDiff(msg.Value, want))
				}
			}
		}
	}
}

// A repeated dictionary that the spoiling cannot change (no string bytes)
// is written all the same, by a fresh writer.
func TestIPCEncodeNullDictionary(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	dt := &arrow.DictionaryType{IndexType: arrow.PrimitiveTypes.Int32, ValueType: arrow.BinaryTypes.String}
	md := arrow.NewMetadata([]string{normalize.MetaTable}, []string{"X"})
	schema := arrow.NewSchema([]arrow.Field{{Name: "A", Type: dt, Nullable: true}}, &md)
	ib := array.NewInt32Builder(mem)
	ib.AppendValues([]int32{0, 0}, nil)
	idx := ib.NewArray()
	ib.Release()
	dict := array.MakeArrayOfNull(mem, arrow.BinaryTypes.String, 1)
	col := array.NewDictionaryArray(dt, idx, dict)
	idx.Release()
	dict.Release()
	rec := array.NewRecord(schema, []arrow.Array{col}, 2)
	col.Release()
	defer rec.Release()
	enc := NewEncoder(mem, LZ4)
	defer func() {
		if enc.fresh != 1 {
			t.Errorf("%d batches by a fresh writer, want 1 (the second)", enc.fresh)
		}
	}()
	for range 2 {
		msg, err := enc.Encode(normalize.Batch{Record: rec, Table: "X", Tenant: "t"})
		if err != nil {
			t.Fatal(err)
		}
		if want := reference(t, rec, LZ4); !bytes.Equal(msg.Value, want) {
			t.Fatalf("first difference at %d", firstDiff(msg.Value, want))
		}
	}
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// BenchmarkEncodeBatches encodes the batches of simulated commits (500
// records each, one batch per table and tenant) with one Encoder, as the
// hunting tap does; ns/op is per batch.
//
//	go test ./connectors/ipc -run XXX -bench EncodeBatches -benchtime 2000x
func BenchmarkEncodeBatches(b *testing.B) {
	mem := memory.NewGoAllocator()
	batches := simulatedBatches(b, mem, 10_000, 500)
	defer func() {
		for _, bt := range batches {
			bt.Release()
		}
	}()
	for _, codec := range []Compression{LZ4, Zstd, None} {
		b.Run(string(codec), func(b *testing.B) {
			enc := NewEncoder(mem, codec)
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if _, err := enc.Encode(batches[i%len(batches)]); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
	}
}
