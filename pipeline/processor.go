package pipeline

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/stitch-xdr/stitch/operators/normalize"
)

// Processor is the work of one transactional stage. The stage owns the
// transaction loop (transaction.go): it polls, calls Process per record,
// Tick on its schedule, Flush before every commit, and then Committed or
// Aborted. A processor reaches Kafka only through the Txn it is handed, so
// it cannot produce outside the transaction or commit by itself.
type Processor interface {
	// Process handles one polled record.
	Process(ctx context.Context, r *kgo.Record, tx Txn) error
	// Flush is called before every commit: everything buffered must be
	// produced now, because the commit covers the input offsets behind it.
	Flush(ctx context.Context, tx Txn) error
	// Tick runs wall-clock work (punctuation) inside a transaction.
	Tick(ctx context.Context, now time.Time, tx Txn) error
	// Aborted drops everything buffered since the last commit: the input
	// will be consumed again from the committed offsets.
	Aborted()
	// Committed is told that the transaction's outputs are now visible.
	Committed()
}

// Assignments is implemented by processors that want to know which input
// partitions they own. Assigned runs after the stage's stores restored the
// partitions; both run on the group's goroutine, never during Process.
type Assignments interface {
	Assigned(topic string, partitions []int32)
	Revoked(topic string, partitions []int32)
}

// Closer is implemented by processors holding resources to release once the
// stage stopped.
type Closer interface{ Close() }

// Txn is what a processor may do inside the open transaction: produce, and
// count. Counts reach the stage's totals, /status and metrics only if the
// transaction commits, so aborted work that is redone is never counted
// twice.
type Txn interface {
	// Produce sends r inside the transaction. A failure aborts the
	// transaction instead of committing a partial result.
	Produce(ctx context.Context, r *kgo.Record)
	// Count adds n to the stage's counter (label may be empty).
	Count(counter, label string, n int64)
}

// markUrgent says the open transaction holds output a reader is waiting
// for (an alert on its way to an incident, an incident update): once the
// stage's input has caught up, the transaction ends
// kafka.urgent_commit_interval after it began instead of at
// kafka.commit_interval. Nothing else changes: it commits, or aborts, as a
// whole like any other. (A Txn that is not the stage's, such as a test's
// recorder, ignores it.)
func markUrgent(tx Txn) {
	if u, ok := tx.(interface{ urgent() }); ok {
		u.urgent()
	}
}

// txn is one open transaction of a stage: what it produced and counted.
type txn struct {
	sess  *kgo.GroupTransactSession
	tally *tally

	// isUrgent: markUrgent was called since the transaction began.
	isUrgent bool

	mu  sync.Mutex
	err error
}

func (t *txn) Produce(ctx context.Context, r *kgo.Record) { t.produceThen(ctx, r, nil) }

func (t *txn) Count(counter, label string, n int64) { t.tally.count(counter, label, n) }

func (t *txn) urgent() { t.isUrgent = true }

// produceThen is Produce that also tells ok where the record landed.
func (t *txn) produceThen(ctx context.Context, r *kgo.Record, ok func(*kgo.Record)) {
	t.tally.out[r.Topic]++
	// The stage flushes before it asks failed(), so every promise has run.
	t.sess.Produce(ctx, r, func(r *kgo.Record, err error) {
		if err == nil {
			if ok != nil {
				ok(r)
			}
			return
		}
		t.mu.Lock()
		if t.err == nil {
			t.err = fmt.Errorf("produce to %s: %w", r.Topic, err)
		}
		t.mu.Unlock()
	})
}

func (t *txn) failed() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.err
}

// deadLetters is where a stage sends the records it cannot read.
type deadLetters struct {
	topic string
	keep  int // normalize.deadletter_max_bytes
}

func deadLettersOf(c Config) deadLetters {
	return deadLetters{topic: c.Topics.DeadLetter, keep: c.Normalize.DeadLetterMaxBytes}
}

// send sends a record a stage cannot read to the dead-letter topic inside
// the stage's transaction, and counts it: never a crash, never a silent
// drop. The dead letter has normalize's shape (reason, error, where and
// when it was, size, SHA-256, the bytes as text or base64 up to
// normalize.deadletter_max_bytes), so the topic has one schema.
func (d deadLetters) send(ctx context.Context, tx Txn, reason string, r *kgo.Record, err error) {
	in := normalize.Input{Topic: r.Topic, Partition: r.Partition, Offset: r.Offset, Timestamp: r.Timestamp}
	d.produce(ctx, tx, normalize.Reason(reason), mustJSON(normalize.NewDeadLetter(in, -1, r.Value, normalize.Reason(reason), err.Error(), d.keep)))
}

// produce writes an encoded dead letter, with its reason as the
// stitch-reason header, and counts it.
func (d deadLetters) produce(ctx context.Context, tx Txn, reason normalize.Reason, v []byte) {
	tx.Produce(ctx, &kgo.Record{Topic: d.topic, Value: v,
		Headers: []kgo.RecordHeader{{Key: "stitch-reason", Value: []byte(reason)}}})
	tx.Count(CountDeadLetters, string(reason), 1)
}
