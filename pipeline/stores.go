package pipeline

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/stitch-xdr/stitch/state"
)

// StateStore is a stage's state, written in transactions that follow the
// stage's Kafka transactions, and a cache of its changelog topics. The
// stage runtime (not the processor) opens a transaction before the first
// record or tick, produces its changes to the changelogs in Flush, commits
// it after the Kafka transaction committed and drops it when that aborted;
// on every assignment it restores the new partitions from the changelogs.
// state.TxStore is the plain key-value one; the correlator is another.
type StateStore interface {
	Begin() error
	InTransaction() bool
	// Skip records that the open transaction consumed an input record.
	Skip(topic string, partition int32, offset int64) error
	// Changes reports every point write of the open transaction, the input
	// offsets it covers included (state.OffsetKey).
	Changes(fn func(del bool, key, val []byte) error) error
	// Restore stages a changelog entry as Changes reported it.
	Restore(del bool, key, val []byte) error
	// CommitAt commits the open transaction with positions (how far the
	// changelogs go) recorded in the same batch.
	CommitAt(positions map[state.TopicPartition]int64) error
	// Abort drops the open transaction; a no-op without one.
	Abort()
	// Offsets are the committed offsets: of the input and of the changelogs.
	Offsets() (map[state.TopicPartition]int64, error)
	// ChangelogRoute places a change on the changelog partition of the input
	// partition whose state it is (partitionOf is the input producer's
	// partitioner over a tenant), and says whether it is windowed.
	ChangelogRoute(key []byte, partitionOf func(tenant []byte) int32) (partition int32, windowed bool, err error)
}

// attached is a store of a running stage with its changelog writer.
type attached struct {
	name  string
	store StateStore
	log   *changelogWriter
	topic []string // changelog topics
}

// stateful runs the stores of a transactional stage: restore on assignment,
// a store transaction in step with each Kafka transaction, changelog
// records inside it, and which input partitions (so which tenants) this
// process owns now.
type stateful struct {
	p     *Pipeline
	stage string
	group string
	input string // the one input topic; changelog partition p is its partition p

	stores []*attached

	// txMu is held by the stage from before each Kafka Begin until the
	// transaction ended (a transaction that read nothing is let go at the
	// end of each interval it stays open, empty), and by restores: a
	// restore never overlaps a transaction with work in it, and no record
	// of a partition is processed before its restore is done (the group
	// fetches a new partition only after the assignment callback
	// returned).
	txMu sync.Mutex
	// waiting counts restores waiting for txMu. The stage lets them go
	// first: it ends its open transaction at once instead of at the commit
	// interval (polling cancels its poll while it waits for records), and
	// beginTxn waits until they hold the lock.
	waiting    atomic.Int32
	pollMu     sync.Mutex
	pollCancel context.CancelFunc // the stage's poll in progress, if any
	ctx        context.Context    // canceled when the stage stops
	cancel     context.CancelFunc
	client     *kgo.Client
	unrestored map[int32]error // restores that failed; retried before each transaction
	broken     error           // a store could not commit: stop
	// closed: the stores are closing or closed (held under txMu). A
	// group callback that comes after (a session outliving its stage)
	// leaves them alone.
	closed bool

	ownMu  sync.Mutex
	owned  map[int32]bool // input partitions assigned to this process
	nparts int            // partitions of the input topic
	part   kgo.TopicPartitioner
	// meta asks the cluster for nparts: the stage's client from its start,
	// so that a transaction before the first assignment (a tick, or a
	// process the group gives no partition) can write its changelogs.
	meta *kgo.Client

	listener Assignments // the processor, if it wants assignments

	stamped time.Time // when committed() last recorded the catch-up times
}

// stampEvery bounds how long an idle store goes without recording that it
// is caught up with the partitions it owns: far below any delete.retention.ms.
const stampEvery = time.Hour

func newStateful(p *Pipeline, stage, group, input string) *stateful {
	s := &stateful{p: p, stage: stage, group: group, input: input,
		unrestored: map[int32]error{}, owned: map[int32]bool{},
		part: kgo.StickyKeyPartitioner(nil).ForTopic(input)}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	return s
}

func (s *stateful) attach(name string, st StateStore, changelogs []string) {
	s.stores = append(s.stores, &attached{name: name, store: st, topic: changelogs,
		log: newChangelogWriter(changelogs, s.input)})
}

func (s *stateful) kafkaOpts() []kgo.Opt {
	manual := map[string]bool{}
	for _, a := range s.stores {
		for _, t := range a.topic {
			manual[t] = true
		}
	}
	return []kgo.Opt{
		kgo.RecordPartitioner(changelogPartitioner{manual: manual, def: kgo.StickyKeyPartitioner(nil)}),
		kgo.OnPartitionsAssigned(s.onAssigned),
		kgo.OnPartitionsRevoked(s.onRevoked),
		kgo.OnPartitionsLost(s.onRevoked),
	}
}

