package correlate

import "time"

// Event time. Each input partition has a watermark: the latest event time it
// delivered. The correlator's clock is the highest watermark less the allowed
// lateness; an alert older than the clock when it arrives is late. Late alerts
// are still placed (their entities are looked up in state like any other) and
// counted in Stats().Late. The clock, not the wall clock, drives idle close
// and expiry, so a replay of old data behaves as it did live.
type clock struct {
	marks    map[int32]time.Time
	lateness time.Duration
}

func (c *clock) observe(partition int32, t time.Time) {
	if c.marks == nil {
		c.marks = map[int32]time.Time{}
	}
	if t.After(c.marks[partition]) {
		c.marks[partition] = t
	}
}

// now is the event-time clock (zero before any input).
func (c *clock) now() time.Time {
	var hi time.Time
	for _, t := range c.marks {
		if t.After(hi) {
			hi = t
		}
	}
	if hi.IsZero() {
		return hi
	}
	return hi.Add(-c.lateness)
}

// late says whether an event at t arrives behind the clock.
func (c *clock) late(t time.Time) bool {
	now := c.now()
	return !now.IsZero() && t.Before(now)
}
