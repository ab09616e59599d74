package query

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/array"
	"github.com/apache/arrow/go/v17/arrow/memory"
	"github.com/cockroachdb/datadriven"

	"github.com/stitch-xdr/stitch/connectors/parquet"
	"github.com/stitch-xdr/stitch/operators/normalize"
)

// semanticRows are the rows of testdata/semantics: a column not named is
// absent (null in the Parquet file), as the normalizer writes a field an
// event did not have.
var semanticRows = map[string][]map[string]any{
	"DeviceProcessEvents": {
		{"ReportId": int64(1), "DeviceId": "d1", "FileName": "cmd.exe", "AccountName": "alice", "ProcessCommandLine": "cmd /c whoami", "ProcessId": int64(10), "Timestamp": time.Date(2024, 5, 1, 10, 0, 0, 0, time.UTC)},
		{"ReportId": int64(2), "DeviceId": "d2", "FileName": "net.exe", "ProcessCommandLine": "net user", "ProcessId": int64(7), "Timestamp": time.Date(2024, 5, 1, 10, 30, 0, 0, time.UTC)},
		{"ReportId": int64(3), "DeviceId": "d1", "AccountName": "bob", "ProcessId": int64(3), "Timestamp": time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)},
	},
	"DeviceNetworkEvents": {
		{"ReportId": int64(11), "DeviceId": "d1", "RemoteUrl": "evil.com", "Timestamp": time.Date(2024, 5, 1, 10, 5, 0, 0, time.UTC)},
	},
}

// semanticsDir writes semanticRows through the hunting writer.
func semanticsDir(t *testing.T) string {
	t.Helper()
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	dir := t.TempDir()
	w, err := parquet.Open(dir, parquet.Allocator(mem))
	if err != nil {
		t.Fatal(err)
	}
	off := int64(0)
	for table, rows := range semanticRows {
		schema := normalize.Schema(table)
		b := array.NewRecordBuilder(mem, schema)
		for i, f := range schema.Fields() {
			for _, r := range rows {
				appendCell(t, b.Field(i), r[f.Name])
			}
		}
		rec := b.NewRecord()
		b.Release()
		batch := normalize.Batch{Record: rec, Tenant: "t1", Table: table, MinTime: rows[0]["Timestamp"].(time.Time), MaxTime: rows[len(rows)-1]["Timestamp"].(time.Time)}
		err := w.Write(parquet.Source{Topic: "in", Offset: off}, batch)
		rec.Release()
		if err != nil {
			t.Fatal(err)
		}
		off++
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return dir
}

func appendCell(t *testing.T, b array.Builder, v any) {
	if v == nil {
		b.AppendNull()
		return
	}
	switch b := b.(type) {
	case *array.StringBuilder:
		b.Append(v.(string))
	case *array.BinaryDictionaryBuilder:
		if err := b.AppendString(v.(string)); err != nil {
			t.Fatal(err)
		}
	case *array.Int64Builder:
		b.Append(v.(int64))
	case *array.Int32Builder:
		b.Append(int32(v.(int64)))
	case *array.TimestampBuilder:
		b.Append(arrow.Timestamp(v.(time.Time).UnixMicro()))
	default:
		t.Fatalf("no test values for %T", b)
	}
}

// TestKustoSemantics runs the KQL of testdata/semantics through Run over
// semanticRows: the places where Kusto's answer differs from what plain
// SQL would give. Each case prints the columns, then one row a line.
func TestKustoSemantics(t *testing.T) {
	dir := semanticsDir(t)
	datadriven.RunTest(t, "testdata/semantics", func(t *testing.T, td *datadriven.TestData) string {
		res, err := Run(context.Background(), dir, td.Input, In(KQL))
		if err != nil {
			return "error: " + strings.ReplaceAll(err.Error(), dir, "DIR")
		}
		out := []string{strings.Join(res.Columns, " | ")}
		for _, r := range res.Rows {
			cells := make([]string, len(r))
			for i, v := range r {
				switch v := v.(type) {
				case time.Time:
					cells[i] = v.UTC().Format(time.RFC3339)
				default:
					cells[i] = fmt.Sprint(v)
				}
			}
			out = append(out, strings.Join(cells, " | "))
		}
		return strings.Join(out, "\n")
	})
}
