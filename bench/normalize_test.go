package bench

import (
	"testing"
	"time"

	"github.com/stitch-xdr/stitch/connectors/ipc"
	"github.com/stitch-xdr/stitch/internal/simulator"
	"github.com/stitch-xdr/stitch/operators/correlate"
	"github.com/stitch-xdr/stitch/operators/normalize"
)

// BenchmarkNormalizeSimulated measures stage-1 normalization (JSON records to
// Arrow batches, one Normalizer on one goroutine) over the simulator's stream:
// 20,000 records pre-generated outside the timer (background telemetry of two
// tenants, with attack stories), fed one Kafka record at a time and cycled.
func BenchmarkNormalizeSimulated(b *testing.B) {
	const pre = 20_000
	sim := simulator.New(simulator.AttackEvery(2_000))
	recs := make([][]byte, pre)
	var size int64
	for i := range recs {
		_, v := sim.Next(nil)
		recs[i] = v
		size += int64(len(v))
	}
	n := normalize.New()
	defer n.Close()
	emit := func(bt normalize.Batch) { bt.Release() }
	dead := func(d normalize.DeadLetter) { b.Fatalf("dead letter from the simulator: %s %s", d.Reason, d.Error) }
	// One pass before the timer: tables' states and the builders' sizes are
	// in place, as in a running pipeline.
	for _, r := range recs {
		n.Add(normalize.Input{Value: r}, emit, dead)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		n.Add(normalize.Input{Value: recs[i%pre]}, emit, dead)
	}
	n.Flush(emit)
	sec := b.Elapsed().Seconds()
	b.ReportMetric(float64(b.N)/sec, "records/s")
	b.ReportMetric(float64(b.N)*float64(size)/pre/sec/1e6, "MB/s")
}

// BenchmarkNormalizeParallel runs one Normalizer per goroutine, as one per
// input partition runs in the pipeline, to show how normalization scales
// with cores (-cpu 1,2,4,8,16). records/s is the total over all goroutines;
// divide by -cpu for the per-core rate.
func BenchmarkNormalizeParallel(b *testing.B) {
	const pre = 20_000
	sim := simulator.New(simulator.AttackEvery(2_000))
	recs := make([][]byte, pre)
	for i := range recs {
		_, v := sim.Next(nil)
		recs[i] = v
	}
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		n := normalize.New()
		defer n.Close()
		emit := func(bt normalize.Batch) { bt.Release() }
		dead := func(d normalize.DeadLetter) { panic("dead letter from the simulator: " + d.Error) }
		i := 0
		for pb.Next() {
			n.Add(normalize.Input{Value: recs[i%pre]}, emit, dead)
			i++
		}
		n.Flush(emit)
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
}

// BenchmarkNormalizeFlush measures what normalize's commit costs apart from
// the brokers: the records of one transaction (STITCH_BENCH_COMMIT_RECORDS,
// default 1,000: 10k/s at kafka.urgent_commit_interval 100ms) are added
// outside the timer, then the timer runs over the Normalizer's Flush and
// what the enabled taps do with each batch it emits: the hunting tap's
// Arrow IPC encoding (lz4, its default) and the facts tap's
// correlate.Extract and MarshalChunks. Tables with fewer rows than a
// transaction emit small batches, as in the pipeline.
//
//	go test ./bench -run XXX -bench NormalizeFlush -benchtime 200x -cpuprofile cpu.out
func BenchmarkNormalizeFlush(b *testing.B) {
	per := envInt("STITCH_BENCH_COMMIT_RECORDS", 1_000)
	const pre = 50_000
	sim := simulator.New(simulator.Seed(14), simulator.Tenants(3), simulator.AttackEvery(2_000))
	recs := make([][]byte, pre)
	for i := range recs {
		_, v := sim.Next(nil)
		recs[i] = v
	}
	n := normalize.New()
	defer n.Close()
	enc := ipc.NewEncoder(nil, ipc.LZ4)
	var batches, factsBytes, ipcBytes int64
	var tapErr error
	emit := func(bt normalize.Batch) {
		defer bt.Release()
		batches++
		msg, err := enc.Encode(bt)
		if err != nil {
			tapErr = err
			return
		}
		ipcBytes += int64(len(msg.Value))
		if f := correlate.Extract(bt); f != nil {
			chunks, _, err := f.MarshalChunks(512 << 10)
			if err != nil {
				tapErr = err
				return
			}
			for _, c := range chunks {
				factsBytes += int64(len(c))
			}
		}
	}
	dead := func(d normalize.DeadLetter) { b.Fatalf("dead letter from the simulator: %s %s", d.Reason, d.Error) }
	next := 0
	fill := func() {
		for range per {
			n.Add(normalize.Input{Value: recs[next%pre]}, emit, dead)
			next++
		}
	}
	for range pre / per { // the tables' states and builders' sizes in place
		fill()
		n.Flush(emit)
	}
	batches, factsBytes, ipcBytes = 0, 0, 0
	b.ReportAllocs()
	b.ResetTimer()
	var cpu time.Duration // the process's CPU in the flushes: on a shared machine wall time says little
	for range b.N {
		b.StopTimer()
		fill()
		b.StartTimer()
		c0 := cpuTime()
		n.Flush(emit)
		cpu += cpuTime() - c0
	}
	b.StopTimer()
	if tapErr != nil {
		b.Fatal(tapErr)
	}
	ns := float64(b.Elapsed().Nanoseconds())
	b.ReportMetric(ns/float64(b.N)/1e3, "µs/commit")
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-µs/commit")
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N)/float64(per), "cpu-ns/record")
	b.ReportMetric(float64(batches)/float64(b.N), "batches/commit")
	b.ReportMetric(float64(factsBytes)/float64(b.N)/float64(per), "facts-bytes/record")
	b.ReportMetric(float64(ipcBytes)/float64(b.N)/float64(per), "ipc-bytes/record")
}
