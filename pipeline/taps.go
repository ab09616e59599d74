package pipeline

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"

	"github.com/apache/arrow/go/v17/arrow/array"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/stitch-xdr/stitch/connectors/ipc"
	"github.com/stitch-xdr/stitch/connectors/kafka"
	"github.com/stitch-xdr/stitch/operators/correlate"
	"github.com/stitch-xdr/stitch/operators/normalize"
)

// A tap turns each Arrow batch the normalize stage emits into records for a
// stage downstream, inside normalize's transaction. Taps are declared like
// stages: the normalize stage's outputs are the enabled taps' outputs, and
// a new consumer of normalized batches (detection) is a tap and one line in
// taps().
type Tap struct {
	Name    string
	Enabled func(Config) bool
	Outputs func(Config) []Output
	New     func(*StageContext) (BatchTap, error)
}

// BatchTap is a running tap.
type BatchTap interface {
	// Batch handles one batch; b is released after every tap saw it.
	Batch(ctx context.Context, b normalize.Batch, tx Txn) error
	// Flush produces what the tap held back, before the commit.
	Flush(ctx context.Context, tx Txn) error
	// Aborted drops what it held back.
	Aborted()
}

// TapCommitter is a BatchTap that keeps state across transactions (the
// detection tap's suppression keys): Committed is told that the
// transaction it flushed is visible.
type TapCommitter interface{ Committed() }

// taps are normalize's taps, in the order each batch visits them.
func taps() []Tap { return []Tap{huntingTap(), factsTap(), detectTap()} }

// huntingTap writes every batch as one Arrow IPC record to hunting.<Table>
// (connectors/ipc/FORMAT.md), for the hunting sink and for analysts.
func huntingTap() Tap {
	return Tap{
		Name:    "hunting",
		Enabled: func(c Config) bool { return c.Hunting.Enabled },
		Outputs: func(c Config) []Output {
			var out []Output
			for _, table := range normalize.Tables() {
				out = append(out, Output{Topic: kafka.TopicSpec{Name: c.Topics.HuntingPrefix + table}})
			}
			return out
		},
		New: func(sc *StageContext) (BatchTap, error) {
			codec, err := ipc.ParseCompression(sc.Config.Hunting.IPCCompression)
			if err != nil {
				return nil, fmt.Errorf("hunting.ipc_compression: %w", err)
			}
			return &ipcTap{prefix: sc.Config.Topics.HuntingPrefix, enc: ipc.NewEncoder(nil, codec), max: recordLimit(sc.Config),
				deadLetter: sc.Config.Topics.DeadLetter, keep: sc.Config.Normalize.DeadLetterMaxBytes}, nil
		},
	}
}

type ipcTap struct {
	prefix string
	enc    *ipc.Encoder
	max    int // bytes of a record (recordLimit); larger batches are split
	// deadLetter receives a single row too large for a record, with the
	// first keep bytes of its JSON.
	deadLetter string
	keep       int
}

// Batch produces the batch as one record, or, when its encoding is larger
// than the record limit, as the records of its halves (each a valid batch
// of the same table and tenant), so that a batch never stops the stage
// with a record the producer or the cluster refuses. One row cannot be
// split: normalize.max_record_bytes bounds it, and one that still encodes
// larger than a record may be (a near-limit record of incompressible
// text, against a cluster of 1 MB messages) is dead-lettered as
// row_too_large, with its table, tenant, size and the start of its JSON,
// instead of stopping the stage; its correlation facts still go out.
func (t *ipcTap) Batch(ctx context.Context, b normalize.Batch, tx Txn) error {
	msg, err := t.enc.Encode(b)
	if err != nil {
		return fmt.Errorf("encode %s batch: %w", b.Table, err)
	}
	if n := b.Record.NumRows(); t.max > 0 && len(msg.Value) > t.max && n > 1 {
		for _, r := range [][2]int64{{0, n / 2}, {n / 2, n}} {
			half := b
			half.Record = b.Record.NewSlice(r[0], r[1])
			half.Bytes = b.Bytes * (r[1] - r[0]) / n
			err := t.Batch(ctx, half, tx)
			half.Record.Release()
			if err != nil {
				return err
			}
		}
		return nil
	}
	if t.max > 0 && len(msg.Value) > t.max {
		t.rowTooLarge(ctx, b, len(msg.Value), tx)
		return nil
	}
	rec := &kgo.Record{Topic: t.prefix + b.Table, Key: msg.Key, Value: msg.Value}
	for _, h := range msg.Headers {
		rec.Headers = append(rec.Headers, kgo.RecordHeader{Key: h.Key, Value: []byte(h.Value)})
	}
	tx.Produce(ctx, rec)
	return nil
}

