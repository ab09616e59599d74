package parquet

import (
	"flag"
	"fmt"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/apache/arrow/go/v17/arrow/memory"

	"github.com/stitch-xdr/stitch/connectors/parquet/parquettest"
)

// peakAllocator counts the bytes the Arrow allocator holds and their peak.
type peakAllocator struct {
	memory.Allocator
	cur, peak atomic.Int64
}

func (a *peakAllocator) add(n int) {
	c := a.cur.Add(int64(n))
	for {
		p := a.peak.Load()
		if c <= p || a.peak.CompareAndSwap(p, c) {
			return
		}
	}
}

func (a *peakAllocator) Allocate(n int) []byte { a.add(n); return a.Allocator.Allocate(n) }
func (a *peakAllocator) Reallocate(n int, b []byte) []byte {
	a.add(n - len(b))
	return a.Allocator.Reallocate(n, b)
}
func (a *peakAllocator) Free(b []byte) { a.add(-len(b)); a.Allocator.Free(b) }

// heapPeak samples the Go heap in use until stop is called, which returns
// the peak.
func heapPeak() (stop func() uint64) {
	var peak atomic.Uint64
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > peak.Load() {
				peak.Store(ms.HeapInuse)
			}
			select {
			case <-done:
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
	}()
	return func() uint64 { close(done); wg.Wait(); return peak.Load() }
}

var long = flag.Bool("stitch.long", os.Getenv("STITCH_E2E_LONG") != "", "run the long forms; or set STITCH_E2E_LONG=1")

// memoryBound is the documented bound of the writer's heap for its
// configuration (docs/ARCHITECTURE.md, "Memory"): about 2 MiB per open file
// (encoders of a wide table), the buffered row groups twice over (the
// garbage collector lets the heap reach twice what is live), and a base.
func memoryBound(maxOpen int, maxBuffered int64) uint64 {
	return 32<<20 + uint64(maxOpen)*(2<<20) + 2*uint64(maxBuffered)
}

// TestMemoryBoundedByConfiguration replays what made the writer grow 1-1.5
// MB per distinct (table, tenant, hour) of a segment (24 GB for 25,000
// hours): one row for each of many hours, or of many tenants. The heap
// stays under the bound derived from the configuration, and every row is
// in Parquet.
func TestMemoryBoundedByConfiguration(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	for _, c := range []struct {
		name           string
		hours, tenants int
		long           bool
	}{
		{"400-hours", 400, 1, false},
		{"400-tenants", 1, 400, false},
		{"25000-hours", 25000, 1, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			if c.long && !*long {
				t.Skip("-stitch.long (or STITCH_E2E_LONG=1)")
			}
			const maxOpen, maxBuffered = 16, 16 << 20
			dir := t.TempDir()
			runtime.GC()
			stop := heapPeak()
			w, err := Open(dir, MaxOpenFiles(maxOpen), MaxBufferedBytes(maxBuffered))
			if err != nil {
				t.Fatal(err)
			}
			base := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
			schema := parquettest.Schema("DeviceEvents")
			n := max(c.hours, c.tenants)
			for i := range n {
				tenant := fmt.Sprintf("tenant-%d", i%c.tenants)
				at := base.Add(time.Duration(i%c.hours) * time.Hour)
				b := parquettest.Batch(memory.DefaultAllocator, schema, tenant, []parquettest.Row{{Time: at, ID: int64(i)}})
				if err := w.Write(Source{Topic: "hunting.DeviceEvents", Offset: int64(i)}, b); err != nil {
					t.Fatal(err)
				}
				b.Release()
				if len(w.open) > maxOpen {
					t.Fatalf("%d files open, bound %d", len(w.open), maxOpen)
				}
				if len(w.finished) > 0 && !w.Due() {
					t.Fatal("a file finished early does not make the segment due")
				}
				if i%50 == 49 && w.Due() { // as the hunting sink does after a poll
					if err := w.Commit(); err != nil {
						t.Fatal(err)
					}
				}
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			peak, bound := stop(), memoryBound(maxOpen, maxBuffered)
			t.Logf("heap peak %d MiB, bound %d MiB", peak>>20, bound>>20)
			if peak > bound {
				t.Errorf("heap peaked at %d MiB, over the bound of %d MiB for %d open files", peak>>20, bound>>20, maxOpen)
			}
			if rows := readBack(t, dir); len(rows) != n {
				t.Errorf("%d rows in Parquet, want %d", len(rows), n)
			}
		})
	}
}

// TestRollHasLittleLeftToWrite: a steady stream keeps the rows the files
// hold near MaxBufferedBytes, and a roll writes out all that are pending
// at once. Over the second half of a segment the bound falls, so that at
// the roll (by age or by bytes) at most an eighth of it (and the last
// batch) is left, while the first half still buffers up to the full bound
// (large row groups). Every row is in Parquet.
func TestRollHasLittleLeftToWrite(t *testing.T) {
	const maxBuffered = 2 << 20
	schema := parquettest.Schema("DeviceEvents")
	base := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		name string
		opts []Option
	}{
		{"by-age", []Option{RollAge(time.Minute), RollBytes(1 << 40)}},
		{"by-bytes", []Option{RollAge(time.Hour), RollBytes(480 << 20)}},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			now := base
			w, err := Open(dir, append(c.opts, MaxBufferedBytes(maxBuffered), Clock(func() time.Time { return now }))...)
			if err != nil {
				t.Fatal(err)
			}
			rows, offset := 0, int64(0)
			var firstHalfPeak, batchBytes int64
			for sec := 0; !w.Due(); sec++ {
				if sec > 10_000 {
					t.Fatal("the segment never became due")
				}
				for tenant := range 8 {
					batch := make([]parquettest.Row, 50)
					for i := range batch {
						batch[i] = parquettest.Row{Time: base, ID: int64(rows + i)}
					}
					b := parquettest.Batch(memory.DefaultAllocator, schema, fmt.Sprintf("tenant-%d", tenant), batch)
					b.Bytes = 1 << 20 // input bytes: 480 of them (a minute) roll by bytes
					batchBytes = max(batchBytes, recordBytes(b.Record))
					if err := w.Write(Source{Topic: "hunting.DeviceEvents", Offset: offset}, b); err != nil {
						t.Fatal(err)
					}
					b.Release()
					rows += len(batch)
					offset++
				}
				if half := w.cfg.clock().Sub(w.started) < w.cfg.rollAge/2 && w.bytes < w.cfg.rollBytes/2; half {
					firstHalfPeak = max(firstHalfPeak, w.buffered)
				}
				now = now.Add(time.Second)
			}
			t.Logf("pending at the roll %d KiB (batch %d KiB); peak in the first half %d KiB; bound %d KiB",
				w.buffered>>10, batchBytes>>10, firstHalfPeak>>10, maxBuffered>>10)
			if limit := maxBuffered/rampFloor + batchBytes; w.buffered > limit {
				t.Errorf("%d KiB pending at the roll, want at most %d KiB", w.buffered>>10, limit>>10)
			}
			if firstHalfPeak < maxBuffered*3/4 {
				t.Errorf("the first half buffered at most %d KiB, want near the bound of %d KiB", firstHalfPeak>>10, maxBuffered>>10)
			}
			if err := w.Commit(); err != nil {
				t.Fatal(err)
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			if got := readBack(t, dir); len(got) != rows {
				t.Errorf("%d rows in Parquet, want %d", len(got), rows)
			}
		})
	}
}
