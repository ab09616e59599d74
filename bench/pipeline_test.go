package bench

import (
	"bufio"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stitch-xdr/stitch/internal/simulator"
	"github.com/stitch-xdr/stitch/pipeline"
)

// BenchmarkReplayPipeline measures the whole pipeline end to end, as
// `stitch replay` runs it: simulated records produced into the embedded
// broker, normalized, written to the hunting topics and Parquet, reduced to
// facts and correlated into incidents, outputs drained. It reports records/s
// through everything (start-up and drain included, so short runs understate
// the steady rate) and the ratio to the normalizer alone is what the
// transport, Arrow IPC, Parquet and correlation cost.
//
//	go test ./bench -run XXX -bench ReplayPipeline -benchtime 1x
func BenchmarkReplayPipeline(b *testing.B) {
	const n = 100_000
	dir := b.TempDir()
	in := filepath.Join(dir, "sim.jsonl")
	f, err := os.Create(in)
	if err != nil {
		b.Fatal(err)
	}
	w := bufio.NewWriterSize(f, 1<<20)
	sim := simulator.New(simulator.Seed(3), simulator.EventsPerSecond(200), simulator.AttackEvery(10_000))
	var buf []byte
	var bytes int64
	for range n {
		_, buf = sim.Next(buf[:0])
		w.Write(buf)
		w.WriteByte('\n')
		bytes += int64(len(buf)) + 1
	}
	w.Flush()
	f.Close()
	b.SetBytes(bytes)
	b.ResetTimer()
	for i := range b.N {
		cfg := pipeline.Default()
		start := time.Now()
		sum, err := pipeline.Replay(context.Background(), cfg, pipeline.ReplayOptions{
			Inputs: []string{in}, OutDir: filepath.Join(dir, "out", string(rune('a'+i%26))),
		})
		if err != nil {
			b.Fatal(err)
		}
		if sum.RecordsRead != n {
			b.Fatalf("read %d records, want %d", sum.RecordsRead, n)
		}
		b.ReportMetric(float64(n)/time.Since(start).Seconds(), "records/s")
		b.ReportMetric(float64(sum.Incidents), "incidents")
	}
}
