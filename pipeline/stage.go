package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// stage runs consume-process-produce in Kafka transactions with a
// GroupTransactSession: input offsets and outputs commit together, and a
// rebalance or an error aborts, so that the input is processed again from the
// last commit (exactly-once to read-committed consumers).
type stage struct {
	name string
	sess *kgo.GroupTransactSession
	// reopen makes a new session of the stage (same group, same
	// transactional id) when a transaction cannot end: see Run.
	reopen   func() (*kgo.GroupTransactSession, error)
	proc     Processor
	stores   *stateful // nil: the stage keeps no state
	interval time.Duration
	// urgent is how long after it began a transaction that holds output a
	// reader waits for (markUrgent) ends, while the input is less than a
	// poll behind; 0: such a transaction waits out the interval like any
	// other.
	urgent   time.Duration
	tickEach time.Duration
	maxPoll  int
	metrics  *Metrics
	totals   *Totals
	log      *slog.Logger
	ready    func()
	readied  bool
	input    inputPosition
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
	if s.stores != nil {
		s.stores.started(s.sess.Client())
	}
	t := &txn{sess: s.sess, tally: newTally()}
	lastTick := time.Now()
	var failures, reopens int
	// open: a Kafka transaction is begun, at began. One that read nothing
	// in an interval stays open, empty, into the next (see below): begin
	// is when this interval of it started.
	open := false
	var began time.Time
	// A stage is ready once it joined its group, or read, or at the
	// latest (a group that reports no generation) once an interval.
	readyBy := time.Now().Add(s.interval)
	for ctx.Err() == nil {
		if s.stores != nil {
			s.stores.beginTxn()
			held = true
		}
		begin := time.Now()
		if !open {
			if err := s.sess.Begin(); err != nil {
				return fmt.Errorf("%s: begin transaction: %w", s.name, err)
			}
			open, began = true, begin
			t.tally.reset()
			t.err = nil
			t.isUrgent = false
		}
		deadline := begin.Add(s.interval)
		var perr error
		worked := false
		for perr == nil && time.Now().Before(deadline) && ctx.Err() == nil {
			until := deadline
			if worked && !s.input.behind() {
				// Input that pauses ends the transaction early (but not
				// before minTransaction): its outputs need not wait out the
				// commit interval, which bounds a busy stream's latency.
				until = time.Now().Add(idleWait)
				if floor := began.Add(minTransaction); until.Before(floor) {
					until = floor
				}
				if deadline.Before(until) {
					until = deadline
				}
			}
			if t := time.Now().Add(joinPoll); !s.readied && t.Before(until) {
				// Ready once the group is joined (below): a stage whose
				// input is empty was ready only when its first poll gave
				// up, a commit interval after the start (the floor of a
				// small replay, which waits for every stage). Poll in
				// short slices until then.
				until = t
			}
			pctx, cancel := context.WithDeadline(ctx, until)
			var unwatch func()
			if s.stores != nil {
				// A restore waiting for the transaction to end cuts the
				// poll short (see restorePending below).
				unwatch = s.stores.polling(cancel)
			}
			fetches := s.sess.PollRecords(pctx, s.maxPoll)
			s.trace(StagePolled, fetches)
			if unwatch != nil {
				unwatch()
			}
			cancel()
			if fetches.IsClientClosed() {
				return nil
			}
			s.input.observe(fetches)
			// A newly assigned partition's restore waits for the open
			// transaction to end, and its records for the restore: end
			// the transaction now (after this poll's records) rather than
			// at the interval, so that a start-up or a rebalance costs a
			// restore, not a commit interval.
			restore := s.stores != nil && s.stores.restorePending()
			if fetches.NumRecords() == 0 && (restore || worked && !s.input.behind() && !time.Now().Before(began.Add(minTransaction))) {
				break
			}
			if restore {
				deadline = time.Now()
			}
			worked = worked || fetches.NumRecords() > 0
			fetches.EachError(func(topic string, p int32, err error) {
				if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
					return
				}
				s.log.Warn("fetch error", "stage", s.name, "topic", topic, "partition", p, "err", err)
			})
			if fetches.NumRecords() > 0 || s.joined() || !time.Now().Before(readyBy) {
				s.markReady()
			}
			fetches.EachRecord(func(r *kgo.Record) {
				if perr != nil {
					return
				}
				t.tally.recordsIn[r.Topic]++
				s.metrics.InputRecordBytes.Observe(float64(len(r.Value)))
				perr = s.process(ctx, r, t)
			})
			s.trace(StageProcessed, nil)
			if t.isUrgent && s.urgent > 0 && s.input.lag() <= int64(s.maxPoll) {
				// An alert is in the transaction and the input is caught
				// up, or behind by less than a poll (a pause of the
				// machine): end it urgent after it began (at once if it
				// is older: a transaction that waited empty for its
				// input, as correlate's between normalize's commits), so
				// that the alert does not wait out the interval, and
				// transactions still end at most once an urgent
				// interval. A backlog (a drain, a restart after an
				// outage) still commits a full interval at a time, as
				// does a stream without alerts. (Counting the interval
				// from the previous transaction's close instead, so that
				// the commit between them counts towards it, halved the
				// wait's p99 at 5 alerts/s but commits 35% more often at
				// 20 alerts/s, +12% CPU a record: bench/RESULTS.md,
				// incident latency round 3.)
				if d := began.Add(s.urgent); d.Before(deadline) {
					deadline = d
				}
			}
		}
		// No tick on the way out: it is punctuation (closing idle incidents)
		// that the next run does as well, and a transaction of a tick alone
		// commits no offsets, which holds the stop for 500 ms (see below).
		tickDue := s.tickEach > 0 && time.Since(lastTick) >= s.tickEach && ctx.Err() == nil
		if perr == nil && !worked && !tickDue {
			// Nothing was read (and no tick is due): there is nothing to
			// commit, so the transaction stays open, empty, for the next
			// interval. Ending it would cost a commit for nothing and, with
			// no offsets in it, franz-go's End waits 500 ms (the pause it
			// keeps for brokers without KIP-447), during which the stage
			// would not read: an alert arriving at an idle stage would wait
			// for it. The stores' lock is let go between intervals as
			// between transactions, so a restore can run.
			release()
			continue
		}
		s.trace(StageClosing, nil)
		if perr == nil && tickDue {
			lastTick = time.Now()
			perr = s.tick(ctx, lastTick, t)
		}
		if perr == nil {
			perr = s.proc.Flush(ctx, t)
		}
		if perr == nil && s.stores != nil {
			perr = s.stores.flush(ctx, t)
		}
		s.trace(StageAcking, nil)
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
		s.trace(StageEnding, nil)
		// End it with a context that outlives a stop by 10 s, whether the
		// stop came before (shutting down: commit what is done, so that a
		// drained pipeline does not redo its last interval on restart;
		// abort what failed, a produce or flush cut short by the cancelled
		// context) or comes while it ends (franz-go's End, cut short,
		// returns at once without aborting). Left open on the broker, a
		// transaction holds back the last stable offset of every partition
		// it wrote, and its offsets the partitions' next owner (KIP-447),
		// until transaction.timeout (TestStopAbortsAFailedTransaction,
		// TestStopWhileEndingFinishesTheTransaction).
		stopping := ctx.Err() != nil
		ectx, cancel := graceAfter(ctx, 10*time.Second)
		ok, err := s.sess.End(ectx, kgo.TransactionEndTry(perr == nil))
		cancel()
		if stopping {
			s.ended(t, ok, err, begin)
			return nil
		}
		open = false
		s.ended(t, ok, err, begin)
		release()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			// The broker went away or fenced the producer (a coordinator
			// that restarted aborts what was open and bumps the epoch):
			// the transaction is aborted, or committed without the answer
			// reaching us. Either way the way on is Kafka Streams' after a
			// fenced producer: leave the group and join again with a new
			// session, which starts from the last committed offsets and
			// restores the stores from their changelogs past the local
			// commit (so a commit whose answer was lost is not lost).
			reopens++
			if s.reopen == nil || reopens > maxReopens {
				return fmt.Errorf("%s: end transaction: %w", s.name, err)
			}
			s.log.Error("transaction could not end; starting the stage's Kafka session again from its last commit",
				"stage", s.name, "err", err, "attempt", reopens)
			s.metrics.StageErrors.WithLabelValues(s.name).Inc()
			s.sess.Close()
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(backoff(reopens)):
			}
			sess, rerr := s.reopen()
			if rerr != nil {
				return fmt.Errorf("%s: end transaction: %w (and a new session: %v)", s.name, err, rerr)
			}
			s.sess, t.sess = sess, sess
			if s.stores != nil {
				s.stores.started(sess.Client())
			}
			continue
		}
		reopens = 0
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

