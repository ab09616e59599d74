package parquet

import (
	"context"
	"io/fs"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/array"
	"github.com/apache/arrow/go/v17/arrow/memory"
	"github.com/apache/arrow/go/v17/parquet/file"
	"github.com/apache/arrow/go/v17/parquet/pqarrow"

	"github.com/stitch-xdr/stitch/connectors/parquet/parquettest"
)

// readRow is a row read back from a partition file, with where it was.
type readRow struct {
	File   string // relative to the hunting dir
	Table  string
	Tenant string
	Time   time.Time
	ID     int64
}

// readBack reads every visible partition file with Arrow's Parquet reader
// (independent of the writer), checks every cell against the generator and
// the file's place in the layout, and returns the rows.
func readBack(t *testing.T, dir string) []readRow {
	t.Helper()
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	var out []readRow
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if d.IsDir() && strings.HasPrefix(rel, "_") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(p, ".parquet") {
			return nil
		}
		parts := strings.Split(rel, string(filepath.Separator))
		if len(parts) != 5 {
			t.Errorf("%s: not <Table>/tenant=/date=/hour=/file", rel)
			return nil
		}
		tenant := strings.TrimPrefix(parts[1], "tenant=")
		out = append(out, readFile(t, mem, p, rel, parts[0], tenant, parts[2]+"/"+parts[3])...)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

func readFile(t *testing.T, mem memory.Allocator, path, rel, table, tenant, hourDir string) []readRow {
	t.Helper()
	pf, err := file.OpenParquetFile(path, false)
	if err != nil {
		t.Fatalf("%s: %v", rel, err)
	}
	defer pf.Close()
	fr, err := pqarrow.NewFileReader(pf, pqarrow.ArrowReadProperties{BatchSize: 4096}, mem)
	if err != nil {
		t.Fatalf("%s: %v", rel, err)
	}
	tbl, err := fr.ReadTable(context.Background())
	if err != nil {
		t.Fatalf("%s: %v", rel, err)
	}
	defer tbl.Release()
	tr := array.NewTableReader(tbl, 0)
	defer tr.Release()
	var out []readRow
	for tr.Next() {
		rec := tr.Record()
		sch := rec.Schema()
		tsIdx, idIdx := sch.FieldIndices("Timestamp"), sch.FieldIndices("ReportId")
		if len(tsIdx) != 1 || len(idIdx) != 1 {
			t.Fatalf("%s: no Timestamp/ReportId column in %s", rel, sch)
		}
		if got := sch.Field(tsIdx[0]).Type.String(); got != "timestamp[us, tz=UTC]" {
			t.Errorf("%s: Timestamp type %s", rel, got)
		}
		ts := rec.Column(tsIdx[0]).(*array.Timestamp)
		ids := rec.Column(idIdx[0]).(*array.Int64)
		for i := 0; i < int(rec.NumRows()); i++ {
			r := parquettest.Row{Time: ts.Value(i).ToTime(arrow.Microsecond).UTC(), ID: ids.Value(i)}
			if got := r.Time.Format("date=2006-01-02/hour=15"); got != hourDir {
				t.Errorf("%s: row %d at %s is in %s", rel, r.ID, r.Time, hourDir)
			}
			for c, f := range sch.Fields() {
				col := rec.Column(c)
				want := parquettest.Value(f.Name, f.Type, r)
				if got := cell(col, i); want != nil && got != want {
					t.Errorf("%s: row %d column %s = %v (%T), want %v", rel, r.ID, f.Name, got, got, want)
				}
			}
			out = append(out, readRow{File: rel, Table: table, Tenant: tenant, Time: r.Time, ID: r.ID})
		}
	}
	return out
}

func cell(col arrow.Array, i int) any {
	if col.IsNull(i) {
		return nil
	}
	switch a := col.(type) {
	case *array.Timestamp:
		return a.Value(i).ToTime(arrow.Microsecond).UTC()
	case *array.Dictionary:
		return a.Dictionary().(*array.String).Value(a.GetValueIndex(i))
	case *array.Int64:
		return a.Value(i)
	case *array.Int32:
		return a.Value(i)
	case *array.Boolean:
		return a.Value(i)
	case *array.String:
		return a.Value(i)
	}
	return col.ValueStr(i)
}

// countStaged counts the staged files of every instance (not their locks).
func countStaged(t *testing.T, dir string) int {
	t.Helper()
	n := 0
	err := filepath.WalkDir(filepath.Join(dir, stagingDir), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && d.Name() != lockName {
			n++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// crash abandons a writer the way a killed process would: nothing is
// finished or committed, and its locks are released.
func crash(w *Writer) {
	for _, pf := range w.open {
		// Finishing frees the encoder's memory (the checked allocator
		// would report it); cutting the file in half then leaves what a
		// killed process leaves: a torn staged file.
		w.dropPending(pf)
		pf.fw.Close()
		if st, err := pf.f.Stat(); err == nil {
			pf.f.Truncate(st.Size() / 2)
		}
		pf.f.Close()
	}
	w.out.to = nil
	w.unlock()
	w.closed = true
}
