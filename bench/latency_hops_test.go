package bench

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/stitch-xdr/stitch/operators/correlate"
	"github.com/stitch-xdr/stitch/pipeline"
)

// hopTracer breaks each probe alert's latency into its stage hops with
// pipeline.SetStageTrace: when normalize's poll returned its rows, when
// that poll's records were processed, when the transaction stopped reading
// (its flushes began), when every output was acknowledged (EndTxn began)
// and when it committed; the same for correlate's poll of the alert's facts.
type hopTracer struct {
	prefix []byte // `"lat<name>-`: the probe ids of this run
	mu     sync.Mutex
	stages map[string]*stageTrace
}

type stageTrace struct {
	polls, records int                     // polls that returned records, and their records
	last           pipeline.StageEventKind // the stage's previous event, at lastAt
	lastAt         time.Time
	spent          [pipeline.StageAborted + 1]time.Duration // wall time after each kind of event, until the next
	occ            map[string][]*hopTimes                   // by alert id, in read order
	lastPoll       []*hopTimes
	open           []*hopTimes // read in the open transaction
}

// hopTimes is one read of a probe alert by a stage, and the transaction
// that read it: the time of each pipeline.StageEventKind up to
// StageCommitted.
type hopTimes [pipeline.StageCommitted + 1]time.Time

var tracedStages = []string{"normalize", "correlate"}

func newHopTracer(name string) *hopTracer {
	h := &hopTracer{prefix: []byte(`"lat` + name + "-"), stages: map[string]*stageTrace{}}
	for _, s := range tracedStages {
		h.stages[s] = &stageTrace{occ: map[string][]*hopTimes{}}
	}
	return h
}

// probes are the probe alert ids that v names, once per mention: in the
// JSON of an input record (quoted), or in the alerts and evidence of a
// facts record (binary since 2d84193).
func (h *hopTracer) probes(v []byte) []string {
	if !bytes.Contains(v, h.prefix[1:]) {
		return nil
	}
	var ids []string
	if len(v) > 0 && v[0] != '{' {
		f, err := correlate.UnmarshalFacts(v)
		if err != nil {
			return nil
		}
		mentions := make([]string, 0, len(f.Alerts)+len(f.Evidence))
		for _, a := range f.Alerts {
			mentions = append(mentions, a.ID)
		}
		for _, e := range f.Evidence {
			mentions = append(mentions, e.AlertID)
		}
		probe := string(h.prefix[1:])
		for _, id := range mentions {
			if strings.HasPrefix(id, probe) {
				ids = append(ids, id)
			}
		}
		return ids
	}
	for {
		i := bytes.Index(v, h.prefix)
		if i < 0 {
			return ids
		}
		v = v[i+1:]
		j := bytes.IndexByte(v, '"')
		if j < 0 {
			return ids
		}
		ids = append(ids, string(v[:j]))
		v = v[j:]
	}
}

