package pipeline

import (
	"context"
	"fmt"
	"io"
	"reflect"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/stitch-xdr/stitch/internal/english"
)

// Progress writes one line every interval until ctx is done: the records
// the source stages consume per second, each stage's part (stage.Progress),
// and the input lag.
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
			fmt.Fprintln(w, p.progressLine(last, cur, now.Sub(lastAt), lag, ok))
			last, lastAt = cur, now
		}
	}
}

func (p *Pipeline) progressLine(prev, cur Snapshot, dt time.Duration, lag int64, lagKnown bool) string {
	var b strings.Builder
	var in, was int64
	for _, src := range p.topo.Sources() {
		for _, t := range src.Inputs {
			in += cur.Stages[src.Name].RecordsIn[t]
			was += prev.Stages[src.Name].RecordsIn[t]
		}
	}
	fmt.Fprintf(&b, "stitch: %s rec/s", humanRate(float64(in-was)/dt.Seconds()))
	for i, info := range p.topo.Stages {
		if f := p.topo.defs[i].Progress; f != nil {
			fmt.Fprintf(&b, " | %s", f(cur.Stages[info.Name]))
		}
	}
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
			parts = append(parts, "+"+english.Count(len(s)-n, "table"))
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
		p.inputLag.Store(p.sourceLag(lag))
	}
}

// sourceLag is the lag of the stages that read from outside the pipeline.
func (p *Pipeline) sourceLag(lag map[string]int64) int64 {
	var n int64
	for _, s := range p.topo.Sources() {
		n += lag[s.Group]
	}
	return n
}

// InputLag is the source stages' lag on the input topics at the last
// check: the records that arrived and are not yet processed. (The internal
// topics' lag is in the stitch_consumer_lag_records gauge; it reads one per
// partition high when idle, for the transaction markers.)
func (p *Pipeline) InputLag() (int64, bool) {
	v := p.inputLag.Load()
	return v, v >= 0
}

// WaitIdle returns once this process has finished all the work on its
// topics, or when ctx is done: the source stages have committed their whole
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
		// Empty transactions commit all the time: only work counts.
		for name, s := range cur.Stages {
			s.Transactions, s.Aborted = 0, 0
			cur.Stages[name] = s
		}
		caughtUp := p.sourceLag(lag) == 0
		for topic, out := range cur.RecordsOut {
			if !p.topo.Internal(topic) {
				continue
			}
			// Every stage that reads an internal topic has read all that
			// was produced to it (and, after a restart, what an earlier
			// process left unread).
			for _, st := range p.topo.Stages {
				if slices.Contains(st.Inputs, topic) && cur.Stages[st.Name].RecordsIn[topic] < out {
					caughtUp = false
				}
			}
		}
		p.log.Debug("waiting for idle", "input_lag", p.sourceLag(lag), "out", cur.RecordsOut, "in", cur.RecordsIn)
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
