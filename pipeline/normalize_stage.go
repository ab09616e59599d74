package pipeline

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/stitch-xdr/stitch/connectors/kafka"
	"github.com/stitch-xdr/stitch/operators/normalize"
)

// normalizeStage is stage 1: signals in; dead letters out to the dead-letter
// topic, and every Arrow batch to each enabled tap (taps.go), which turn it
// into the outputs of the stages downstream (hunting IPC batches,
// correlation facts).
func normalizeStage() Stage {
	return Stage{
		Name:   "normalize",
		Doc:    "decodes signals into typed Arrow batches per advanced-hunting table",
		Inputs: func(c Config) []string { return c.Topics.Inputs },
		Outputs: func(c Config) []Output {
			out := []Output{{Topic: kafka.TopicSpec{Name: c.Topics.DeadLetter}, Replay: "deadletter.jsonl"}}
			seen := map[string]bool{}
			for _, t := range taps() {
				if !t.Enabled(c) {
					continue
				}
				for _, o := range t.Outputs(c) {
					if !seen[o.Topic.Name] { // taps may share a topic (facts, detect)
						seen[o.Topic.Name] = true
						out = append(out, o)
					}
				}
			}
			return out
		},
		Processor: newNormalizeProc,
		Progress: func(s StageSnapshot) string {
			var b strings.Builder
			fmt.Fprintf(&b, "read %d | rows %d", s.Sum(CountRecordsRead), s.Sum(CountNormalizedRows))
			if tables := topTables(s.Counters[CountNormalizedRows], 4); tables != "" {
				fmt.Fprintf(&b, " (%s)", tables)
			}
			fmt.Fprintf(&b, " | dead %d", s.Sum(CountDeadLetters))
			return b.String()
		},
	}
}

// normalizerFor builds the normalizer a config asks for.
func normalizerFor(cfg Config, opts ...normalize.Option) *normalize.Normalizer {
	n := cfg.Normalize
	o := []normalize.Option{
		normalize.WithBatchRows(n.BatchRows),
		normalize.WithBatchBytes(n.BatchBytes),
		normalize.WithBatchAge(n.BatchAge.D()),
		normalize.WithMaxRecordBytes(n.MaxRecordBytes),
		normalize.WithMaxDepth(n.MaxDepth),
		normalize.WithDeadLetterValueLimit(n.DeadLetterMaxBytes),
		normalize.WithDefaultTenant(n.DefaultTenant),
	}
	if n.Import {
		o = append(o, normalize.WithImport(n.ImportTable))
	}
	return normalize.New(append(o, opts...)...)
}

// alertCategory is in the category of the streaming API's alert tables
// ("AdvancedHunting-AlertInfo", "AdvancedHunting-AlertEvidence"). It starts
// at a rare byte: a pattern starting with '"', which JSON holds every few
// bytes, costs bytes.Contains 1.4 µs a record instead of 0.09.
var alertCategory = []byte("Hunting-Alert")

type normalizeProc struct {
	sc   *StageContext
	norm *normalize.Normalizer
	taps []BatchTap
	dl   deadLetters
	// emit and dead are bound once to avoid a closure per record.
	emitFn func(normalize.Batch)
	deadFn func(normalize.DeadLetter)
	ctx    context.Context
	tx     Txn
	err    error
	// rows and dead of the open transaction: every record read became a
	// row or a dead letter, so their sum after a flush is the records read
	// (cheaper than asking the normalizer per record).
	rows, dead int64
	// batches of the open transaction, observed in the histograms when it
	// commits.
	batches []batchSize
}

type batchSize struct{ rows, bytes int64 }

func newNormalizeProc(sc *StageContext) (Processor, error) {
	n := &normalizeProc{sc: sc, dl: deadLettersOf(sc.Config)}
	for _, t := range taps() {
		if !t.Enabled(sc.Config) {
			continue
		}
		bt, err := t.New(sc)
		if err != nil {
			return nil, fmt.Errorf("tap %s: %w", t.Name, err)
		}
		n.taps = append(n.taps, bt)
	}
	n.norm = n.newNormalizer()
	n.emitFn = n.emit
	n.deadFn = n.deadLetter
	return n, nil
}