// OwnsKey says whether this process owns the input partition of key now:
// a store keeps the state of partitions that moved elsewhere, and only the
// owner may act on them (close idle incidents). Inputs are keyed with the
// producer's default partitioner (murmur2 of the key, as the Java client).
func (s *stateful) OwnsKey(key []byte) bool {
	s.ownMu.Lock()
	defer s.ownMu.Unlock()
	p := s.partitionOfKeyLocked(key)
	return p >= 0 && s.owned[p] // nothing before the first assignment
}

// partitionOfKey is the input partition key goes to, or -1 while the
// partition count is not known.
func (s *stateful) partitionOfKey(key []byte) int32 {
	s.ownMu.Lock()
	defer s.ownMu.Unlock()
	return s.partitionOfKeyLocked(key)
}

func (s *stateful) partitionOfKeyLocked(key []byte) int32 {
	if s.nparts <= 0 {
		return -1
	}
	return int32(s.part.Partition(&kgo.Record{Key: key}, s.nparts))
}

// started gives the stores the stage's client (at each start of its Kafka
// session), which learns the input's partition count when it is needed
// before an assignment did.
func (s *stateful) started(cl *kgo.Client) {
	s.ownMu.Lock()
	defer s.ownMu.Unlock()
	s.meta = cl
}

func (s *stateful) track(cl *kgo.Client, parts []int32, assigned bool) {
	s.ownMu.Lock()
	defer s.ownMu.Unlock()
	s.meta = cl
	for _, p := range parts {
		if assigned {
			s.owned[p] = true
		} else {
			delete(s.owned, p)
		}
	}
	if assigned {
		s.refreshPartitionsLocked(cl)
	}
}

// refreshPartitionsLocked learns the input topic's partition count, which
// places keys on partitions. Call with ownMu held.
func (s *stateful) refreshPartitionsLocked(cl *kgo.Client) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	tds, err := kadm.NewClient(cl).ListTopics(ctx, s.input)
	if err == nil {
		if td, ok := tds[s.input]; ok && td.Err == nil {
			s.nparts = len(td.Partitions)
		}
	}
	if s.nparts == 0 {
		s.p.log.Warn(s.stage+": input partition count unknown; state is not written until it is", "topic", s.input, "err", err)
	}
}

// partitions is the input partition count, learnt now if not yet (an
// assignment need not have come first).
func (s *stateful) partitions() int {
	s.ownMu.Lock()
	defer s.ownMu.Unlock()
	if s.nparts == 0 && s.meta != nil {
		s.refreshPartitionsLocked(s.meta)
	}
	return s.nparts
}

func (s *stateful) onRevoked(_ context.Context, cl *kgo.Client, revoked map[string][]int32) {
	parts := revoked[s.input]
	s.track(cl, parts, false)
	if s.listener != nil && len(parts) > 0 {
		s.listener.Revoked(s.input, parts)
	}
}

// onAssigned restores the newly assigned partitions whose state is behind
// the group's committed offsets. It runs on the group's goroutine
// (heartbeats go on meanwhile) and waits for the open transaction to end.
func (s *stateful) onAssigned(_ context.Context, cl *kgo.Client, assigned map[string][]int32) {
	parts := assigned[s.input]
	if len(parts) == 0 {
		return
	}
	s.track(cl, parts, true)
	s.lockForRestore()
	if s.closed {
		s.txMu.Unlock()
		return
	}
	s.client = cl
	s.restoreLocked(parts)
	s.txMu.Unlock()
	if s.listener != nil {
		s.listener.Assigned(s.input, parts)
	}
}

func (s *stateful) restoreLocked(parts []int32) {
	if s.closed || s.ctx.Err() != nil {
		return
	}
	var err error
	for _, a := range s.stores {
		err = restoreChangelogs(s.ctx, restoreSpec{
			Client:     s.client,
			Group:      s.group,
			Input:      s.input,
			Changelogs: a.topic,
			Partitions: parts,
			Store:      a.store,
			Name:       s.stage + "/" + a.name,
			PartitionOf: func(tenant []byte) int32 {
				return int32(s.part.Partition(&kgo.Record{Key: tenant}, s.partitions()))
			},
			ClientOpts: func() ([]kgo.Opt, error) { return s.p.clientOpts("restore") },
			Metrics:    s.p.metrics,
			Log:        s.p.log,
		})
		if err != nil {
			err = fmt.Errorf("store %s: %w", a.name, err)
			break
		}
	}
	for _, p := range parts {
		if err != nil {
			s.unrestored[p] = err
		} else {
			delete(s.unrestored, p)
		}
	}
	if err != nil && s.ctx.Err() == nil {
		s.p.log.Error(s.stage+": restoring state failed; its partitions wait", "partitions", parts, "err", err)
	}
}

// lockForRestore takes txMu for a restore, cutting the stage's open
// transaction short (see waiting).
func (s *stateful) lockForRestore() {
	s.waiting.Add(1)
	s.pollMu.Lock()
	if s.pollCancel != nil {
		s.pollCancel()
	}
	s.pollMu.Unlock()
	s.txMu.Lock()
	s.waiting.Add(-1)
}

// restorePending says whether a restore waits for the open transaction to
// end.
func (s *stateful) restorePending() bool { return s.waiting.Load() > 0 }

