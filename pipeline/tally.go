package pipeline

import (
	"maps"
	"sync"

	"github.com/stitch-xdr/stitch/operators/normalize"
)

// tally counts what one transaction did. It is merged into the pipeline's
// Totals only when the transaction commits, so that aborted work that is
// redone is never counted twice.
type tally struct {
	recordsIn   map[string]int64 // topic → Kafka records consumed
	recordsRead int64            // logical signal records (envelope elements count one each)
	normalized  map[string]int64 // table → rows
	dead        map[normalize.Reason]int64
	out         map[string]int64 // topic → records produced
	incidents   int64
	batches     []batchSize
}

type batchSize struct {
	rows  int64
	bytes int64
}

func newTally() *tally {
	return &tally{
		recordsIn:  map[string]int64{},
		normalized: map[string]int64{},
		dead:       map[normalize.Reason]int64{},
		out:        map[string]int64{},
	}
}

func (t *tally) reset() {
	clear(t.recordsIn)
	clear(t.normalized)
	clear(t.dead)
	clear(t.out)
	t.recordsRead, t.incidents = 0, 0
	t.batches = t.batches[:0]
}

// Totals are the committed counts of a pipeline: what the progress line,
// summary.json and tests read.
type Totals struct {
	mu          sync.Mutex
	RecordsRead int64
	Normalized  map[string]int64
	DeadLetters map[normalize.Reason]int64
	RecordsIn   map[string]int64
	RecordsOut  map[string]int64
	Incidents   int64
	HuntingRows map[string]int64
}

func newTotals() *Totals {
	return &Totals{
		Normalized:  map[string]int64{},
		DeadLetters: map[normalize.Reason]int64{},
		RecordsIn:   map[string]int64{},
		RecordsOut:  map[string]int64{},
		HuntingRows: map[string]int64{},
	}
}

func (t *Totals) merge(x *tally, m *Metrics) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.RecordsRead += x.recordsRead
	for k, v := range x.recordsIn {
		t.RecordsIn[k] += v
		m.RecordsIn.WithLabelValues(k).Add(float64(v))
	}
	for k, v := range x.normalized {
		t.Normalized[k] += v
		m.Normalized.WithLabelValues(k).Add(float64(v))
	}
	for k, v := range x.dead {
		t.DeadLetters[k] += v
		m.DeadLetters.WithLabelValues(string(k)).Add(float64(v))
	}
	for k, v := range x.out {
		t.RecordsOut[k] += v
		m.RecordsOut.WithLabelValues(k).Add(float64(v))
	}
	t.Incidents += x.incidents
	m.Incidents.Add(float64(x.incidents))
	for _, b := range x.batches {
		m.BatchRows.Observe(float64(b.rows))
		m.BatchBytes.Observe(float64(b.bytes))
	}
}

func (t *Totals) addIn(in map[string]int64) {
	t.mu.Lock()
	for k, v := range in {
		t.RecordsIn[k] += v
	}
	t.mu.Unlock()
}

func (t *Totals) addHunting(table string, rows int64) {
	t.mu.Lock()
	t.HuntingRows[table] += rows
	t.mu.Unlock()
}

// Snapshot is a consistent copy of the totals.
type Snapshot struct {
	RecordsRead int64                      `json:"records_read"`
	Normalized  map[string]int64           `json:"normalized"`
	DeadLetters map[normalize.Reason]int64 `json:"dead_lettered"`
	RecordsIn   map[string]int64           `json:"records_in"`
	RecordsOut  map[string]int64           `json:"records_out"`
	Incidents   int64                      `json:"incident_updates"`
	HuntingRows map[string]int64           `json:"hunting_rows"`
}

// Snapshot copies the totals.
func (t *Totals) Snapshot() Snapshot {
	t.mu.Lock()
	defer t.mu.Unlock()
	return Snapshot{
		RecordsRead: t.RecordsRead,
		Normalized:  maps.Clone(t.Normalized),
		DeadLetters: maps.Clone(t.DeadLetters),
		RecordsIn:   maps.Clone(t.RecordsIn),
		RecordsOut:  maps.Clone(t.RecordsOut),
		Incidents:   t.Incidents,
		HuntingRows: maps.Clone(t.HuntingRows),
	}
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