func (n *normalizeProc) newNormalizer() *normalize.Normalizer {
	return normalizerFor(n.sc.Config, normalize.WithAllocator(n.sc.Alloc))
}

func (n *normalizeProc) Process(ctx context.Context, r *kgo.Record, tx Txn) error {
	n.ctx, n.tx = ctx, tx
	in := normalize.Input{Topic: r.Topic, Partition: r.Partition, Offset: r.Offset, Value: r.Value, Timestamp: r.Timestamp}
	if bytes.Contains(r.Value, alertCategory) {
		// An AlertInfo or AlertEvidence row (alone or in an envelope):
		// its batch goes out at this transaction's commit, which need not
		// wait out the commit interval (kafka.urgent_commit_interval). A
		// string of another table that happens to hold the words costs
		// only an early commit.
		markUrgent(tx)
	}
	// A Windows Security or Sysmon event (nested, OTRF flat or Sentinel
	// form) becomes a row of its table, of normalize.default_tenant, or a
	// no_table/bad_event dead letter (normalize/windows_input.go).
	if !n.norm.AddLog(in, n.emitFn, n.deadFn) {
		n.norm.Add(in, n.emitFn, n.deadFn)
	}
	err := n.err
	n.err = nil
	return err
}

func (n *normalizeProc) emit(b normalize.Batch) {
	defer b.Release()
	if n.err != nil {
		return
	}
	rows := b.Record.NumRows()
	n.tx.Count(CountNormalizedRows, b.Table, rows)
	if b.Table == "AlertInfo" || b.Table == "AlertEvidence" {
		markUrgent(n.tx) // also alert rows the record test above cannot see (export rows)
	}
	n.rows += rows
	n.batches = append(n.batches, batchSize{rows: rows, bytes: b.Bytes})
	for _, t := range n.taps {
		if err := t.Batch(n.ctx, b, n.tx); err != nil {
			n.err = err
			return
		}
	}
}

func (n *normalizeProc) deadLetter(d normalize.DeadLetter) {
	n.dead++
	v, err := json.Marshal(d)
	if err != nil {
		n.err = fmt.Errorf("encode dead letter: %w", err)
		return
	}
	n.dl.produce(n.ctx, n.tx, d.Reason, v)
}

func (n *normalizeProc) Flush(ctx context.Context, tx Txn) error {
	n.ctx, n.tx = ctx, tx
	n.norm.Flush(n.emitFn)
	if n.err == nil {
		for _, t := range n.taps {
			if err := t.Flush(ctx, tx); err != nil {
				n.err = err
				break
			}
		}
	}
	tx.Count(CountRecordsRead, "", n.rows+n.dead)
	n.rows, n.dead = 0, 0
	err := n.err
	n.err = nil
	return err
}

func (n *normalizeProc) Tick(context.Context, time.Time, Txn) error { return nil }

// Aborted throws away the rows buffered since the last commit; they are
// consumed again.
func (n *normalizeProc) Aborted() {
	for _, t := range n.taps {
		t.Aborted()
	}
	n.rows, n.dead, n.batches = 0, 0, n.batches[:0]
	n.norm.Close()
	n.norm = n.newNormalizer()
}

func (n *normalizeProc) Committed() {
	for _, t := range n.taps {
		if c, ok := t.(TapCommitter); ok {
			c.Committed()
		}
	}
	m := n.sc.Metrics
	for _, b := range n.batches {
		m.BatchRows.Observe(float64(b.rows))
		m.BatchBytes.Observe(float64(b.bytes))
	}
	n.batches = n.batches[:0]
}

func (n *normalizeProc) Close() { n.norm.Close() }
