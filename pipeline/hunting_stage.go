package pipeline

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/stitch-xdr/stitch/connectors/ipc"
	"github.com/stitch-xdr/stitch/connectors/parquet"
	"github.com/stitch-xdr/stitch/operators/normalize"
)

// huntingStage is stage 3, a sink: hunting.<Table> topics in, Parquet
// partitions out (hunting.dir), no transactions.
func huntingStage() Stage {
	return Stage{
		Name:    "hunting",
		Doc:     "writes Arrow batches to Parquet hunting partitions in Hive layout under hunting.dir",
		Enabled: func(c Config) bool { return c.Hunting.Enabled },
		Dirs:    func(c Config) []string { return []string{c.HuntingDir()} },
		Discard: func(_ Config, dir string) error { return parquet.Discard(dir) },
		Inputs: func(c Config) []string {
			var in []string
			for _, table := range normalize.Tables() {
				in = append(in, c.Topics.HuntingPrefix+table)
			}
			return in
		},
		Sink: func(sc *StageContext) (Runner, error) { return newHuntingSink(sc) },
		Progress: func(s StageSnapshot) string {
			return fmt.Sprintf("parquet rows %d", s.Sum(CountParquetRows))
		},
	}
}

// huntingRecycledBytes bounds the released buffers the hunting sink keeps
// for the next batches it decodes.
const huntingRecycledBytes = 16 << 20

// stopGrace is how long a batch being written may take to finish after a
// stop.
const stopGrace = 3 * time.Second

// idleRollAfter is how long the sink's input must pause before it commits
// its open segment without waiting for the roll age: two commit intervals
// of the normalize stage, whose transactions make the hunting records
// visible, so a stream that keeps flowing (one commit an interval) never
// looks idle.
func idleRollAfter(commitInterval time.Duration) time.Duration {
	return max(2*commitInterval, 200*time.Millisecond)
}

// A drained input need not wait out idleRollAfter: once the stages that
// produce the sink's input have committed all of theirs (their groups'
// offsets at their inputs' ends), and a poll after that found nothing
// more, every row there will be is written, and the segment commits at
// once. Polls are quickPoll long meanwhile, so a drain's last rows are
// visible a few hundred milliseconds after the last input commit, not two
// commit intervals and a poll later.
//
// A steady stream must not roll that way on every short pause (a trickle
// of a few records a second is caught up between records; a faster one
// now and then, between the upstream commit and the next record): a
// caught-up roll comes only when the last roll by age or by a pause is at
// least hunting.roll_age old (or there was none), so it adds at most one
// segment per roll age to those the age makes anyway; in between, a pause
// commits after idleRollAfter as before. Rolls by size or by the open-file
// bound do not count: a long drain makes them all along, and its last rows
// should not wait for the pause.
const quickPoll = 100 * time.Millisecond

// huntingSink is stage 3: it reads the hunting.<Table> topics (read
// committed) and writes Parquet partitions. Like Kafka Connect's file sinks it
// keeps its offsets beside its files: a segment of files is committed with
// the offsets it covers, in each input partition's commit.json, and on
// assignment the consumer seeks to the partition's committed offset, so no
// row is lost or written twice across restarts. Group offsets are committed after each segment only
// so that lag is visible to operators.
//
// Several instances may share hunting.dir: the writer owns (locks) the
// partitions the group assigns this instance, and their offsets live with
// the partition in the directory, not with the instance. A partition whose
// previous owner has not let go yet (it is still committing, or its
// process is gone but its lock not yet) is paused until the writer owns
// it.
type huntingSink struct {
	p   *Pipeline
	sc  *StageContext
	cl  *kgo.Client
	w   *parquet.Writer
	mem *normalize.Recycler // the decoded batches' buffers, reused once written

	ready    func()
	mu       sync.Mutex
	assigned map[string]map[int32]bool
	pending  map[string]int64 // table → rows written since the last commit
	consumed map[string]int64 // topic → records read since the last commit
	// partial says a stop left records of the last poll unwritten: the
	// group's offsets must not move past them (onAssigned would skip them).
	partial bool
	// waiting: assigned partitions another writer still owns, paused, with
	// the group's offset for each (-1: none); since: when the wait began.
	waiting map[parquet.TopicPartition]int64
	since   time.Time
	tried   time.Time
	// input: how far the last fetches left the consumer below the ends;
	// rolled: when a segment last rolled by age or by a pause (zero: none
	// yet); started: when the open segment got its first row.
	input   inputPosition
	rolled  time.Time
	started time.Time
}

// huntingTestOptions are added to the writer's options (tests: a hook that
// kills the process at a commit point).
var huntingTestOptions []parquet.Option

