package pipeline

import (
	"context"
	"fmt"
	"io"
	"reflect"
	"sort"
	"strings"
	"time"
)

// Progress writes one line every interval until ctx is done: records in per
// second, rows per table, dead letters, incidents and consumer lag.
func (p *Pipeline) Progress(ctx context.Context, w io.Writer, every time.Duration) {
	if every <= 0 {
		return
	}
	t := time.NewTicker(every)
	defer t.Stop()
	last := p.Totals()
	lastAt := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			cur := p.Totals()
			lag, ok := p.InputLag()
			fmt.Fprintln(w, progressLine(last, cur, now.Sub(lastAt), lag, ok))
			last, lastAt = cur, now
		}
	}
}

func progressLine(prev, cur Snapshot, dt time.Duration, lag int64, lagKnown bool) string {
	var b strings.Builder
	rate := float64(cur.RecordsRead-prev.RecordsRead) / dt.Seconds()
	fmt.Fprintf(&b, "stitch: %s rec/s | read %d | rows %d", humanRate(rate), cur.RecordsRead, cur.NormalizedTotal())
	if tables := topTables(cur.Normalized, 4); tables != "" {
		fmt.Fprintf(&b, " (%s)", tables)
	}
	fmt.Fprintf(&b, " | dead %d | incidents %d | parquet rows %d", cur.DeadTotal(), cur.Incidents, cur.HuntingTotal())
	if lagKnown {
		fmt.Fprintf(&b, " | input lag %d", lag)
	} else {
		fmt.Fprintf(&b, " | input lag ?")
	}
	return b.String()
}

func topTables(m map[string]int64, n int) string {
	type kv struct {
		k string
		v int64
	}
	var s []kv
	for k, v := range m {
		s = append(s, kv{k, v})
	}
	sort.Slice(s, func(i, j int) bool { return s[i].v > s[j].v || (s[i].v == s[j].v && s[i].k < s[j].k) })
	var parts []string
	for i, e := range s {
		if i == n {
			parts = append(parts, fmt.Sprintf("+%d tables", len(s)-n))
			break
		}
		parts = append(parts, fmt.Sprintf("%s %d", e.k, e.v))
	}
	return strings.Join(parts, ", ")
}

func humanRate(r float64) string {
	switch {
	case r >= 1e6:
		return fmt.Sprintf("%.2fM", r/1e6)
	case r >= 1e3:
		return fmt.Sprintf("%.1fk", r/1e3)
	}
	return fmt.Sprintf("%.0f", r)
}

// lagLoop refreshes the consumer-lag gauges every interval, whether or not
// anyone prints progress.
func (p *Pipeline) lagLoop(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		lctx, cancel := context.WithTimeout(ctx, every)
		lag, err := p.Lag(lctx)
		cancel()
		if err != nil {
			p.log.Debug("consumer lag", "err", err)
			p.inputLag.Store(-1)
			continue
		}
		p.inputLag.Store(lag[p.cfg.Kafka.Group+"-normalize"])
	}
}

// InputLag is the normalize stage's lag on the input topics at the last
// check: the records that arrived and are not yet processed. (The internal
// topics' lag is in the stitch_consumer_lag_records gauge; it reads one per
// partition high when idle, for the transaction markers.)
func (p *Pipeline) InputLag() (int64, bool) {
	v := p.inputLag.Load()
	return v, v >= 0
}

// WaitIdle returns once this process has finished all the work on its
// topics, or when ctx is done: the normalize group has committed its whole
// input, and every record produced to an internal topic (facts, hunting) has
// been committed by the stage that reads it. Replay, a single process, uses it
// to know that its outputs are complete. (Committed offsets alone cannot tell:
// a transaction's commit marker takes an offset that a consumer never
// commits past.)
func (p *Pipeline) WaitIdle(ctx context.Context, poll time.Duration) error {
	stable := 0
	var last Snapshot
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(poll):
		}
		if !p.Ready() {
			continue
		}
		lag, err := p.Lag(ctx)
		if err != nil {
			p.log.Debug("lag check", "err", err)
			stable = 0
			continue
		}
		cur := p.Totals()
		caughtUp := lag[p.cfg.Kafka.Group+"-normalize"] == 0
		for topic, out := range cur.RecordsOut {
			if p.internal(topic) && cur.RecordsIn[topic] != out {
				caughtUp = false
			}
		}
		p.log.Debug("waiting for idle", "input_lag", lag[p.cfg.Kafka.Group+"-normalize"], "out", cur.RecordsOut, "in", cur.RecordsIn)
		if caughtUp && reflect.DeepEqual(cur, last) {
			stable++
			if stable >= 2 {
				return nil
			}
		} else {
			stable = 0
		}
		last = cur
	}
}

// internal reports whether a topic is read by one of the pipeline's stages.
func (p *Pipeline) internal(topic string) bool {
	if topic == p.cfg.Topics.Facts && p.cfg.Correlate.Enabled {
		return true
	}
	return p.cfg.Hunting.Enabled && strings.HasPrefix(topic, p.cfg.Topics.HuntingPrefix)
}
