package pipeline

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/stitch-xdr/stitch/connectors/ipc"
	"github.com/stitch-xdr/stitch/operators/correlate"
	"github.com/stitch-xdr/stitch/operators/normalize"
)

// normalizeProc is stage 1: signals in; Arrow batches out to the hunting
// topics, correlation facts out to the repartition topic (keyed by tenant,
// so that each tenant's alerts meet in one correlate task), dead letters out
// to the dead-letter topic.
type normalizeProc struct {
	p    *Pipeline
	norm *normalize.Normalizer
	// emit and dead are bound once to avoid a closure per record.
	emitFn func(normalize.Batch)
	deadFn func(normalize.DeadLetter)
	ctx    context.Context
	tx     *txn
	err    error
	// alertFacts hold the facts of alert batches until the transaction's
	// telemetry facts are out: the correlator judges prevalence from the
	// sightings it has seen, so within one transaction the telemetry goes
	// first, whatever order the tables' builders filled in.
	alertFacts []*kgo.Record
}

func newNormalizeProc(p *Pipeline) *normalizeProc {
	n := &normalizeProc{p: p}
	n.norm = p.newNormalizer()
	n.emitFn = n.emit
	n.deadFn = n.dead
	return n
}

func (n *normalizeProc) process(ctx context.Context, r *kgo.Record, tx *txn) error {
	n.ctx, n.tx = ctx, tx
	n.norm.Add(normalize.Input{
		Topic: r.Topic, Partition: r.Partition, Offset: r.Offset, Value: r.Value, Timestamp: r.Timestamp,
	}, n.emitFn, n.deadFn)
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
	n.tx.tally.normalized[b.Table] += rows
	n.tx.tally.batches = append(n.tx.tally.batches, batchSize{rows: rows, bytes: b.Bytes})
	cfg := &n.p.cfg
	if cfg.Hunting.Enabled {
		msg, err := ipc.Encode(b)
		if err != nil {
			n.err = fmt.Errorf("encode %s batch: %w", b.Table, err)
			return
		}
		rec := &kgo.Record{Topic: cfg.Topics.HuntingPrefix + b.Table, Key: msg.Key, Value: msg.Value}
		for _, h := range msg.Headers {
			rec.Headers = append(rec.Headers, kgo.RecordHeader{Key: h.Key, Value: []byte(h.Value)})
		}
		n.tx.produce(n.ctx, rec)
	}
	if cfg.Correlate.Enabled {
		if f := correlate.Extract(b); f != nil {
			v, err := f.Marshal()
			if err != nil {
				n.err = fmt.Errorf("encode %s facts: %w", b.Table, err)
				return
			}
			rec := &kgo.Record{Topic: cfg.Topics.Facts, Key: []byte(b.Tenant), Value: v}
			if b.Table == "AlertInfo" || b.Table == "AlertEvidence" {
				n.alertFacts = append(n.alertFacts, rec)
			} else {
				n.tx.produce(n.ctx, rec)
			}
		}
	}
}

func (n *normalizeProc) dead(d normalize.DeadLetter) {
	n.tx.tally.dead[d.Reason]++
	v, err := json.Marshal(d)
	if err != nil {
		n.err = fmt.Errorf("encode dead letter: %w", err)
		return
	}
	n.tx.produce(n.ctx, &kgo.Record{
		Topic: n.p.cfg.Topics.DeadLetter, Value: v,
		Headers: []kgo.RecordHeader{{Key: "stitch-reason", Value: []byte(d.Reason)}},
	})
}

func (n *normalizeProc) flush(ctx context.Context, tx *txn) error {
	n.ctx, n.tx = ctx, tx
	n.norm.Flush(n.emitFn)
	for _, rec := range n.alertFacts {
		tx.produce(ctx, rec)
	}
	n.alertFacts = n.alertFacts[:0]
	// Every record read became a row or a dead letter, and after a flush all
	// rows have been emitted: so the records read in this transaction are
	// their sum (cheaper than asking the normalizer per record).
	tx.tally.recordsRead = total(tx.tally.normalized) + total(tx.tally.dead)
	err := n.err
	n.err = nil
	return err
}

func (n *normalizeProc) tick(context.Context, time.Time, *txn) error { return nil }

// aborted throws away the rows buffered since the last commit; they are
// consumed again.
func (n *normalizeProc) aborted() {
	n.alertFacts = n.alertFacts[:0]
	n.norm.Close()
	n.norm = n.p.newNormalizer()
}

func (n *normalizeProc) committed(*txn) {}

func (n *normalizeProc) close() { n.norm.Close() }
