package pipeline

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/stitch-xdr/stitch/operators/correlate"
	"github.com/stitch-xdr/stitch/state"
)

// correlateProc is stage 2: facts in (keyed by tenant, so every alert of a
// tenant arrives at one task), incidents out, keyed by incident id so that a
// SIEM can upsert by key (and compaction keeps the latest version).
//
// Exactly-once: the correlator's writes during one Kafka transaction stay in
// one pending Pebble batch; flush produces them to the changelogs inside the
// transaction (changelog.go), and the batch is committed (with the facts
// offsets and changelog offsets it covers) only after the Kafka transaction
// committed, and dropped when it aborts. So the store is never ahead of the
// changelogs; when it is behind (a crash between the two commits, a
// partition whose state was built by another process, an empty store), the
// partition is restored from the changelogs on assignment, before any of
// its records is processed (restore.go).
type correlateProc struct {
	p *Pipeline
	c *correlate.Correlator

	// txMu is held by the stage from before each Kafka Begin until the
	// transaction ended, and by restores: a restore never overlaps an open
	// transaction, and no record of a partition is processed before its
	// restore is done (the group fetches a new partition only after the
	// assignment callback returned).
	txMu       sync.Mutex
	ctx        context.Context // canceled when the stage stops
	cancel     context.CancelFunc
	sess       *kgo.Client
	unrestored map[int32]error // restores that failed; retried before each transaction
	broken     error           // the store could not commit: stop

	log *changelog // the store's changelogs

	ownMu  sync.Mutex
	owned  map[int32]bool // facts partitions assigned to this process
	nparts int            // partitions of the facts topic
	part   kgo.TopicPartitioner
}

func (cp *correlateProc) kafkaOpts() []kgo.Opt {
	cp.ctx, cp.cancel = context.WithCancel(context.Background())
	cp.unrestored = map[int32]error{}
	cp.owned = map[int32]bool{}
	cp.part = kgo.StickyKeyPartitioner(nil).ForTopic(cp.p.cfg.Topics.Facts)
	cp.log = newChangelog(cp.p.cfg.Topics)
	return []kgo.Opt{
		kgo.RecordPartitioner(changelogPartitioner{
			manual: map[string]bool{cp.log.topic: true, cp.log.window: true},
			def:    kgo.StickyKeyPartitioner(nil),
		}),
		kgo.OnPartitionsAssigned(cp.onAssigned),
		kgo.OnPartitionsRevoked(cp.onRevoked),
		kgo.OnPartitionsLost(cp.onRevoked),
	}
}

// owns says whether this process owns tenant's facts partition now: the
// store keeps the state of tenants whose partition moved elsewhere, and only
// the owner may close their incidents. Facts are keyed by tenant with the
// producer's default partitioner (murmur2 of the key, as the Java client).
func (cp *correlateProc) owns(tenant string) bool {
	cp.ownMu.Lock()
	defer cp.ownMu.Unlock()
	if cp.nparts <= 0 {
		return false // not assigned yet: close nothing
	}
	return cp.owned[int32(cp.part.Partition(&kgo.Record{Key: []byte(tenant)}, cp.nparts))]
}

func (cp *correlateProc) track(cl *kgo.Client, parts []int32, assigned bool) {
	cp.ownMu.Lock()
	defer cp.ownMu.Unlock()
	for _, p := range parts {
		if assigned {
			cp.owned[p] = true
		} else {
			delete(cp.owned, p)
		}
	}
	if assigned {
		cp.refreshPartitionsLocked(cl)
	}
}

// refreshPartitionsLocked learns the facts topic's partition count, which
// places tenants on partitions. Call with ownMu held.
func (cp *correlateProc) refreshPartitionsLocked(cl *kgo.Client) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	tds, err := kadm.NewClient(cl).ListTopics(ctx, cp.p.cfg.Topics.Facts)
	if err == nil {
		if td, ok := tds[cp.p.cfg.Topics.Facts]; ok && td.Err == nil {
			cp.nparts = len(td.Partitions)
		}
	}
	cp.log.setPartitions(cp.nparts)
	if cp.nparts == 0 {
		cp.p.log.Warn("correlate: facts partition count unknown; idle incidents will not close until it is", "err", err)
	}
}

func (cp *correlateProc) onRevoked(_ context.Context, cl *kgo.Client, revoked map[string][]int32) {
	cp.track(cl, revoked[cp.p.cfg.Topics.Facts], false)
}

// onAssigned restores the newly assigned facts partitions whose state is
// behind the group's committed offsets. It runs on the group's goroutine
// (heartbeats go on meanwhile) and waits for the open transaction to end.
func (cp *correlateProc) onAssigned(_ context.Context, cl *kgo.Client, assigned map[string][]int32) {
	parts := assigned[cp.p.cfg.Topics.Facts]
	if len(parts) == 0 {
		return
	}
	cp.track(cl, parts, true)
	cp.txMu.Lock()
	defer cp.txMu.Unlock()
	cp.sess = cl
	cp.restoreLocked(parts)
}

