package parquet

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/apache/arrow/go/v17/parquet/pqarrow"

	"github.com/stitch-xdr/stitch/operators/normalize"
)

// TestScan reads back published partitions by table, tenant and hour, and
// never staged or quarantined files.
func TestScan(t *testing.T) {
	dir := t.TempDir()
	put := func(rel string, rows int) {
		n := normalize.New()
		defer n.Close()
		for i := 0; i < rows; i++ {
			v, _ := json.Marshal(map[string]any{"time": "2026-01-02T03:04:05Z", "tenantId": "t 1", "category": "AdvancedHunting-DeviceProcessEvents",
				"properties": map[string]any{"Timestamp": "2026-01-02T03:04:05Z", "DeviceName": "h", "ProcessId": i}})
			n.Add(normalize.Input{Value: v}, func(b normalize.Batch) { t.Fatal("early batch"); b.Release() }, func(d normalize.DeadLetter) { t.Fatal(d.Error) })
		}
		n.Flush(func(b normalize.Batch) {
			defer b.Release()
			p := filepath.Join(dir, rel)
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			f, err := os.Create(p)
			if err != nil {
				t.Fatal(err)
			}
			w, err := pqarrow.NewFileWriter(b.Record.Schema(), f, nil, pqarrow.NewArrowWriterProperties(pqarrow.WithStoreSchema()))
			if err != nil {
				t.Fatal(err)
			}
			if err := w.Write(b.Record); err != nil {
				t.Fatal(err)
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
		})
	}
	put("DeviceProcessEvents/tenant=t%201/date=2026-01-02/hour=03/part-a.parquet", 3)
	put("DeviceProcessEvents/tenant=t%201/date=2025-01-02/hour=03/part-b.parquet", 2)
	put("DeviceProcessEvents/tenant=other/date=2026-01-02/hour=03/part-c.parquet", 5)
	put("_staging/DeviceProcessEvents/tenant=t%201/date=2026-01-02/hour=03/part-d.parquet", 7)
	scan := func(o ScanOptions) (rows int, tenants map[string]int) {
		tenants = map[string]int{}
		err := Scan(context.Background(), dir, o, func(b normalize.Batch) error {
			if b.Table != "DeviceProcessEvents" || normalize.Int64s(b.Record, "ProcessId").IsNull(0) {
				t.Errorf("batch %s without its columns", b.Table)
			}
			rows += int(b.Record.NumRows())
			tenants[b.Tenant] += int(b.Record.NumRows())
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return rows, tenants
	}
	if rows, ten := scan(ScanOptions{}); rows != 10 || ten["t 1"] != 5 || ten["other"] != 5 {
		t.Errorf("all: %d rows, %v", rows, ten)
	}
	if rows, _ := scan(ScanOptions{Tenant: "t 1", Since: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}); rows != 3 {
		t.Errorf("tenant and since: %d rows, want 3", rows)
	}
	if rows, _ := scan(ScanOptions{Tables: []string{"DeviceFileEvents"}}); rows != 0 {
		t.Errorf("another table: %d rows", rows)
	}
}
