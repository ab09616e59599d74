package parquet

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/memory"
	"github.com/apache/arrow/go/v17/parquet/file"
	"github.com/apache/arrow/go/v17/parquet/pqarrow"

	"github.com/stitch-xdr/stitch/connectors/parquet/parquettest"
)

func TestTenantElement(t *testing.T) {
	for _, c := range []struct {
		tenant string
		want   string // "" when hashed
	}{
		{"t1", "t1"},
		{"a/b", "a%2Fb"},
		{"..", "%2E."},
		{strings.Repeat("%", 42), strings.Repeat("%25", 42)}, // 126 bytes: still escaped
		{strings.Repeat("%", 90), ""},
		{strings.Repeat("a", 10000), ""},
		{"t1\x00", ""},
		{"t1\n", ""},
		{"t\u0085", ""},
		{"bad\xff", ""},
		{"~" + strings.Repeat("0", 32), "%7E" + strings.Repeat("0", 32)},
	} {
		got := TenantElement(c.tenant)
		if len(got) > MaxTenantElement {
			t.Errorf("TenantElement(%.20q) is %d bytes", c.tenant, len(got))
		}
		if got != TenantElement(c.tenant) {
			t.Errorf("TenantElement(%.20q) is not stable", c.tenant)
		}
		if c.want != "" && got != c.want {
			t.Errorf("TenantElement(%.20q) = %q, want %q", c.tenant, got, c.want)
		}
		if hashed := IsHashedTenant(got); hashed != (c.want == "") {
			t.Errorf("TenantElement(%.20q) = %q: hashed %v", c.tenant, got, hashed)
		}
		if strings.ContainsAny(got, "/\x00") || got == "." || got == ".." || got == "" {
			t.Errorf("TenantElement(%.20q) = %q is not one plain path element", c.tenant, got)
		}
	}
	if got := TenantElement(strings.Repeat("a", 10000)); !strings.HasPrefix(got, strings.Repeat("a", 24)+"~") {
		t.Errorf("hashed form %q lost its readable prefix", got)
	}
	if TenantElement("x\x00") == TenantElement("x\x01") {
		t.Error("two ids share a hashed form")
	}
}

