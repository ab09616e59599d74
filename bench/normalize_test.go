package bench

import (
	"testing"

	"github.com/stitch-xdr/stitch/internal/simulator"
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