// StageEvent is a point in a stage's transaction, told to the function
// given to SetStageTrace: a benchmark breaks an alert's latency into its
// hops with them (bench/latency_test.go).
type StageEvent struct {
	Stage string
	Kind  StageEventKind
	At    time.Time
	// Fetches are a StagePolled event's records, read only in the call.
	Fetches kgo.Fetches
}

// StageEventKind is the point of a transaction a StageEvent marks.
type StageEventKind int

const (
	StagePolled    StageEventKind = iota // a poll returned (Fetches)
	StageProcessed                       // its records are processed
	StageClosing                         // the transaction stops reading: its flushes begin
	StageAcking                          // its outputs are produced: their acknowledgements are awaited
	StageEnding                          // every output is acknowledged: EndTxn begins
	StageCommitted                       // the transaction committed
	StageAborted                         // it aborted
)

var stageTrace atomic.Pointer[func(StageEvent)]

// SetStageTrace has every stage of every pipeline of the process call f,
// synchronously, at each point of its transactions (nil: none, the
// default, which costs an atomic load a point). For benchmarks and
// debugging: f runs on the stage's goroutine, so what it takes the stage
// waits for.
func SetStageTrace(f func(StageEvent)) {
	if f == nil {
		stageTrace.Store(nil)
		return
	}
	stageTrace.Store(&f)
}