func newHuntingSink(sc *StageContext) (*huntingSink, error) {
	p := sc.p
	// A decoded batch lives until the writer writes its rows out; its
	// buffers then serve the next ones.
	mem := normalize.NewRecycler(p.mem, huntingRecycledBytes)
	w, err := parquet.Open(p.cfg.HuntingDir(), append([]parquet.Option{
		parquet.RollBytes(p.cfg.Hunting.RollBytes),
		parquet.RollAge(p.cfg.Hunting.RollAge.D()),
		parquet.MaxOpenFiles(p.cfg.Hunting.MaxOpenFiles),
		parquet.MaxBufferedBytes(p.cfg.Hunting.MaxBuffered),
		parquet.OnQuarantine(func(string, string) { p.metrics.HuntingQuarantined.Inc() }),
		parquet.Allocator(mem),
		parquet.Logger(p.log),
		parquet.Instance(p.instance),
	}, huntingTestOptions...)...)
	if err != nil {
		mem.Close()
		return nil, fmt.Errorf("open hunting writer: %w", err)
	}
	h := &huntingSink{p: p, sc: sc, w: w, mem: mem, assigned: map[string]map[int32]bool{}, pending: map[string]int64{}, consumed: map[string]int64{},
		waiting: map[parquet.TopicPartition]int64{}}
	h.ready = sc.readyFunc()
	opts, err := p.clientOpts(sc.Name)
	if err != nil {
		w.Close()
		mem.Close()
		return nil, err
	}
	opts = append(opts,
		kgo.ConsumerGroup(sc.Group),
		// Static membership as in the other stages: a restarted process
		// replaces its crashed predecessor at once instead of leaving a
		// dead member that every rebalance waits for (a crash loop left
		// so many that joins timed out).
		p.staticMember(sc.Name),
		kgo.SessionTimeout(10*time.Second),
		kgo.RebalanceTimeout(10*time.Second),
		// Let a join that waits out a rebalance finish rather than give up
		// and start over (JoinGroup blocks for up to the rebalance timeout).
		kgo.RequestTimeoutOverhead(30*time.Second),
		kgo.ConsumeTopics(sc.info.Inputs...),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.DisableAutoCommit(),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.OnPartitionsAssigned(h.onAssigned),
		kgo.OnPartitionsRevoked(h.onRevoked),
		kgo.OnPartitionsLost(h.onRevoked),
		// Rebalance callbacks run only between polls, never while a batch is
		// half written.
		kgo.BlockRebalanceOnPoll(),
	)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		w.Close()
		mem.Close()
		return nil, fmt.Errorf("hunting consumer: %w", err)
	}
	h.cl = cl
	return h, nil
}

// onAssigned owns each new partition in the writer and seeks it to the
// later of two marks: the offset after the partition's last commit in the
// hunting directory, and the group's committed offset. The directory wins
// after a crash between a segment and the group commit; the group wins when
// the partition went to a process with another hunting directory and came
// back (a -> b -> a), or a would write again the rows b committed meanwhile.
// A partition another writer of a shared directory still owns is paused
// and owned later (ownWaiting).
func (h *huntingSink) onAssigned(ctx context.Context, cl *kgo.Client, assigned map[string][]int32) {
	var tps []parquet.TopicPartition
	for topic, parts := range assigned {
		for _, p := range parts {
			tps = append(tps, parquet.TopicPartition{Topic: topic, Partition: p})
		}
	}
	resume, busy, err := h.w.Own(tps...)
	if err != nil {
		// Not a wait that time ends (a commit.json that cannot be read):
		// the next write of the partition fails and stops the sink, named.
		h.p.log.Error("hunting: own assigned partitions", "err", err)
	}
	group := map[string]map[int32]int64{}
	fctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	offs, err := kadm.NewClient(cl).FetchOffsets(fctx, h.sc.Group)
	cancel()
	if err != nil {
		h.p.log.Warn("hunting: group offsets unknown; resuming from the directory's commits", "err", err)
	} else {
		offs.Each(func(o kadm.OffsetResponse) {
			if o.Err == nil && o.At >= 0 {
				if group[o.Topic] == nil {
					group[o.Topic] = map[int32]int64{}
				}
				group[o.Topic][o.Partition] = o.At
			}
		})
	}
	isBusy := map[parquet.TopicPartition]bool{}
	pause := map[string][]int32{}
	for _, tp := range busy {
		isBusy[tp] = true
		g, known := group[tp.Topic][tp.Partition]
		if !known {
			g = -1
		}
		if len(h.waiting) == 0 {
			h.since = time.Now()
		}
		h.waiting[tp] = g
		pause[tp.Topic] = append(pause[tp.Topic], tp.Partition)
	}
	if len(pause) > 0 {
		// Before any fetch of them begins (OnPartitionsAssigned runs first).
		cl.PauseFetchPartitions(pause)
		h.p.log.Info("hunting: partitions still owned by another writer of the directory; paused until it lets go", "partitions", len(busy))
	}
	set := map[string]map[int32]kgo.EpochOffset{}
	h.mu.Lock()
	for topic, parts := range assigned {
		if h.assigned[topic] == nil {
			h.assigned[topic] = map[int32]bool{}
		}
		for _, p := range parts {
			h.assigned[topic][p] = true
			off, ok := resume[parquet.TopicPartition{Topic: topic, Partition: p}]
			if !ok {
				continue // the group's offset, as the consumer would start anyway
			}
			if g, known := group[topic][p]; known && g > off {
				off = g
			}
			if set[topic] == nil {
				set[topic] = map[int32]kgo.EpochOffset{}
			}
			set[topic][p] = kgo.EpochOffset{Epoch: -1, Offset: off}
		}
	}
	h.mu.Unlock()
	if len(set) > 0 {
		cl.SetOffsets(set)
	}
}