// polling registers the cancel of the stage's poll in progress, which a
// restore that comes calls; the stage calls the function returned once the
// poll returned.
func (s *stateful) polling(cancel context.CancelFunc) (done func()) {
	s.pollMu.Lock()
	defer s.pollMu.Unlock()
	if s.waiting.Load() > 0 {
		cancel()
		return func() {}
	}
	s.pollCancel = cancel
	return func() {
		s.pollMu.Lock()
		s.pollCancel = nil
		s.pollMu.Unlock()
	}
}

// beginTxn runs before each Kafka Begin (and each interval of an empty
// transaction): no restore may overlap the transaction, and one that waits
// goes first; restores that failed are tried again first.
func (s *stateful) beginTxn() {
	for s.waiting.Load() > 0 && s.ctx.Err() == nil {
		// Go's mutex is not fair: a waiter woken by the last Unlock may
		// lose to this Lock, and the restore would wait another
		// transaction.
		time.Sleep(time.Millisecond)
	}
	s.txMu.Lock()
	if len(s.unrestored) > 0 && s.client != nil {
		var parts []int32
		for p := range s.unrestored {
			parts = append(parts, p)
		}
		s.restoreLocked(parts)
	}
}

// endTxn runs after the transaction ended, whichever way.
func (s *stateful) endTxn() {
	for _, a := range s.stores {
		a.store.Abort() // a no-op unless the transaction ended without committed/aborted
	}
	s.txMu.Unlock()
}

func (s *stateful) stopping() { s.cancel() }

// close runs before the stores close: it cuts a restore in progress short
// (its context), waits for it to let go of the stores, and keeps any later
// one off them.
func (s *stateful) close() {
	s.cancel()
	s.lockForRestore()
	s.closed = true
	s.txMu.Unlock()
}

// open starts the stores' side of the Kafka transaction on first use.
func (s *stateful) open() error {
	if s.broken != nil {
		return s.broken
	}
	for _, a := range s.stores {
		if !a.store.InTransaction() {
			if err := a.store.Begin(); err != nil {
				return fmt.Errorf("store %s: %w", a.name, err)
			}
		}
	}
	return nil
}

// before is called before a record is processed: its partition must be
// restored, and the stores in a transaction.
func (s *stateful) before(r *kgo.Record) error {
	if err := s.unrestored[r.Partition]; err != nil {
		err = fmt.Errorf("%s: partition %d is not restored: %w", s.stage, r.Partition, err)
		if errors.Is(err, state.ErrFailed) {
			return fatal(err) // the store cannot take writes: retrying cannot help
		}
		return err
	}
	return s.open()
}

// after records that the stores' transaction covers r.
func (s *stateful) after(r *kgo.Record) error {
	for _, a := range s.stores {
		if err := a.store.Skip(r.Topic, r.Partition, r.Offset); err != nil {
			return fmt.Errorf("store %s: %w", a.name, err)
		}
	}
	return nil
}

// flush writes the transaction's state changes to the changelogs, inside
// the transaction: they commit, or vanish, with its outputs and offsets.
func (s *stateful) flush(ctx context.Context, tx *txn) error {
	n := -1
	for _, a := range s.stores {
		if !a.store.InTransaction() {
			continue
		}
		if n < 0 {
			n = s.partitions()
		}
		if _, err := a.log.emit(a.store, n, func(r *kgo.Record) { tx.produceThen(ctx, r, a.log.produced) }); err != nil {
			return fmt.Errorf("%s: store %s: %w", s.stage, a.name, err)
		}
	}
	return nil
}

// committed makes the pending state durable now that the outputs are. A
// crash before this returns leaves the store behind the group's offsets,
// which the next assignment restores. A failure here leaves this process's
// store behind with no assignment coming: the stage stops (after its
// retries) so that a restart restores it.
func (s *stateful) committed() {
	s.ownMu.Lock()
	owned := make([]int32, 0, len(s.owned))
	for p := range s.owned {
		owned = append(owned, p)
	}
	s.ownMu.Unlock()
	now := time.Now()
	for _, a := range s.stores {
		if !a.store.InTransaction() {
			continue
		}
		pos := a.log.positions()
		// Owning a partition keeps its state caught up (rebuild.go): say so
		// with every transaction that writes anyway, and at least every
		// stampEvery, so that an idle transaction writes nothing.
		if len(pos) > 0 || now.Sub(s.stamped) >= stampEvery {
			stampSynced(pos, a.topic, owned, now)
			s.stamped = now
		}
		if err := a.store.CommitAt(pos); err != nil {
			s.broken = fatal(fmt.Errorf("%s: store %s: state commit failed after the Kafka commit (restart to restore): %w", s.stage, a.name, err))
			s.p.log.Error(s.stage+": state commit failed", "store", a.name, "err", err)
		}
	}
}

// aborted drops the pending state: the input is consumed again from the
// group's committed offsets, which the stores match.
func (s *stateful) aborted() {
	for _, a := range s.stores {
		a.store.Abort()
		a.log.positions() // forget them: the records were aborted
	}
}