// TestPoisonTenantsDoNotStopTheWriter: ids whose escaped form is longer
// than a file name may be, or that hold control characters, made the
// segment's publication fail, and every restart failed again on the same
// manifest. They now get a hashed element, and good tenants around them
// are written as before.
func TestPoisonTenantsDoNotStopTheWriter(t *testing.T) {
	dir := t.TempDir()
	w, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	tenants := []string{"good1", strings.Repeat("%", 90), strings.Repeat("x", 10000), "ctl\x00\x1b[31m", "good2"}
	schema := parquettest.Schema("DeviceEvents")
	at := time.Date(2024, 5, 1, 10, 0, 0, 0, time.UTC)
	for i, tenant := range tenants {
		b := parquettest.Batch(memory.DefaultAllocator, schema, tenant, []parquettest.Row{{Time: at, ID: int64(i)}})
		if err := w.Write(Source{Topic: "hunting.DeviceEvents", Offset: int64(i)}, b); err != nil {
			t.Fatal(err)
		}
		b.Release()
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	rows := readBack(t, dir)
	if len(rows) != len(tenants) {
		t.Fatalf("%d rows visible, want %d", len(rows), len(tenants))
	}
	for _, r := range rows {
		if want := TenantElement(tenants[r.ID]); r.Tenant != want {
			t.Errorf("row %d in tenant=%s, want tenant=%s", r.ID, r.Tenant, want)
		}
	}
}

// TestUnpublishableFileIsQuarantined: a file whose partition cannot be
// created (here a plain file stands where its directory should be) is set
// aside with its reason, the rest of the segment is published and the
// offsets move on, so neither this run nor a restart stops on it.
func TestUnpublishableFileIsQuarantined(t *testing.T) {
	for _, crashFirst := range []bool{false, true} {
		name := "commit"
		if crashFirst {
			name = "restart"
		}
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			var got []string
			onQ := OnQuarantine(func(file, reason string) { got = append(got, file+": "+reason) })
			w, err := Open(dir, onQ)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.MkdirAll(filepath.Join(dir, "DeviceEvents"), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, "DeviceEvents", "tenant=blocked"), nil, 0o644); err != nil {
				t.Fatal(err)
			}
			schema := parquettest.Schema("DeviceEvents")
			at := time.Date(2024, 5, 1, 10, 0, 0, 0, time.UTC)
			for i, tenant := range []string{"ok", "blocked", "ok2"} {
				b := parquettest.Batch(memory.DefaultAllocator, schema, tenant, []parquettest.Row{{Time: at, ID: int64(i)}})
				if err := w.Write(Source{Topic: "hunting.DeviceEvents", Offset: int64(i)}, b); err != nil {
					t.Fatal(err)
				}
				b.Release()
			}
			if crashFirst {
				w.crashAfterManifest = true
				if err := w.Commit(); err != errCrash {
					t.Fatalf("commit: %v", err)
				}
				crash(w)
				if w, err = Open(dir, onQ); err != nil {
					t.Fatalf("reopen after the crash: %v", err)
				}
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			if len(got) != 1 || !strings.Contains(got[0], "tenant=blocked") || !strings.Contains(got[0], "not a directory") {
				t.Errorf("quarantined: %q", got)
			}
			if rows := readBack(t, dir); len(rows) != 2 {
				t.Errorf("%d rows published, want 2: %v", len(rows), rows)
			}
			q, _ := filepath.Glob(filepath.Join(dir, quarantineDir, "*.parquet"))
			r, _ := filepath.Glob(filepath.Join(dir, quarantineDir, "*.reason.json"))
			if len(q) != 1 || len(r) != 1 {
				t.Fatalf("quarantine holds %v %v", q, r)
			}
			var why quarantined
			data, _ := os.ReadFile(r[0])
			if err := json.Unmarshal(data, &why); err != nil || why.Rows != 1 || !strings.Contains(why.Final, "tenant=blocked") {
				t.Errorf("reason %s: %v", data, err)
			}
			w, err = Open(dir) // no manifest left to redo
			if err != nil {
				t.Fatal(err)
			}
			if next := w.Resume()[TopicPartition{"hunting.DeviceEvents", 0}]; next != 3 {
				t.Errorf("resume at %d, want 3", next)
			}
			w.Close()
		})
	}
}

// TestYearsPastNineThousandNineHundredNinetyNine: a row the normalizer
// would not pass (a timestamp after 9999-12-31T23:59:59Z) landed under
// date=10000-01-01, which retention could not parse; it is clamped into
// the last hour, and retention reads every date= it finds.
func TestYearsPastNineThousandNineHundredNinetyNine(t *testing.T) {
	dir := t.TempDir()
	late := time.Date(9999, 12, 31, 23, 30, 0, 0, time.FixedZone("", -3600))
	writeOneRow(t, dir, parquettest.Schema("DeviceEvents"), late)
	files, _ := filepath.Glob(filepath.Join(dir, "DeviceEvents", "tenant=t1", "date=*", "hour=*", "*.parquet"))
	if len(files) != 1 || !strings.Contains(files[0], "date=9999-12-31/hour=23") {
		t.Fatalf("files %v, want one under date=9999-12-31/hour=23", files)
	}
}

// TestPartitionNamedColumnsAreRenamed: readers add tenant, date and hour
// from the path and compare names without case, so a column of that name,
// or one differing only in case from an earlier column, was shadowed. It
// is written under a renamed column instead.
func TestPartitionNamedColumnsAreRenamed(t *testing.T) {
	dir := t.TempDir()
	schema := parquettest.Schema("DeviceEvents", "tenant", "Date", "HOUR", "actiontype", "tenant_property")
	writeOneRow(t, dir, schema, time.Date(2024, 5, 1, 10, 0, 0, 0, time.UTC))
	files, _ := filepath.Glob(filepath.Join(dir, "DeviceEvents", "*", "*", "*", "*.parquet"))
	if len(files) != 1 {
		t.Fatalf("files %v", files)
	}
	got := fileColumns(t, files[0])
	want := []string{"tenant_property", "Date_property", "HOUR_property", "actiontype_property", "tenant_property_property"}
	if tail := got[len(got)-len(want):]; strings.Join(tail, ",") != strings.Join(want, ",") {
		t.Errorf("columns end %v, want %v", tail, want)
	}
}