func (cp *correlateProc) restoreLocked(parts []int32) {
	if cp.ctx.Err() != nil {
		return
	}
	t := cp.p.cfg.Topics
	err := restoreChangelogs(cp.ctx, restoreSpec{
		Client:     cp.sess,
		Group:      cp.p.cfg.Kafka.Group + "-correlate",
		Facts:      t.Facts,
		Changelogs: []string{t.Changelog, t.WindowChangelog},
		Partitions: parts,
		Correlator: cp.c,
		ClientOpts: func() ([]kgo.Opt, error) { return cp.p.clientOpts("restore") },
		Metrics:    cp.p.metrics,
		Log:        cp.p.log,
	})
	for _, p := range parts {
		if err != nil {
			cp.unrestored[p] = err
		} else {
			delete(cp.unrestored, p)
		}
	}
	if err != nil && cp.ctx.Err() == nil {
		cp.p.log.Error("correlate: restoring state failed; its partitions wait", "partitions", parts, "err", err)
	}
}

func (cp *correlateProc) beginTxn(context.Context) {
	cp.txMu.Lock()
	if len(cp.unrestored) > 0 && cp.sess != nil {
		var parts []int32
		for p := range cp.unrestored {
			parts = append(parts, p)
		}
		cp.restoreLocked(parts)
	}
}

func (cp *correlateProc) endTxn() {
	cp.c.Abort() // a no-op unless the transaction ended without committed/aborted
	cp.txMu.Unlock()
}

func (cp *correlateProc) stopping() {
	if cp.cancel != nil {
		cp.cancel()
	}
}

// open starts the correlator's side of the Kafka transaction on first use.
func (cp *correlateProc) open() error {
	if cp.broken != nil {
		return cp.broken
	}
	if !cp.c.InTransaction() {
		return cp.c.Begin()
	}
	return nil
}

func (cp *correlateProc) process(ctx context.Context, r *kgo.Record, tx *txn) error {
	if err := cp.unrestored[r.Partition]; err != nil {
		err = fmt.Errorf("correlate: partition %d is not restored: %w", r.Partition, err)
		if errors.Is(err, state.ErrFailed) {
			return fatal(err) // the store cannot take writes: retrying cannot help
		}
		return err
	}
	if err := cp.open(); err != nil {
		return err
	}
	f, err := correlate.UnmarshalFacts(r.Value)
	if err != nil {
		// Facts are written by stitch itself; one that does not decode is a
		// bug or a foreign producer: dead-letter it rather than stop.
		cp.p.log.Error("undecodable facts record", "topic", r.Topic, "partition", r.Partition, "offset", r.Offset, "err", err)
		tx.produce(ctx, &kgo.Record{Topic: cp.p.cfg.Topics.DeadLetter, Value: mustJSON(map[string]any{
			"reason": "bad_facts", "error": err.Error(), "topic": r.Topic, "partition": r.Partition, "offset": r.Offset,
		})})
		return cp.c.Skip(r.Topic, r.Partition, r.Offset)
	}
	incs, err := cp.c.ApplyOffset(r.Partition, f, r.Topic, r.Offset)
	if err != nil {
		return fmt.Errorf("correlate: %w", err)
	}
	return cp.publish(ctx, incs, tx)
}

func (cp *correlateProc) publish(ctx context.Context, incs []correlate.Incident, tx *txn) error {
	for i := range incs {
		v, err := json.Marshal(&incs[i])
		if err != nil {
			return fmt.Errorf("encode incident %s: %w", incs[i].ID, err)
		}
		tx.produce(ctx, &kgo.Record{Topic: cp.p.cfg.Topics.Incidents, Key: []byte(incs[i].ID), Value: v,
			Headers: []kgo.RecordHeader{{Key: "stitch-tenant", Value: []byte(incs[i].TenantID)}}})
		tx.tally.incidents++
	}
	return nil
}

// flush writes the transaction's state changes to the changelogs, inside
// the transaction: they commit, or vanish, with its outputs and offsets.
func (cp *correlateProc) flush(ctx context.Context, tx *txn) error {
	if !cp.c.InTransaction() {
		return nil
	}
	cp.ownMu.Lock()
	if cp.nparts == 0 && cp.sess != nil {
		cp.refreshPartitionsLocked(cp.sess)
	}
	cp.ownMu.Unlock()
	_, err := cp.log.emit(cp.c, func(r *kgo.Record) { tx.produceThen(ctx, r, cp.log.produced) })
	if err != nil {
		return fmt.Errorf("correlate: %w", err)
	}
	return nil
}

func (cp *correlateProc) tick(ctx context.Context, now time.Time, tx *txn) error {
	if err := cp.open(); err != nil {
		return err
	}
	incs, err := cp.c.Tick(now)
	if err != nil {
		return fmt.Errorf("correlate tick: %w", err)
	}
	return cp.publish(ctx, incs, tx)
}

// aborted drops the pending state: the facts are consumed again from the
// group's committed offsets, which the store matches.
func (cp *correlateProc) aborted() {
	cp.c.Abort()
	cp.log.positions() // forget them: the records were aborted
}

// committed makes the pending state durable now that the outputs are. A
// crash before this returns leaves the store behind the group's offsets,
// which the next assignment restores. A failure here leaves this process's
// store behind with no assignment coming: the stage stops (after its
// retries) so that a restart restores it.
func (cp *correlateProc) committed(*txn) {
	if !cp.c.InTransaction() {
		return
	}
	if err := cp.c.CommitAt(cp.log.positions()); err != nil {
		cp.broken = fatal(fmt.Errorf("correlate: state commit failed after the Kafka commit (restart to restore): %w", err))
		cp.p.log.Error("correlate: state commit failed", "err", err)
	}
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		return []byte(fmt.Sprintf(`{"error":%q}`, err.Error()))
	}
	return b
}
