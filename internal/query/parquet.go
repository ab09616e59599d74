package query

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/array"
	"github.com/apache/arrow/go/v17/arrow/memory"
	"github.com/apache/arrow/go/v17/parquet"
	"github.com/apache/arrow/go/v17/parquet/compress"
	"github.com/apache/arrow/go/v17/parquet/pqarrow"
)

// WriteParquet writes the rows as one Parquet file (zstd): numbers, booleans
// and timestamps keep their types, anything else (lists, JSON, intervals)
// is written as its text.
func (r *Result) WriteParquet(w io.Writer) error {
	fields := make([]arrow.Field, len(r.Columns))
	for i, c := range r.Columns {
		fields[i] = arrow.Field{Name: c, Type: arrowTypeOf(r.Types[i]), Nullable: true}
	}
	schema := arrow.NewSchema(fields, nil)
	mem := memory.NewGoAllocator()
	b := array.NewRecordBuilder(mem, schema)
	defer b.Release()
	for _, row := range r.Rows {
		for i, v := range row {
			if err := appendValue(b.Field(i), v); err != nil {
				return fmt.Errorf("hunting: parquet column %s: %w", r.Columns[i], err)
			}
		}
	}
	rec := b.NewRecord()
	defer rec.Release()
	fw, err := pqarrow.NewFileWriter(schema, w, parquet.NewWriterProperties(parquet.WithCompression(compress.Codecs.Zstd)), pqarrow.DefaultWriterProps())
	if err != nil {
		return fmt.Errorf("hunting: parquet: %w", err)
	}
	if err := fw.Write(rec); err != nil {
		fw.Close()
		return fmt.Errorf("hunting: parquet: %w", err)
	}
	return fw.Close()
}

func arrowTypeOf(duck string) arrow.DataType {
	switch {
	case duck == "BIGINT" || duck == "HUGEINT" || duck == "UBIGINT" || duck == "UINTEGER":
		return arrow.PrimitiveTypes.Int64
	case duck == "INTEGER" || duck == "SMALLINT" || duck == "TINYINT" || duck == "USMALLINT" || duck == "UTINYINT":
		return arrow.PrimitiveTypes.Int32
	case duck == "DOUBLE" || duck == "FLOAT" || strings.HasPrefix(duck, "DECIMAL"):
		return arrow.PrimitiveTypes.Float64
	case duck == "BOOLEAN":
		return arrow.FixedWidthTypes.Boolean
	case strings.HasPrefix(duck, "TIMESTAMP") || duck == "DATE":
		return &arrow.TimestampType{Unit: arrow.Microsecond, TimeZone: "UTC"}
	}
	return arrow.BinaryTypes.String
}

func appendValue(b array.Builder, v any) error {
	if v == nil {
		b.AppendNull()
		return nil
	}
	switch b := b.(type) {
	case *array.Int64Builder:
		n, err := toInt64(v)
		b.Append(n)
		return err
	case *array.Int32Builder:
		n, err := toInt64(v)
		b.Append(int32(n))
		return err
	case *array.Float64Builder:
		switch v := v.(type) {
		case float64:
			b.Append(v)
		case float32:
			b.Append(float64(v))
		default:
			var f float64
			_, err := fmt.Sscan(fmt.Sprint(v), &f)
			b.Append(f)
			return err
		}
	case *array.BooleanBuilder:
		b.Append(v == true)
	case *array.TimestampBuilder:
		t, ok := v.(time.Time)
		if !ok {
			return fmt.Errorf("not a time: %T", v)
		}
		b.Append(arrow.Timestamp(t.UnixMicro()))
	case *array.StringBuilder:
		switch v := v.(type) {
		case string:
			b.Append(v)
		case []byte:
			b.Append(string(v))
		case []any, map[string]any:
			j, _ := json.Marshal(v)
			b.Append(string(j))
		default:
			b.Append(fmt.Sprint(v))
		}
	}
	return nil
}

func toInt64(v any) (int64, error) {
	switch v := v.(type) {
	case int64:
		return v, nil
	case int32:
		return int64(v), nil
	case int16:
		return int64(v), nil
	case int8:
		return int64(v), nil
	case uint64:
		return int64(v), nil
	case uint32:
		return int64(v), nil
	case uint16:
		return int64(v), nil
	case uint8:
		return int64(v), nil
	}
	var n int64
	_, err := fmt.Sscan(fmt.Sprint(v), &n)
	return n, err
}
