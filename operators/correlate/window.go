package correlate

import "time"

// Event time. Each input partition has a watermark: the latest event time it
// delivered. A partition's clock is its watermark less the allowed lateness;
// an alert older than its partition's clock when it arrives is late. Late
// alerts are still placed (their entities are looked up in state like any
// other) and counted in Stats().Late. A tenant's facts all come from one
// partition, and that partition's clock, not the wall clock nor another
// partition's, drives the idle close and expiry of the tenant's state, so a
// replay of old data behaves as it did live and a partition consumed ahead
// of another (fetch and poll sizes decide that) expires nothing of it.
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

// of is partition p's clock (zero before any input from it).
func (c *clock) of(p int32) time.Time {
	t, ok := c.marks[p]
	if !ok {
		return time.Time{}
	}
	return t.Add(-c.lateness)
}

// now is the highest clock of any partition (zero before any input).
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

// late says whether an event at t arrives behind partition p's clock.
func (c *clock) late(p int32, t time.Time) bool {
	now := c.of(p)
	return !now.IsZero() && t.Before(now)
}