// ownWaiting tries again to own the partitions paused in onAssigned; those
// it gets are sought like onAssigned's and resumed. It runs between polls,
// while no rebalance can.
func (h *huntingSink) ownWaiting(cl *kgo.Client) {
	if len(h.waiting) == 0 || time.Since(h.tried) < 200*time.Millisecond {
		return
	}
	h.tried = time.Now()
	tps := make([]parquet.TopicPartition, 0, len(h.waiting))
	for tp := range h.waiting {
		tps = append(tps, tp)
	}
	next, busy, err := h.w.Own(tps...)
	if err != nil {
		h.p.log.Error("hunting: own assigned partitions", "err", err)
		return
	}
	still := map[parquet.TopicPartition]bool{}
	for _, tp := range busy {
		still[tp] = true
	}
	set := map[string]map[int32]kgo.EpochOffset{}
	resume := map[string][]int32{}
	for _, tp := range tps {
		if still[tp] {
			continue
		}
		// Paused since its assignment, so nothing of it was fetched; seek
		// anyway, from the start when neither mark is known.
		off := max(h.waiting[tp], 0)
		if n, ok := next[tp]; ok && n > off {
			off = n
		}
		delete(h.waiting, tp)
		if set[tp.Topic] == nil {
			set[tp.Topic] = map[int32]kgo.EpochOffset{}
		}
		set[tp.Topic][tp.Partition] = kgo.EpochOffset{Epoch: -1, Offset: off}
		resume[tp.Topic] = append(resume[tp.Topic], tp.Partition)
	}
	if len(set) > 0 {
		cl.SetOffsets(set)
		cl.ResumeFetchPartitions(resume)
		h.p.log.Info("hunting: owned partitions another writer let go", "partitions", len(tps)-len(busy))
	}
	if len(h.waiting) > 0 && time.Since(h.since) > 30*time.Second {
		h.p.log.Warn("hunting: partitions still owned by another writer of the directory", "partitions", len(h.waiting), "waiting", time.Since(h.since).Round(time.Second))
		h.since = time.Now()
	}
}

// onRevoked commits the open segment before the partitions move, so that
// their new owner starts exactly after it, then lets the writer's
// ownership of them go.
func (h *huntingSink) onRevoked(ctx context.Context, cl *kgo.Client, revoked map[string][]int32) {
	if err := h.commit(ctx, cl); err != nil {
		h.p.log.Error("hunting: commit on revoke", "err", err)
	}
	var tps []parquet.TopicPartition
	unpause := map[string][]int32{}
	h.mu.Lock()
	for topic, parts := range revoked {
		for _, p := range parts {
			delete(h.assigned[topic], p)
			delete(h.input.left[topic], p)
			tp := parquet.TopicPartition{Topic: topic, Partition: p}
			tps = append(tps, tp)
			if _, ok := h.waiting[tp]; ok {
				delete(h.waiting, tp)
				unpause[topic] = append(unpause[topic], p)
			}
		}
	}
	h.mu.Unlock()
	if len(unpause) > 0 {
		cl.ResumeFetchPartitions(unpause) // a later assignment starts unpaused
	}
	if err := h.w.Release(tps...); err != nil {
		// The commit above failed: the writer is unusable now, and the
		// next commit stops the sink.
		h.p.log.Error("hunting: release revoked partitions", "err", err)
	}
}

