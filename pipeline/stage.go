package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// stage runs consume-process-produce in Kafka transactions with a
// GroupTransactSession: input offsets and outputs commit together, and a
// rebalance or an error aborts, so that the input is processed again from the
// last commit (exactly-once to read-committed consumers).
type stage struct {
	name     string
	sess     *kgo.GroupTransactSession
	proc     Processor
	stores   *stateful // nil: the stage keeps no state
	interval time.Duration
	tickEach time.Duration
	maxPoll  int
	metrics  *Metrics
	totals   *Totals
	log      *slog.Logger
	ready    func()
}

func (s *stage) Run(ctx context.Context) error {
	held := false
	release := func() {
		if held {
			held = false
			s.stores.endTxn()
		}
	}
	defer func() {
		release()
		if s.stores != nil {
			s.stores.stopping()
		}
		s.sess.Close()
	}()
	t := &txn{sess: s.sess, tally: newTally()}
	lastTick := time.Now()
	var failures int
	for ctx.Err() == nil {
		if s.stores != nil {
			s.stores.beginTxn()
			held = true
		}
		begin := time.Now()
		if err := s.sess.Begin(); err != nil {
			return fmt.Errorf("%s: begin transaction: %w", s.name, err)
		}
		t.tally.reset()
		t.err = nil
		deadline := begin.Add(s.interval)
		var perr error
		worked := false
		for perr == nil && time.Now().Before(deadline) && ctx.Err() == nil {
			until := deadline
			if worked {
				// Input that pauses ends the transaction early (but not
				// before minTransaction): its outputs need not wait out the
				// commit interval, which bounds a busy stream's latency.
				until = time.Now().Add(idleWait)
				if floor := begin.Add(minTransaction); until.Before(floor) {
					until = floor
				}
				if deadline.Before(until) {
					until = deadline
				}
			}
			pctx, cancel := context.WithDeadline(ctx, until)
			fetches := s.sess.PollRecords(pctx, s.maxPoll)
			cancel()
			if fetches.IsClientClosed() {
				return nil
			}
			if fetches.NumRecords() == 0 && worked && !time.Now().Before(begin.Add(minTransaction)) {
				break
			}
			worked = worked || fetches.NumRecords() > 0
			fetches.EachError(func(topic string, p int32, err error) {
				if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
					return
				}
				s.log.Warn("fetch error", "stage", s.name, "topic", topic, "partition", p, "err", err)
			})
			if s.ready != nil {
				s.ready()
			}
			fetches.EachRecord(func(r *kgo.Record) {
				if perr != nil {
					return
				}
				t.tally.recordsIn[r.Topic]++
				s.metrics.InputRecordBytes.Observe(float64(len(r.Value)))
				perr = s.process(ctx, r, t)
			})
		}
		if perr == nil && s.tickEach > 0 && time.Since(lastTick) >= s.tickEach {
			lastTick = time.Now()
			perr = s.tick(ctx, lastTick, t)
		}
		if perr == nil {
			perr = s.proc.Flush(ctx, t)
		}
		if perr == nil && s.stores != nil {
			perr = s.stores.flush(ctx, t)
		}
		if perr == nil {
			// Wait for every produce of the transaction, so that a record
			// the broker refused aborts it instead of committing the rest.
			fctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			if err := s.sess.Client().Flush(fctx); err != nil {
				perr = fmt.Errorf("%s: flush outputs: %w", s.name, err)
			}
			cancel()
		}
		if perr == nil {
			perr = t.failed()
		}
		if ctx.Err() != nil && perr == nil {
			// Shutting down: commit what is done with a fresh context so that a
			// drained pipeline does not redo its last interval on restart.
			ectx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			ok, err := s.sess.End(ectx, kgo.TryCommit)
			cancel()
			s.ended(t, ok, err, begin)
			return nil
		}
		try := kgo.TransactionEndTry(perr == nil)
		ok, err := s.sess.End(ctx, try)
		s.ended(t, ok, err, begin)
		release()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("%s: end transaction: %w", s.name, err)
		}
		if perr != nil {
			failures++
			s.metrics.StageErrors.WithLabelValues(s.name).Inc()
			if errors.Is(perr, errFatal) {
				// Retrying cannot help (a failing disk under the state
				// store): stop now, with the cause, before anything else
				// is written. The input is redone after a restart.
				return fmt.Errorf("%s: stopped: %w", s.name, perr)
			}
			s.log.Error("transaction aborted; retrying from the last commit", "stage", s.name, "err", perr, "failures", failures)
			if failures >= 10 {
				return fmt.Errorf("%s: giving up after %d failed transactions: %w", s.name, failures, perr)
			}
			select {
			case <-ctx.Done():
			case <-time.After(backoff(failures)):
			}
			continue
		}
		failures = 0
	}
	return nil
}

func (s *stage) process(ctx context.Context, r *kgo.Record, t *txn) error {
	if s.stores != nil {
		if err := s.stores.before(r); err != nil {
			return err
		}
	}
	if err := s.proc.Process(ctx, r, t); err != nil {
		return err
	}
	if s.stores != nil {
		return s.stores.after(r)
	}
	return nil
}

func (s *stage) tick(ctx context.Context, now time.Time, t *txn) error {
	if s.stores != nil {
		if err := s.stores.open(); err != nil {
			return err
		}
	}
	return s.proc.Tick(ctx, now, t)
}

func (s *stage) ended(t *txn, committed bool, err error, begin time.Time) {
	if committed && err == nil {
		s.totals.merge(s.name, t.tally, s.metrics)
		// The stores commit first: a processor told of the commit may
		// read the state it covers.
		if s.stores != nil {
			s.stores.committed()
		}
		s.proc.Committed()
		s.metrics.Transactions.WithLabelValues(s.name, "committed").Inc()
		s.metrics.Latency.WithLabelValues(s.name).Observe(time.Since(begin).Seconds())
		return
	}
	if s.stores != nil {
		s.stores.aborted()
	}
	s.proc.Aborted()
	s.totals.aborted(s.name)
	s.metrics.Transactions.WithLabelValues(s.name, "aborted").Inc()
}

// A transaction that has done work ends before the commit interval once no
// record arrived for idleWait and it is at least minTransaction old (Kafka
// Streams' exactly-once default commit interval): its outputs are visible
// sooner, and a stream that never pauses still commits once an interval.
const (
	idleWait       = 50 * time.Millisecond
	minTransaction = 100 * time.Millisecond
)

// backoff is the wait before retrying after the n-th failed transaction in a
// row: exponential from 200 ms, capped at 30 s, so that ten failures span
// about two minutes (a broker restart, a leader election) before the stage
// gives up with the last error.
func backoff(n int) time.Duration {
	d := 200 * time.Millisecond << min(n-1, 10)
	return min(d, 30*time.Second)
}

// errFatal marks errors that retrying a transaction cannot cure.
var errFatal = errors.New("fatal")

type fatalError struct{ err error }

func (e fatalError) Error() string   { return e.err.Error() }
func (e fatalError) Unwrap() []error { return []error{e.err, errFatal} }
func fatal(err error) error          { return fatalError{err} }
