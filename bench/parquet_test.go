package bench

import (
	"io/fs"
	"path/filepath"
	"testing"
	"time"

	"github.com/apache/arrow/go/v17/arrow/memory"

	"github.com/stitch-xdr/stitch/connectors/parquet"
	"github.com/stitch-xdr/stitch/connectors/parquet/parquettest"
	"github.com/stitch-xdr/stitch/operators/normalize"
)

// BenchmarkParquetWrite writes 1,000-row DeviceProcessEvents batches (one
// tenant, one hour each) through the hunting writer, committing every 64
// batches, and reports rows/s and the Parquet bytes per row on disk.
func BenchmarkParquetWrite(b *testing.B) {
	mem := memory.NewGoAllocator()
	const rowsPerBatch = 1000
	base := time.Date(2024, 5, 1, 10, 0, 0, 0, time.UTC)
	// 16 distinct batches (distinct IDs, so distinct strings) cycled, so
	// dictionaries and zstd see realistic variety rather than one batch.
	batches := make([]normalize.Batch, 16)
	for k := range batches {
		rows := make([]parquettest.Row, rowsPerBatch)
		for i := range rows {
			id := int64(k*rowsPerBatch + i)
			rows[i] = parquettest.Row{Time: base.Add(time.Duration(i) * time.Second), ID: id * 7919}
		}
		batches[k] = parquettest.Batch(mem, parquettest.Schema("DeviceProcessEvents"), "tenant-1", rows)
		defer batches[k].Release()
	}
	dir := b.TempDir()
	w, err := parquet.Open(dir, parquet.Allocator(mem))
	if err != nil {
		b.Fatal(err)
	}
	var off int64
	b.ResetTimer()
	for b.Loop() {
		if err := w.Write(parquet.Source{Topic: "bench", Offset: off}, batches[off%16]); err != nil {
			b.Fatal(err)
		}
		off++
		if off%64 == 0 {
			if err := w.Commit(); err != nil {
				b.Fatal(err)
			}
		}
	}
	if err := w.Close(); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	var size int64
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && filepath.Ext(p) == ".parquet" {
			if info, err := d.Info(); err == nil {
				size += info.Size()
			}
		}
		return nil
	})
	total := float64(off * rowsPerBatch)
	b.ReportMetric(total/b.Elapsed().Seconds(), "rows/s")
	b.ReportMetric(float64(size)/total, "bytes/row")
}
