// Package parquettest builds normalized batches whose every cell is a
// function of (column, row ID), so tests of the hunting writer, the IPC
// format and queries can compute the expected answer independently.
package parquettest

import (
	"fmt"
	"time"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/array"
	"github.com/apache/arrow/go/v17/arrow/memory"

	"github.com/stitch-xdr/stitch/operators/normalize"
)

// Row is one generated row: its event time and its ID.
type Row struct {
	Time time.Time
	ID   int64
}

// Value is the cell of column col (of Arrow type typ) in the row with id,
// as a Go value: string, int64, int32, bool, or time.Time for Timestamp.
// Columns named like the row's ID column hold the ID itself.
func Value(col string, typ arrow.DataType, r Row) any {
	switch t := typ.(type) {
	case *arrow.TimestampType:
		if col == "Timestamp" {
			return r.Time.UTC().Truncate(time.Microsecond)
		}
		return time.Unix(r.ID, 0).UTC()
	case *arrow.DictionaryType:
		return fmt.Sprintf("%s%d", col, r.ID%3)
	default:
		switch t.ID() {
		case arrow.INT64:
			if col == "ReportId" {
				return r.ID
			}
			return r.ID * 7
		case arrow.INT32:
			return int32(r.ID % 1000)
		case arrow.BOOL:
			return r.ID%2 == 0
		case arrow.STRING:
			return fmt.Sprintf("%s-%d", col, r.ID)
		}
	}
	return nil
}

// Schema returns the table's schema, plus nullable utf8 columns named extra
// (schema evolution).
func Schema(table string, extra ...string) *arrow.Schema {
	s := normalize.Schema(table)
	if s == nil {
		panic("parquettest: unknown table " + table)
	}
	if len(extra) == 0 {
		return s
	}
	fields := s.Fields()
	for _, e := range extra {
		fields = append(fields, arrow.Field{Name: e, Type: arrow.BinaryTypes.String, Nullable: true})
	}
	md := s.Metadata()
	return arrow.NewSchema(fields, &md)
}

// Batch builds a batch of the given schema's table with one row per Row.
func Batch(mem memory.Allocator, schema *arrow.Schema, tenant string, rows []Row) normalize.Batch {
	b := array.NewRecordBuilder(mem, schema)
	defer b.Release()
	for i, f := range schema.Fields() {
		fb := b.Field(i)
		for _, r := range rows {
			v := Value(f.Name, f.Type, r)
			switch fb := fb.(type) {
			case *array.TimestampBuilder:
				fb.Append(arrow.Timestamp(v.(time.Time).UnixMicro()))
			case *array.BinaryDictionaryBuilder:
				if err := fb.AppendString(v.(string)); err != nil {
					panic(err)
				}
			case *array.Int64Builder:
				fb.Append(v.(int64))
			case *array.Int32Builder:
				fb.Append(v.(int32))
			case *array.BooleanBuilder:
				fb.Append(v.(bool))
			case *array.StringBuilder:
				fb.Append(v.(string))
			default:
				fb.AppendNull()
			}
		}
	}
	rec := b.NewRecord()
	out := normalize.Batch{Record: rec, Tenant: tenant, Bytes: int64(len(rows)) * 500}
	if t, ok := schema.Metadata().GetValue(normalize.MetaTable); ok {
		out.Table = t
	}
	for i, r := range rows {
		if i == 0 || r.Time.Before(out.MinTime) {
			out.MinTime = r.Time
		}
		if i == 0 || r.Time.After(out.MaxTime) {
			out.MaxTime = r.Time
		}
	}
	return out
}