func (h *huntingSink) commit(ctx context.Context, cl *kgo.Client) error {
	if err := h.w.Commit(); err != nil {
		return err
	}
	t := newTally()
	if len(h.pending) > 0 {
		h.p.metrics.HuntingSegments.Inc()
		for table, n := range h.pending {
			t.count(CountParquetRows, table, n)
		}
		clear(h.pending)
	}
	for topic, n := range h.consumed {
		t.recordsIn[topic] = n
	}
	clear(h.consumed)
	h.p.totals.merge(h.sc.Name, t, h.p.metrics)
	if h.partial {
		return nil
	}
	if err := cl.CommitUncommittedOffsets(ctx); err != nil && !errors.Is(err, context.Canceled) {
		h.p.log.Warn("hunting: commit group offsets (for lag only)", "err", err)
	}
	return nil
}

func (h *huntingSink) Run(ctx context.Context) error {
	if every := h.p.cfg.Hunting.RetentionEvery.D(); every > 0 {
		done := make(chan struct{})
		defer func() { <-done }()
		go func() {
			defer close(done)
			parquet.RetentionLoop(ctx, h.p.cfg.HuntingDir(), every, h.p.cfg.Hunting.Retention.D(), h.p.log)
		}()
	}
	// Close the client (which leaves the group, committing in onRevoked)
	// before the writer it commits to.
	defer func() {
		h.cl.AllowRebalance()
		h.cl.Close()
		if err := h.w.Close(); err != nil {
			h.p.log.Error("hunting: close writer", "err", err)
		}
		h.mem.Close()
	}()
	// A batch being written when a stop comes gets stopGrace to finish, so
	// that an ordinary stop commits the open segment; only a batch that
	// would outlast it (thousands of hours) is interrupted, its segment
	// dropped and read again next time.
	wctx, wcancel := context.WithCancelCause(context.Background())
	defer wcancel(nil)
	stopWrite := context.AfterFunc(ctx, func() {
		time.AfterFunc(stopGrace, func() { wcancel(context.Cause(ctx)) })
	})
	defer stopWrite()
	idleRoll := idleRollAfter(h.p.cfg.Kafka.CommitInterval.D())
	lastRecord := time.Now()
	// upstreamDone: when the upstream stages were last seen to have
	// committed all of their input, since the last record (zero: not yet);
	// checked: when they were last asked.
	var upstreamDone, checked time.Time
	poll := 500 * time.Millisecond
	for {
		polled := time.Now()
		pctx, cancel := context.WithTimeout(ctx, poll)
		fetches := h.cl.PollRecords(pctx, h.p.cfg.Kafka.MaxPollRecords)
		cancel()
		if fetches.IsClientClosed() {
			return nil
		}
		h.ready()
		h.ownWaiting(h.cl)
		h.input.observe(fetches)
		fetches.EachError(func(topic string, p int32, err error) {
			if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
				return
			}
			h.p.log.Warn("hunting: fetch error", "topic", topic, "partition", p, "err", err)
		})
		var werr error
		fetches.EachRecord(func(r *kgo.Record) {
			// A stop (signal, replay deadline) is honoured between records,
			// not after the whole poll: the rest is read again next time.
			if werr != nil {
				return
			}
			if ctx.Err() != nil {
				h.partial = true
				return
			}
			h.consumed[r.Topic]++
			hdrs := make([]ipc.Header, len(r.Headers))
			for i, rh := range r.Headers {
				hdrs[i] = ipc.Header{Key: rh.Key, Value: string(rh.Value)}
			}
			b, err := ipc.Decode(r.Value, hdrs, h.mem)
			if err != nil {
				// Not ours or corrupt: it cannot become rows. Say so loudly and
				// move on; the original stays on the topic.
				h.p.log.Error("hunting: undecodable record skipped", "topic", r.Topic, "partition", r.Partition, "offset", r.Offset, "err", err)
				return
			}
			werr = h.w.WriteContext(wctx, parquet.Source{Topic: r.Topic, Partition: r.Partition, Offset: r.Offset}, b)
			if errors.Is(werr, parquet.ErrInvalidBatch) {
				// Decodable but not writable (a hostile table name, no
				// tenant, a foreign column type): as undecodable, skipped
				// loudly, or every restart would stop on it again.
				h.p.log.Error("hunting: unwritable record skipped", "topic", r.Topic, "partition", r.Partition, "offset", r.Offset, "err", werr)
				werr = nil
				b.Release()
				return
			}
			if len(h.pending) == 0 {
				h.started = time.Now()
			}
			h.pending[b.Table] += b.Record.NumRows()
			b.Release()
		})
		if werr != nil && wctx.Err() != nil && errors.Is(werr, wctx.Err()) {
			// Stopped inside a batch: drop the segment rather than commit
			// half a record; all of it is read again from the partitions'
			// commits (the group's offsets are not committed past them).
			h.partial = true
			clear(h.pending)
			clear(h.consumed)
			if err := h.w.Abort(); err != nil {
				h.p.log.Warn("hunting: drop the interrupted segment", "err", err)
			}
			h.cl.AllowRebalance()
			return nil
		}
		if werr != nil {
			h.cl.AllowRebalance()
			return fmt.Errorf("hunting: write: %w", werr)
		}
		if ctx.Err() != nil {
			// Final segment on a clean stop.
			cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			err := h.commit(cctx, h.cl)
			cancel()
			return err
		}
		if fetches.NumRecords() > 0 {
			lastRecord = time.Now()
			upstreamDone, checked = time.Time{}, time.Time{}
		}
		idle := fetches.NumRecords() == 0 && (len(h.pending) == 0 || time.Since(lastRecord) >= idleRoll)
		ask := false
		if !idle && fetches.NumRecords() == 0 && !h.input.behind() && h.quickRollAllowed() {
			switch {
			case !upstreamDone.IsZero() && polled.After(upstreamDone):
				// Caught up, and this whole poll, begun after the upstream
				// stages had committed everything, found nothing new.
				idle = true
			case upstreamDone.IsZero() && time.Since(checked) >= 5*quickPoll:
				ask = true
			}
		}
		if h.w.Due() || idle {
			// Due: roll by size or age. Idle: the input paused, so the rows
			// need not wait out the roll age to be visible (a drained
			// stream's last rows, a replay's); a stream that keeps flowing
			// rolls by size and age only. An idle poll with nothing pending
			// commits group offsets only, so that lag reads zero.
			aged := len(h.pending) > 0 && (idle || time.Since(h.started) >= h.p.cfg.Hunting.RollAge.D())
			if err := h.commit(ctx, h.cl); err != nil {
				h.cl.AllowRebalance()
				return fmt.Errorf("hunting: commit segment: %w", err)
			}
			if aged {
				h.rolled = time.Now()
			}
		}
		// Decided before rebalances may run again (a revoke commits).
		poll = 500 * time.Millisecond
		if h.quickRollAllowed() {
			poll = quickPoll
		}
		h.cl.AllowRebalance()
		if ask {
			// After AllowRebalance: a few admin round trips (a second at
			// most) must not hold up a rebalance.
			checked = time.Now()
			if h.upstreamCaughtUp(ctx) {
				upstreamDone = time.Now()
			}
		}
	}
}

