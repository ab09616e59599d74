package query

import (
	"bytes"
	"context"
	"testing"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/array"
	"github.com/apache/arrow/go/v17/arrow/memory"
	"github.com/apache/arrow/go/v17/parquet/file"
	"github.com/apache/arrow/go/v17/parquet/pqarrow"
)

// TestWriteParquet: a result written as Parquet reads back with its
// columns, their types and its values.
func TestWriteParquet(t *testing.T) {
	dir := semanticsDir(t)
	res, err := Run(context.Background(), dir, `DeviceProcessEvents | project ReportId, FileName, Timestamp, ok = ProcessId > 5, s = pack_array(FileName) | sort by ReportId asc`, In(KQL))
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := res.WriteParquet(&buf); err != nil {
		t.Fatal(err)
	}
	pf, err := file.NewParquetReader(bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	fr, err := pqarrow.NewFileReader(pf, pqarrow.ArrowReadProperties{}, memory.NewGoAllocator())
	if err != nil {
		t.Fatal(err)
	}
	tbl, err := fr.ReadTable(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer tbl.Release()
	if tbl.NumRows() != 3 || tbl.NumCols() != 5 {
		t.Fatalf("%d rows and %d columns, want 3 and 5", tbl.NumRows(), tbl.NumCols())
	}
	want := []arrow.Type{arrow.INT64, arrow.STRING, arrow.TIMESTAMP, arrow.BOOL, arrow.STRING}
	for i, w := range want {
		if got := tbl.Schema().Field(i).Type.ID(); got != w {
			t.Errorf("column %s is %s, want %s", tbl.Schema().Field(i).Name, got, w)
		}
	}
	ids := tbl.Column(0).Data().Chunk(0).(*array.Int64)
	names := tbl.Column(1).Data().Chunk(0).(*array.String)
	lists := tbl.Column(4).Data().Chunk(0).(*array.String)
	if ids.Value(1) != 2 || names.Value(1) != "net.exe" || names.Value(2) != "" || lists.Value(0) != `["cmd.exe"]` {
		t.Errorf("values: ids %v, names %v, lists %v", ids, names, lists)
	}
}