func (s *stage) trace(kind StageEventKind, fetches kgo.Fetches) {
	if f := stageTrace.Load(); f != nil {
		(*f)(StageEvent{Stage: s.name, Kind: kind, At: time.Now(), Fetches: fetches})
	}
}

// joinPoll is how often a stage that has not joined its group yet looks
// again whether it has.
const joinPoll = 20 * time.Millisecond

// joined reports whether the stage's consumer is in its group (it has a
// generation) and no restore of a newly assigned partition waits.
func (s *stage) joined() bool {
	if _, gen := s.sess.Client().GroupMetadata(); gen < 0 {
		return false
	}
	return s.stores == nil || !s.stores.restorePending()
}

// markReady counts the stage as started, once.
func (s *stage) markReady() {
	if !s.readied {
		s.readied = true
		if s.ready != nil {
			s.ready()
		}
	}
}

// maxReopens is how many sessions in a row a stage starts again after a
// transaction that could not end, before it gives up (a broker gone for
// good): with backoff, about a minute.
const maxReopens = 8

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
		s.trace(StageCommitted, nil)
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
	s.trace(StageAborted, nil)
	if s.stores != nil {
		s.stores.aborted()
	}
	s.input = inputPosition{} // a rebalance aborts: the partitions may have moved
	s.proc.Aborted()
	s.totals.aborted(s.name)
	s.metrics.Transactions.WithLabelValues(s.name, "aborted").Inc()
}

// A transaction that has done work ends before the commit interval once no
// record arrived for idleWait, its input has caught up (inputPosition) and
// it is at least minTransaction old (Kafka Streams' exactly-once default
// commit interval): its outputs are visible sooner, and a stream that never
// pauses still commits once an interval. A poll that comes back empty while
// the input is still behind is only a fetch in flight, not a pause: ending
// the transaction there would commit a handful of records at a time, and
// each commit has a fixed cost (a batch per table and tenant, the commit
// round trips) that a backlog should not pay per handful.
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

// inputPosition says whether a stage's consumer has caught up with its
// input: for each partition, how far the last fetch that returned records
// of it left the consumer below the partition's end (the last stable
// offset for a read-committed consumer).
type inputPosition struct {
	left map[string]map[int32]int64
}

func (in *inputPosition) observe(fetches kgo.Fetches) {
	fetches.EachPartition(func(p kgo.FetchTopicPartition) {
		if len(p.Records) == 0 {
			return
		}
		end := p.HighWatermark
		if p.LastStableOffset >= 0 && p.LastStableOffset < end {
			end = p.LastStableOffset
		}
		if in.left == nil {
			in.left = map[string]map[int32]int64{}
		}
		if in.left[p.Topic] == nil {
			in.left[p.Topic] = map[int32]int64{}
		}
		in.left[p.Topic][p.Partition] = end - (p.Records[len(p.Records)-1].Offset + 1)
	})
}

// lag is how many records the last fetches left below the partitions'
// ends, a commit marker on each not counted.
func (in *inputPosition) lag() int64 {
	var n int64
	for _, parts := range in.left {
		for _, l := range parts {
			if l > 1 {
				n += l - 1
			}
		}
	}
	return n
}

// behind reports whether some partition had more than a record left after
// its last fetch. One is allowed: a transaction's commit marker takes the
// offset after its last record, so a caught-up read-committed consumer
// reads one below the end.
func (in *inputPosition) behind() bool {
	for _, parts := range in.left {
		for _, n := range parts {
			if n > 1 {
				return true
			}
		}
	}
	return false
}

// graceAfter is a context that ends grace after ctx does (or at cancel):
// for what must finish once begun, ending a transaction, without
// outliving a stop by more than grace.
func graceAfter(ctx context.Context, grace time.Duration) (context.Context, context.CancelFunc) {
	gctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	stop := context.AfterFunc(ctx, func() {
		t := time.NewTimer(grace)
		defer t.Stop()
		select {
		case <-t.C:
			cancel()
		case <-gctx.Done():
		}
	})
	return gctx, func() { stop(); cancel() }
}
