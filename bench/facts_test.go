package bench

import (
	"os"
	"testing"

	"github.com/stitch-xdr/stitch/internal/simulator"
	"github.com/stitch-xdr/stitch/operators/correlate"
	"github.com/stitch-xdr/stitch/operators/normalize"
)

// BenchmarkFacts measures what the facts tap does with every normalized
// batch (a correlate.Extractor's Extract, a new one each iteration, and
// the facts' encoding) and what the correlate
// and respond-feed stages do with each facts record (UnmarshalFacts): the
// simulator's stream (three tenants, attack stories) normalized into the
// pipeline's 8,192-row batches before the timer. records/s are the input
// records the batches hold. STITCH_BENCH_FLUSH_EVERY=N flushes the
// normalizer every N records instead, as a transaction of a live stream
// does (20,000 records/s and alerts every 200 ms end one about every
// 4,000): a batch a table and tenant, about a hundred rows each.
// STITCH_BENCH_EXTRACTOR=0 extracts with correlate.Extract, which keeps
// nothing from one batch to the next.
//
//	go test ./bench -run XXX -bench Facts -benchtime 20x
func BenchmarkFacts(b *testing.B) {
	const pre = 50_000
	flushEvery := envInt("STITCH_BENCH_FLUSH_EVERY", 0)
	sim := simulator.New(simulator.Seed(14), simulator.Tenants(3), simulator.AttackEvery(2_000))
	n := normalize.New()
	defer n.Close()
	var batches []normalize.Batch
	emit := func(bt normalize.Batch) { batches = append(batches, bt) }
	dead := func(d normalize.DeadLetter) { b.Fatalf("dead letter from the simulator: %s %s", d.Reason, d.Error) }
	for i := range pre {
		_, v := sim.Next(nil)
		n.Add(normalize.Input{Value: v}, emit, dead)
		if flushEvery > 0 && (i+1)%flushEvery == 0 {
			n.Flush(emit)
		}
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
		x := correlate.NewExtractor()
		if os.Getenv("STITCH_BENCH_EXTRACTOR") == "0" {
			x = nil // correlate.Extract: nothing kept from batch to batch
		}
		for _, bt := range batches {
			var f *correlate.Facts
			if x != nil {
				f = x.Extract(bt)
			} else {
				f = correlate.Extract(bt)
			}
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
	b.ReportMetric(float64(pre)/float64(len(batches)), "rows/batch")
}
