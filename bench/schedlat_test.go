package bench

import (
	"fmt"
	"runtime/metrics"
	"time"
)

// schedLatency reads the Go runtime's histogram of how long goroutines
// waited runnable before they ran (/sched/latencies:seconds). Two reads
// give the waits between them: on a machine whose cores are all busy, the
// time a stage's goroutine had work but no CPU.
type schedLatency struct {
	counts  []uint64
	buckets []float64 // the histogram's bounds, in seconds (len(counts)+1)
}

const schedMetric = "/sched/latencies:seconds"

func readSchedLatency() schedLatency {
	s := []metrics.Sample{{Name: schedMetric}}
	metrics.Read(s)
	h := s[0].Value.Float64Histogram()
	return schedLatency{counts: append([]uint64(nil), h.Counts...), buckets: h.Buckets}
}

// since reports the waits after from up to s: their p50, p99 and p99.9
// and the share of those over 10 ms (a scheduler's time slice: a goroutine
// that waited longer than one waited for others to use theirs up).
func (s schedLatency) since(from schedLatency) string {
	if len(s.counts) == 0 || len(from.counts) != len(s.counts) {
		return "n/a"
	}
	d := make([]uint64, len(s.counts))
	var total, over uint64
	for i := range d {
		d[i] = s.counts[i] - from.counts[i]
		total += d[i]
		if s.buckets[i] >= 0.010 {
			over += d[i]
		}
	}
	if total == 0 {
		return "none"
	}
	q := func(p float64) time.Duration {
		want := uint64(p * float64(total))
		var acc uint64
		for i, c := range d {
			acc += c
			if acc > want {
				// The bucket's upper bound (Buckets[i+1]).
				return time.Duration(s.buckets[i+1] * float64(time.Second)).Round(time.Microsecond / 10)
			}
		}
		return 0
	}
	show := func(d time.Duration) string {
		if d < time.Microsecond {
			return "<1µs"
		}
		return d.String()
	}
	return fmt.Sprintf("p50 %s p99 %s p99.9 %s, %.2f%% over 10ms (%d waits)", show(q(0.5)), show(q(0.99)), show(q(0.999)),
		100*float64(over)/float64(total), total)
}
