package bench

import (
	"testing"

	"github.com/stitch-xdr/stitch/internal/simulator"
	"github.com/stitch-xdr/stitch/operators/correlate"
	"github.com/stitch-xdr/stitch/operators/normalize"
)

// BenchmarkFacts measures what the facts tap does with every normalized
// batch (correlate.Extract and the facts' encoding) and what the correlate
// and respond-feed stages do with each facts record (UnmarshalFacts): the
// simulator's stream (three tenants, attack stories) normalized into the
// pipeline's 8,192-row batches before the timer. records/s are the input
// records the batches hold.
//
//	go test ./bench -run XXX -bench Facts -benchtime 20x
func BenchmarkFacts(b *testing.B) {
	const pre = 50_000
	sim := simulator.New(simulator.Seed(14), simulator.Tenants(3), simulator.AttackEvery(2_000))
	n := normalize.New()
	defer n.Close()
	var batches []normalize.Batch
	emit := func(bt normalize.Batch) { batches = append(batches, bt) }
	dead := func(d normalize.DeadLetter) { b.Fatalf("dead letter from the simulator: %s %s", d.Reason, d.Error) }
	for range pre {
		_, v := sim.Next(nil)
		n.Add(normalize.Input{Value: v}, emit, dead)
	}
	n.Flush(emit)
	defer func() {
		for _, bt := range batches {
			bt.Release()
		}
	}()
	b.ReportAllocs()
	b.ResetTimer()
	var size int
	for range b.N {
		size = 0
		for _, bt := range batches {
			f := correlate.Extract(bt)
			if f == nil {
				continue
			}
			v, err := f.Marshal()
			if err != nil {
				b.Fatal(err)
			}
			size += len(v)
			if _, err := correlate.UnmarshalFacts(v); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(b.N)*pre/b.Elapsed().Seconds(), "records/s")
	b.ReportMetric(float64(size)/pre, "facts-bytes/record")
}