// CountRowTooLarge is the dead-letter reason of a row whose Arrow record is
// larger than a record of the hunting topic may be.
const CountRowTooLarge = "row_too_large"

func (t *ipcTap) rowTooLarge(ctx context.Context, b normalize.Batch, size int, tx Txn) {
	var row bytes.Buffer
	if err := array.RecordToJSON(b.Record, &row); err != nil {
		row.WriteString(err.Error())
	}
	v := row.Bytes()
	truncated := len(v) > t.keep
	if truncated {
		v = v[:t.keep]
	}
	tx.Produce(ctx, &kgo.Record{Topic: t.deadLetter, Key: []byte(b.Tenant), Value: mustJSON(map[string]any{
		"reason": CountRowTooLarge,
		"error":  fmt.Sprintf("a %s row of %d bytes as Arrow is larger than a hunting record may be (%d bytes: the cluster's message size or half of kafka.max_buffered_bytes); it is not in the hunting partitions", b.Table, size, t.max),
		"table":  b.Table, "tenant": b.Tenant, "bytes": size, "value": string(v), "truncated": truncated,
	})})
	tx.Count(CountDeadLetters, CountRowTooLarge, 1)
}

func (t *ipcTap) Flush(context.Context, Txn) error { return nil }
func (t *ipcTap) Aborted()                         {}

// factsTap extracts correlation facts from every batch to the repartition
// topic, keyed by tenant so that each tenant's alerts meet in one correlate
// task.
func factsTap() Tap {
	return Tap{
		Name:    "facts",
		Enabled: func(c Config) bool { return c.Correlate.Enabled },
		Outputs: func(c Config) []Output { return []Output{{Topic: kafka.TopicSpec{Name: c.Topics.Facts}}} },
		New: func(sc *StageContext) (BatchTap, error) {
			return &factsWriter{topic: sc.Config.Topics.Facts, max: factsRecordBytes(sc.Config), log: sc.Log}, nil
		},
	}
}

// factsWriter owns the ordering rule of the facts: the correlator judges
// prevalence from the sightings it has seen, so within one transaction the
// telemetry facts go first and the alert facts (AlertInfo, AlertEvidence)
// after them, whatever order the tables' builders filled in; and of those
// the evidence before the alerts, so that an alert's first incident
// version already has the devices and users its evidence in the same
// transaction names (evidence before its alert waits for it; an alert
// before its evidence is published without it).
//
// A batch's facts that would make a record over max bytes go out as
// several records, in order (factsRecords).
type factsWriter struct {
	topic    string
	max      int
	log      *slog.Logger
	extract  *correlate.Extractor // made at the first batch: the stage's, across its transactions
	evidence []*kgo.Record        // AlertEvidence facts held until the telemetry is out
	alerts   []*kgo.Record        // AlertInfo facts held until the evidence is out
}

func (f *factsWriter) Batch(ctx context.Context, b normalize.Batch, tx Txn) error {
	if f.extract == nil {
		f.extract = correlate.NewExtractor()
	}
	facts := f.extract.Extract(b)
	if facts == nil {
		return nil
	}
	recs, err := factsRecords(tx, f.log, "normalize", f.topic, facts, f.max)
	if err != nil {
		return fmt.Errorf("%s: %w", b.Table, err)
	}
	switch b.Table {
	case "AlertEvidence":
		f.evidence = append(f.evidence, recs...)
		return nil
	case "AlertInfo":
		f.alerts = append(f.alerts, recs...)
		return nil
	}
	for _, rec := range recs {
		tx.Produce(ctx, rec)
	}
	return nil
}

func (f *factsWriter) Flush(ctx context.Context, tx Txn) error {
	for _, rec := range f.evidence {
		tx.Produce(ctx, rec)
	}
	for _, rec := range f.alerts {
		tx.Produce(ctx, rec)
	}
	f.Aborted()
	return nil
}

func (f *factsWriter) Aborted() {
	clear(f.evidence)
	f.evidence = f.evidence[:0]
	clear(f.alerts)
	f.alerts = f.alerts[:0]
}
