package detect

import (
	"math"
	"strconv"
	"strings"
	"time"
)

// The metric correlation types of the Sigma correlation specification
// 2.1.0 compare a number computed from condition.field's values in a
// group's window with the condition (gt, gte, lt, lte, eq, neq, ranges as
// for the counts; thresholds may be fractions):
//
//   - value_sum: the sum of the values;
//   - value_avg: their average;
//   - value_percentile: the percentage of the window's values equal to the
//     value of the event just observed (case folded, as value_count counts
//     values). The specification names no percentile to compute ("Check
//     when a certain percentage of observed values occur", its example
//     `field: Image, lte: 1`: a process name that is at most 1% of a
//     computer's processes in 24h), so this is the reading it defines:
//     the value's share, any value, numeric or not. pySigma's
//     condition.percentile extension is reported unsupported.
//
// value_sum and value_avg skip a value that is not a number (a decimal or
// float, or 0x hexadecimal; NaN and infinities are no numbers) and count
// it (Windows.TakeSkipped); an event without the field is no observation
// for any metric type. A window of value_sum or value_avg that fires is
// cleared, as the counts' are; value_percentile's window is the baseline
// the next values are judged against, so it is kept, and each event whose
// share meets the condition fires (its alert id is the event's value and
// time).
//
// A metric window holds at most maxSamples samples (JSON in the store, so
// one changelog record stays small):
//
//   - value_sum, value_avg: one sample per event (its time and value) up
//     to the cap, exact; past it, the two samples neighbouring in time
//     whose merge spans the least time merge into one (the count and sum
//     of both, the newest time), so the sum and the count stay exact. A
//     merged sample leaves the window when its newest event does: the
//     window may still count events that are older than the timespan by
//     the sample's span. With events in time order that span is at most
//     2×timespan/(maxSamples-2) (1h: 14 s); TestMetricCap checks it.
//   - value_percentile: the newest maxSamples values within the timespan;
//     past the cap the oldest value leaves, so the share is exact over the
//     newest maxSamples values of the window rather than over all of it.
const maxSamples = 512

// metricSamples is maxSamples, a variable for the tests.
var metricSamples = maxSamples

// parseNumber reads a value of value_sum or value_avg.
func parseNumber(s string) (float64, bool) {
	s = strings.TrimSpace(s)
	if strings.HasPrefix(s, "0x") || strings.HasPrefix(s, "0X") {
		n, err := strconv.ParseUint(s[2:], 16, 64)
		return float64(n), err == nil
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
		return 0, false
	}
	return f, true
}

// count is the events a sample stands for.
func (e windowEvent) count() int {
	if e.N == 0 {
		return 1
	}
	return e.N
}

// metric computes what cr compares over the window's samples (value: the
// folded value of the event just observed, for value_percentile), and the
// events they stand for.
func metric(cr *Correlation, evs []windowEvent, value string) (m float64, n int) {
	sum, same := 0.0, 0
	for _, e := range evs {
		c := e.count()
		n += c
		sum += e.Sum
		if e.Value == value {
			same += c
		}
	}
	switch {
	case n == 0:
		return 0, 0
	case cr.Type == "value_sum":
		return sum, n
	case cr.Type == "value_avg":
		return sum / float64(n), n
	}
	return 100 * float64(same) / float64(n), n
}

// capSamples keeps a metric window within metricSamples (see maxSamples);
// evs are in time order.
func capSamples(cr *Correlation, evs []windowEvent) []windowEvent {
	if len(evs) <= metricSamples {
		return evs
	}
	if cr.Type == "value_percentile" {
		return evs[len(evs)-metricSamples:]
	}
	for len(evs) > metricSamples {
		best, span := 0, time.Duration(math.MaxInt64)
		for i := 0; i+1 < len(evs); i++ {
			if s := evs[i+1].T.Sub(evs[i].from()); s < span {
				best, span = i, s
			}
		}
		a, b := evs[best], evs[best+1]
		merged := windowEvent{T: b.T, From: a.from(), Ref: b.Ref, N: a.count() + b.count(), Sum: finite(a.Sum + b.Sum)}
		evs[best] = merged
		evs = append(evs[:best+1], evs[best+2:]...)
	}
	return evs
}

// from is the time of a sample's oldest event.
func (e windowEvent) from() time.Time {
	if e.From.IsZero() {
		return e.T
	}
	return e.From
}

// finite keeps a merged sum storable (JSON has no infinities): one past
// the largest float stays the largest, which every condition reads as
// beyond any threshold.
func finite(f float64) float64 {
	switch {
	case math.IsInf(f, 1):
		return math.MaxFloat64
	case math.IsInf(f, -1):
		return -math.MaxFloat64
	}
	return f
}
