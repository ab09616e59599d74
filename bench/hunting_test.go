package bench

import (
	"hash/fnv"
	"io/fs"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/apache/arrow/go/v17/arrow/memory"

	"github.com/stitch-xdr/stitch/connectors/ipc"
	"github.com/stitch-xdr/stitch/connectors/parquet"
	"github.com/stitch-xdr/stitch/internal/simulator"
	"github.com/stitch-xdr/stitch/operators/normalize"
)

// BenchmarkHuntingPath measures, one step at a time, what a record costs
// on its way from the input topic to a hunting Parquet file in a drain
// (BenchmarkEndToEnd): the normalizer (JSON to Arrow batches), the hunting
// tap's Arrow IPC encoding (LZ4, the default), the hunting sink's IPC
// decoding, and the Parquet writer (one segment, committed at the end).
// The stream is the end-to-end one (three tenants, a story every 2,000
// records) and the normalizer is flushed every 15,000 records, as a drain's
// one-second transactions flush it, so the batches have the drain's shape
// (a few hundred rows per table and tenant). records/s are input records.
//
//	go test ./bench -run XXX -bench HuntingPath -benchtime 5x
func BenchmarkHuntingPath(b *testing.B) {
	const records, perFlush = 90_000, 15_000
	sim := simulator.New(simulator.Seed(14), simulator.Tenants(3), simulator.EventsPerSecond(2000), simulator.AttackEvery(2000))
	in := make([][]byte, records)
	for i := range in {
		_, in[i] = sim.Next(nil)
	}
	mem := memory.NewGoAllocator()
	normalizeAll := func(emit func(normalize.Batch)) {
		n := normalize.New(normalize.WithAllocator(mem))
		defer n.Close()
		dead := func(d normalize.DeadLetter) { b.Fatalf("dead letter from the simulator: %s %s", d.Reason, d.Error) }
		for i, v := range in {
			n.Add(normalize.Input{Value: v}, emit, dead)
			if (i+1)%perFlush == 0 {
				n.Flush(emit)
			}
		}
		n.Flush(emit)
	}
	var batches []normalize.Batch
	normalizeAll(func(bt normalize.Batch) { batches = append(batches, bt) })
	defer func() {
		for _, bt := range batches {
			bt.Release()
		}
	}()
	enc := ipc.NewEncoder(nil, ipc.LZ4) // as the hunting tap makes it
	msgs := make([]ipc.Message, len(batches))
	for i, bt := range batches {
		m, err := enc.Encode(bt)
		if err != nil {
			b.Fatal(err)
		}
		msgs[i] = m
	}
	// CPU time (this process's, GC included) is steadier than wall time on
	// a machine shared with other work.
	var cpu0 float64
	start := func(b *testing.B) { b.ResetTimer(); cpu0 = processCPU() }
	report := func(b *testing.B) {
		cpu := processCPU() - cpu0
		b.ReportMetric(float64(b.N)*records/b.Elapsed().Seconds(), "records/s")
		b.ReportMetric(cpu*1e6/float64(b.N)/records, "cpu-µs/record")
	}

	b.Run("normalize", func(b *testing.B) {
		b.ReportAllocs()
		start(b)
		for b.Loop() {
			normalizeAll(func(bt normalize.Batch) { bt.Release() })
		}
		report(b)
	})
	b.Run("ipc-encode", func(b *testing.B) {
		b.ReportAllocs()
		var size int
		start(b)
		for b.Loop() {
			size = 0
			for _, bt := range batches {
				m, err := enc.Encode(bt)
				if err != nil {
					b.Fatal(err)
				}
				size += len(m.Value)
			}
		}
		report(b)
		b.ReportMetric(float64(size)/records, "bytes/record")
	})
	b.Run("ipc-decode", func(b *testing.B) {
		b.ReportAllocs()
		start(b)
		for b.Loop() {
			for _, m := range msgs {
				bt, err := ipc.Decode(m.Value, m.Headers, mem)
				if err != nil {
					b.Fatal(err)
				}
				bt.Release()
			}
		}
		report(b)
	})
	b.Run("parquet", func(b *testing.B) {
		b.ReportAllocs()
		var size int64
		start(b)
		for b.Loop() {
			dir := b.TempDir()
			w, err := parquet.Open(dir, parquet.Allocator(mem))
			if err != nil {
				b.Fatal(err)
			}
			offsets := map[parquet.TopicPartition]int64{}
			for _, bt := range batches {
				// As the hunting tap keys them: by tenant, into 6 partitions.
				h := fnv.New32a()
				h.Write([]byte(bt.Tenant))
				tp := parquet.TopicPartition{Topic: "hunting." + bt.Table, Partition: int32(h.Sum32() % 6)}
				if err := w.Write(parquet.Source{Topic: tp.Topic, Partition: tp.Partition, Offset: offsets[tp]}, bt); err != nil {
					b.Fatal(err)
				}
				offsets[tp]++
			}
			if err := w.Close(); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			size = 0
			filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
				if err == nil && !d.IsDir() && filepath.Ext(p) == ".parquet" {
					if info, err := d.Info(); err == nil {
						size += info.Size()
					}
				}
				return nil
			})
			b.StartTimer()
		}
		report(b)
		b.ReportMetric(float64(size)/records, "parquet-bytes/record")
	})
}

// processCPU is the user and system CPU seconds this process has used.
func processCPU() float64 {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}
