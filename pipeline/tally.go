package pipeline

import (
	"maps"
	"sync"

	"github.com/stitch-xdr/stitch/operators/normalize"
)

// Counters the stages keep (Txn.Count). The first few also feed a named
// metric (Metrics.count); any other counter is exported as
// stitch_stage_count_total{stage,counter,label}.
const (
	CountRecordsRead      = "records_read"      // signal records read (envelope elements count one each)
	CountNormalizedRows   = "normalized_rows"   // label: table
	CountDeadLetters      = "dead_letters"      // label: reason
	CountIncidentVersions = "incident_versions" // incident versions published
	CountParquetRows      = "parquet_rows"      // label: table
)

type counterKey struct{ name, label string }

// tally counts what one transaction did. It is merged into the pipeline's
// Totals only when the transaction commits, so that aborted work that is
// redone is never counted twice.
type tally struct {
	recordsIn map[string]int64 // topic → Kafka records consumed
	out       map[string]int64 // topic → records produced
	counts    map[counterKey]int64
}

func newTally() *tally {
	return &tally{recordsIn: map[string]int64{}, out: map[string]int64{}, counts: map[counterKey]int64{}}
}

func (t *tally) count(name, label string, n int64) { t.counts[counterKey{name, label}] += n }

func (t *tally) reset() {
	clear(t.recordsIn)
	clear(t.out)
	clear(t.counts)
}

// Totals are the committed counts of a pipeline, per stage: what the
// progress line, /status, summary.json and tests read.
type Totals struct {
	mu     sync.Mutex
	in     map[string]int64 // topic → records consumed (every stage)
	out    map[string]int64 // topic → records produced
	stages map[string]*stageTotals
	order  []string
}

type stageTotals struct {
	committed, aborted int64
	in, out            map[string]int64
	counts             map[string]map[string]int64 // counter → label → n
}

func newTotals() *Totals {
	return &Totals{in: map[string]int64{}, out: map[string]int64{}, stages: map[string]*stageTotals{}}
}

func (t *Totals) stageLocked(name string) *stageTotals {
	s := t.stages[name]
	if s == nil {
		s = &stageTotals{in: map[string]int64{}, out: map[string]int64{}, counts: map[string]map[string]int64{}}
		t.stages[name] = s
		t.order = append(t.order, name)
	}
	return s
}

// declare makes a stage appear in snapshots before it has committed.
func (t *Totals) declare(stage string) {
	t.mu.Lock()
	t.stageLocked(stage)
	t.mu.Unlock()
}

// merge adds a committed transaction of stage.
func (t *Totals) merge(stage string, x *tally, m *Metrics) {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := t.stageLocked(stage)
	s.committed++
	for k, v := range x.recordsIn {
		t.in[k] += v
		s.in[k] += v
		m.RecordsIn.WithLabelValues(k).Add(float64(v))
	}
	for k, v := range x.out {
		t.out[k] += v
		s.out[k] += v
		m.RecordsOut.WithLabelValues(k).Add(float64(v))
	}
	for k, v := range x.counts {
		c := s.counts[k.name]
		if c == nil {
			c = map[string]int64{}
			s.counts[k.name] = c
		}
		c[k.label] += v
		m.count(stage, k.name, k.label, v)
	}
}

func (t *Totals) aborted(stage string) {
	t.mu.Lock()
	t.stageLocked(stage).aborted++
	t.mu.Unlock()
}

// Snapshot is a consistent copy of the totals. The flat fields are the
// pipeline-wide sums of the stages' counters, in the shape summary.json and
// /status have always had; Stages has each stage's own.
type Snapshot struct {
	RecordsRead int64                      `json:"records_read"`
	Normalized  map[string]int64           `json:"normalized"`
	DeadLetters map[normalize.Reason]int64 `json:"dead_lettered"`
	RecordsIn   map[string]int64           `json:"records_in"`
	RecordsOut  map[string]int64           `json:"records_out"`
	// Incidents counts incident versions published (one incident is
	// published again whenever an alert joins it), not incidents.
	IncidentVersions int64                    `json:"incident_updates"`
	HuntingRows      map[string]int64         `json:"hunting_rows"`
	Stages           map[string]StageSnapshot `json:"stages"`
}

// StageSnapshot is one stage's committed work.
type StageSnapshot struct {
	Transactions int64                       `json:"transactions_committed"`
	Aborted      int64                       `json:"transactions_aborted"`
	RecordsIn    map[string]int64            `json:"records_in"`
	RecordsOut   map[string]int64            `json:"records_out"`
	Counters     map[string]map[string]int64 `json:"counters"`
}

// Sum is a counter of the stage over all its labels.
func (s StageSnapshot) Sum(counter string) int64 { return total(s.Counters[counter]) }

// Snapshot copies the totals.
func (t *Totals) Snapshot() Snapshot {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := Snapshot{
		Normalized: map[string]int64{}, DeadLetters: map[normalize.Reason]int64{}, HuntingRows: map[string]int64{},
		RecordsIn: maps.Clone(t.in), RecordsOut: maps.Clone(t.out), Stages: map[string]StageSnapshot{},
	}
	for _, name := range t.order {
		s := t.stages[name]
		ss := StageSnapshot{Transactions: s.committed, Aborted: s.aborted, RecordsIn: maps.Clone(s.in),
			RecordsOut: maps.Clone(s.out), Counters: map[string]map[string]int64{}}
		for c, m := range s.counts {
			ss.Counters[c] = maps.Clone(m)
		}
		out.Stages[name] = ss
		out.RecordsRead += ss.Sum(CountRecordsRead)
		out.IncidentVersions += ss.Sum(CountIncidentVersions)
		for k, v := range s.counts[CountNormalizedRows] {
			out.Normalized[k] += v
		}
		for k, v := range s.counts[CountDeadLetters] {
			out.DeadLetters[normalize.Reason(k)] += v
		}
		for k, v := range s.counts[CountParquetRows] {
			out.HuntingRows[k] += v
		}
	}
	return out
}

// NormalizedTotal is the sum of rows over tables.
func (s Snapshot) NormalizedTotal() int64 { return total(s.Normalized) }

// DeadTotal is the sum of dead letters over reasons.
func (s Snapshot) DeadTotal() int64 { return total(s.DeadLetters) }

// HuntingTotal is the sum of Parquet rows over tables.
func (s Snapshot) HuntingTotal() int64 { return total(s.HuntingRows) }

func total[K comparable](m map[K]int64) int64 {
	var n int64
	for _, v := range m {
		n += v
	}
	return n
}