func (h *hopTracer) event(ev pipeline.StageEvent) {
	st := h.stages[ev.Stage]
	if st == nil {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if !st.lastAt.IsZero() {
		st.spent[st.last] += ev.At.Sub(st.lastAt)
	}
	st.last, st.lastAt = ev.Kind, ev.At
	switch ev.Kind {
	case pipeline.StagePolled:
		st.lastPoll = st.lastPoll[:0]
		if n := ev.Fetches.NumRecords(); n > 0 {
			st.polls++
			st.records += n
		}
		ev.Fetches.EachRecord(func(r *kgo.Record) {
			for _, id := range h.probes(r.Value) {
				o := &hopTimes{pipeline.StagePolled: ev.At}
				st.occ[id] = append(st.occ[id], o)
				st.lastPoll = append(st.lastPoll, o)
				st.open = append(st.open, o)
			}
		})
	case pipeline.StageProcessed:
		for _, o := range st.lastPoll {
			o[ev.Kind] = ev.At
		}
	case pipeline.StageAborted:
		st.open = st.open[:0]
	default: // closing, ending, committed: the open transaction's
		for _, o := range st.open {
			o[ev.Kind] = ev.At
		}
		if ev.Kind == pipeline.StageCommitted {
			st.open = st.open[:0]
		}
	}
}

// hopNames are the hops of an alert's way, in order: produce → normalize's
// poll returns it → its poll processed → normalize stops reading → its
// outputs produced (the processor's and stores' flushes) → acknowledged →
// committed → correlate's poll returns the facts → processed → correlate
// stops reading → produced → acknowledged → committed → the incidents
// reader has it.
var hopNames = []string{"n.poll", "n.proc", "n.wait", "n.flush", "n.ack", "n.end", "c.poll", "c.proc", "c.wait", "c.flush", "c.ack", "c.end", "read"}

// hops of one alert produced at t0 and seen on incidents at seen: the
// correlate transaction that committed nearest the sighting, and the
// normalize one that committed nearest that transaction's read (nil: not
// traced).
func (h *hopTracer) hops(id string, t0, seen time.Time) []time.Duration {
	h.mu.Lock()
	defer h.mu.Unlock()
	c := nearest(h.stages["correlate"].occ[id], seen)
	if c == nil {
		return nil
	}
	n := nearest(h.stages["normalize"].occ[id], c[pipeline.StagePolled])
	if n == nil {
		return nil
	}
	ts := append(append(append([]time.Time{t0}, n[:]...), c[:]...), seen)
	out := make([]time.Duration, len(ts)-1)
	for i := range out {
		out[i] = ts[i+1].Sub(ts[i])
	}
	return out
}

// nearest is the committed read whose commit is nearest to t.
func nearest(occ []*hopTimes, t time.Time) *hopTimes {
	var best *hopTimes
	var bd time.Duration
	for _, o := range occ {
		if o[pipeline.StageCommitted].IsZero() {
			continue
		}
		d := o[pipeline.StageCommitted].Sub(t).Abs()
		if best == nil || d < bd {
			best, bd = o, d
		}
	}
	return best
}

// hopReport is each hop's p50 and p99 over the traced alerts, and its
// mean over the slowest tenth (the alerts at or above the p90 of the
// whole): where the tail's time goes.
func hopReport(all [][]time.Duration) string {
	if len(all) == 0 {
		return "no traced alerts"
	}
	total := func(h []time.Duration) (s time.Duration) {
		for _, d := range h {
			s += d
		}
		return s
	}
	slices.SortFunc(all, func(a, b []time.Duration) int { return int(total(a) - total(b)) })
	tail := all[len(all)*9/10:]
	var b strings.Builder
	fmt.Fprintf(&b, "%d traced alerts; hop p50/p99/tail-mean:", len(all))
	for i, name := range hopNames {
		col := make([]time.Duration, len(all))
		for j, h := range all {
			col[j] = h[i]
		}
		slices.Sort(col)
		var tm time.Duration
		for _, h := range tail {
			tm += h[i]
		}
		tm /= time.Duration(len(tail))
		fmt.Fprintf(&b, " %s %s/%s/%s", name, ms(percentile(col, 50)), ms(percentile(col, 99)), ms(tm))
	}
	return b.String()
}

func ms(d time.Duration) string { return fmt.Sprintf("%d", d.Round(time.Millisecond).Milliseconds()) }

// phases says where each traced stage's goroutine spent its wall time
// since the trace began, by what it was doing after each event: in a poll
// (after StageProcessed, StageCommitted or StageAborted: waiting for
// records, or for the CPU to return them), processing a poll's records
// (after StagePolled), flushing its outputs (after StageClosing: the
// processor's CPU), waiting for their acknowledgements (after
// StageAcking) and in EndTxn (after StageEnding). A stage that falls
// behind with little time in its polls is held up by its own work or the
// broker's; one with most of it there waits for records or the CPU.
func (h *hopTracer) phases() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var b strings.Builder
	for _, name := range tracedStages {
		st := h.stages[name]
		var total time.Duration
		for _, d := range st.spent {
			total += d
		}
		if total == 0 {
			continue
		}
		pct := func(ks ...pipeline.StageEventKind) float64 {
			var d time.Duration
			for _, k := range ks {
				d += st.spent[k]
			}
			return 100 * float64(d) / float64(total)
		}
		fmt.Fprintf(&b, " %s poll %.0f%% process %.0f%% flush %.0f%% ack %.0f%% end %.0f%%;", name,
			pct(pipeline.StageProcessed, pipeline.StageCommitted, pipeline.StageAborted), pct(pipeline.StagePolled),
			pct(pipeline.StageClosing), pct(pipeline.StageAcking), pct(pipeline.StageEnding))
	}
	return strings.TrimSuffix(b.String(), ";")
}

// polls says how often each traced stage's polls returned records, and how
// many a poll, over secs: what each fetch and poll's fixed cost is paid for.
func (h *hopTracer) polls(secs float64) string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var b strings.Builder
	for _, name := range tracedStages {
		st := h.stages[name]
		fmt.Fprintf(&b, " %s %.0f/s of %.1f records", name, float64(st.polls)/secs, float64(st.records)/float64(max(st.polls, 1)))
	}
	return b.String()
}