// quickRollAllowed says whether the open segment may commit as soon as
// the input is drained (see quickPoll): it has rows, no partition waits
// for its owner, and no segment rolled by age or by a pause within the
// roll age.
func (h *huntingSink) quickRollAllowed() bool {
	return len(h.pending) > 0 && len(h.waiting) == 0 &&
		(h.rolled.IsZero() || time.Since(h.rolled) >= h.p.cfg.Hunting.RollAge.D())
}

// upstreamCaughtUp says whether every stage producing the sink's input
// has committed all of its own input: its group's offsets are at most one
// below each of its input partitions' ends (one: a transaction's commit
// marker). Then all the hunting records there will be, for what arrived so
// far, are committed. False when it cannot tell (no such stage in this
// process's topology, an admin request that failed).
func (h *huntingSink) upstreamCaughtUp(ctx context.Context) bool {
	var ups []StageInfo
	for _, st := range h.p.topo.Stages {
		for _, out := range st.Outputs {
			if slices.Contains(h.sc.info.Inputs, out) {
				ups = append(ups, st)
				break
			}
		}
	}
	if len(ups) == 0 {
		return false
	}
	// The sink has nothing else to do meanwhile: it read all it could.
	actx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	adm := kadm.NewClient(h.cl)
	for _, up := range ups {
		ends, err := adm.ListEndOffsets(actx, up.Inputs...)
		if err != nil || ends.Error() != nil {
			return false
		}
		committed, err := adm.FetchOffsetsForTopics(actx, up.Group, up.Inputs...)
		if err != nil {
			return false
		}
		caughtUp := true
		ends.Each(func(end kadm.ListedOffset) {
			at := int64(0)
			if c, ok := committed.Lookup(end.Topic, end.Partition); ok && c.Err == nil {
				at = c.At
			}
			if end.Offset > 0 && at < end.Offset-1 {
				caughtUp = false
			}
		})
		if !caughtUp {
			return false
		}
	}
	return true
}