func fileColumns(t *testing.T, path string) []string {
	t.Helper()
	pf, err := file.OpenParquetFile(path, false)
	if err != nil {
		t.Fatal(err)
	}
	defer pf.Close()
	s, err := pqarrow.FromParquet(pf.MetaData().Schema, nil, pf.MetaData().KeyValueMetadata())
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range s.Fields() {
		names = append(names, f.Name)
	}
	return names
}

// writeOneRow writes and commits one row of tenant t1 at the given time.
func writeOneRow(t *testing.T, dir string, schema *arrow.Schema, at time.Time) {
	t.Helper()
	w, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	b := parquettest.Batch(memory.DefaultAllocator, schema, "t1", []parquettest.Row{{Time: at, ID: 1}})
	defer b.Release()
	if err := w.Write(Source{Topic: "hunting.DeviceEvents"}, b); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestWriteGivesUpWhenTheContextEnds: one batch whose rows span many hours
// is as many files; a stop does not wait for all of them, and the
// interrupted segment is dropped whole (its offsets are read again).
func TestWriteGivesUpWhenTheContextEnds(t *testing.T) {
	dir := t.TempDir()
	w, err := Open(dir, MaxOpenFiles(2))
	if err != nil {
		t.Fatal(err)
	}
	var rows []parquettest.Row
	for i := range 50 {
		rows = append(rows, parquettest.Row{Time: time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(i) * time.Hour), ID: int64(i)})
	}
	schema := parquettest.Schema("DeviceEvents")
	b := parquettest.Batch(memory.DefaultAllocator, schema, "t1", rows)
	defer b.Release()
	if err := w.Write(Source{Topic: "hunting.DeviceEvents", Offset: 0}, b); err != nil {
		t.Fatal(err)
	}
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err = w.WriteContext(ctx, Source{Topic: "hunting.DeviceEvents", Offset: 1}, b)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("write after the stop: %v", err)
	}
	if err := w.Abort(); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if n := countStaged(t, dir); n != 0 {
		t.Errorf("%d staged files left", n)
	}
	if rows := readBack(t, dir); len(rows) != 50 {
		t.Errorf("%d rows, want the first batch's 50", len(rows))
	}
	w, err = Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if next := w.Resume()[TopicPartition{"hunting.DeviceEvents", 0}]; next != 1 {
		t.Errorf("resume at %d, want 1 (the interrupted batch again)", next)
	}
}

// TestInvalidBatchesAreRefusedWithoutHarm: a hunting record can come from
// any producer of the topic; one the files cannot hold is refused before
// anything is written (ErrInvalidBatch, which the sink skips), and the
// writer goes on with the next.
func TestInvalidBatchesAreRefusedWithoutHarm(t *testing.T) {
	dir := t.TempDir()
	w, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2024, 5, 1, 10, 0, 0, 0, time.UTC)
	good := parquettest.Schema("DeviceEvents")
	fields := append(good.Fields(), arrow.Field{Name: "Float", Type: arrow.PrimitiveTypes.Float64, Nullable: true})
	md := good.Metadata()
	foreign := arrow.NewSchema(fields, &md)
	for i, c := range []struct {
		schema        *arrow.Schema
		table, tenant string
	}{
		{good, "../x", "t1"},
		{good, "_manifest", "t1"},
		{good, "DeviceEvents", ""},
		{foreign, "DeviceEvents", "t1"},
	} {
		b := parquettest.Batch(memory.DefaultAllocator, c.schema, c.tenant, []parquettest.Row{{Time: at, ID: int64(i)}})
		b.Table = c.table
		err := w.Write(Source{Topic: "hunting.DeviceEvents", Offset: int64(i)}, b)
		b.Release()
		if !errors.Is(err, ErrInvalidBatch) {
			t.Errorf("table %q tenant %q: %v, want ErrInvalidBatch", c.table, c.tenant, err)
		}
	}
	b := parquettest.Batch(memory.DefaultAllocator, good, "t1", []parquettest.Row{{Time: at, ID: 9}})
	defer b.Release()
	if err := w.Write(Source{Topic: "hunting.DeviceEvents", Offset: 9}, b); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if rows := readBack(t, dir); len(rows) != 1 || rows[0].ID != 9 {
		t.Errorf("rows %v, want only the good one", rows)
	}
}
