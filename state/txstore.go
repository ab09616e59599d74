package state

import (
	"fmt"
	"sync"
)

// TxStore is a Store written in transactions, the shape every stateful
// stage's store has: between Begin and CommitAt its writes stage in one
// pending batch (read back through it), together with the input offsets the
// transaction covers; CommitAt makes them durable at once, Abort drops them.
// The pipeline commits it only after the Kafka transaction whose outputs and
// changelog records it matches has committed, so the store is never ahead of
// its changelogs.
//
// Keys must follow the key layout (LAYOUT.md): a tenant key, a bucketed key
// or an offset key, so that ChangelogRoute can place every change.
type TxStore struct {
	s *Store

	mu      sync.Mutex
	b       *Batch
	offsets map[TopicPartition]int64
}

// NewTxStore wraps s. The TxStore does not own s: close s after the last
// transaction ended.
func NewTxStore(s *Store) *TxStore { return &TxStore{s: s} }

// Begin opens a transaction.
func (t *TxStore) Begin() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.b != nil {
		return fmt.Errorf("state: transaction already open")
	}
	t.b = t.s.NewBatch()
	t.offsets = map[TopicPartition]int64{}
	return nil
}

// InTransaction says whether Begin was called without CommitAt or Abort.
func (t *TxStore) InTransaction() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.b != nil
}

func (t *TxStore) open() (*Batch, error) {
	if t.b == nil {
		return nil, fmt.Errorf("state: write outside a transaction")
	}
	return t.b, nil
}

// Get reads key through the open transaction, or from the store outside one.
func (t *TxStore) Get(key []byte) ([]byte, bool, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.b == nil {
		return t.s.Get(key)
	}
	return t.b.Get(key)
}

// Set stages a write in the open transaction.
func (t *TxStore) Set(key, val []byte) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	b, err := t.open()
	if err != nil {
		return err
	}
	return b.Set(key, val)
}

// Delete stages a deletion in the open transaction.
func (t *TxStore) Delete(key []byte) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	b, err := t.open()
	if err != nil {
		return err
	}
	return b.Delete(key)
}

// Skip records that the transaction consumed topic/partition/offset, so the
// store's offsets cover it when it commits.
func (t *TxStore) Skip(topic string, partition int32, offset int64) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, err := t.open(); err != nil {
		return err
	}
	tp := TopicPartition{Topic: topic, Partition: partition}
	if cur, ok := t.offsets[tp]; !ok || offset > cur {
		t.offsets[tp] = offset
	}
	return nil
}

func (t *TxStore) seal() error {
	for tp, off := range t.offsets {
		if err := t.b.SetOffset(tp.Topic, tp.Partition, off); err != nil {
			return err
		}
	}
	return nil
}

// Changes reports every point write of the open transaction, the offsets it
// covers included (Batch.Changes).
func (t *TxStore) Changes(fn func(del bool, key, val []byte) error) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	b, err := t.open()
	if err != nil {
		return err
	}
	if err := t.seal(); err != nil {
		return err
	}
	return b.Changes(fn)
}

// Restore stages one changelog entry, as Changes reported it, as it is.
func (t *TxStore) Restore(del bool, key, val []byte) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	b, err := t.open()
	if err != nil {
		return err
	}
	if del {
		return b.Delete(key)
	}
	return b.Set(key, val)
}

// CommitAt makes the open transaction durable with the offsets it covers and
// positions (other topics' offsets, e.g. how far its changelogs go).
func (t *TxStore) CommitAt(positions map[TopicPartition]int64) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	b, err := t.open()
	if err != nil {
		return err
	}
	err = t.seal()
	t.b = nil
	for tp, off := range positions {
		if err == nil {
			err = b.SetOffset(tp.Topic, tp.Partition, off)
		}
	}
	if err != nil {
		b.Close()
		return err
	}
	if b.Empty() {
		return b.Close()
	}
	// Synced: a transaction commits once per commit interval, and without
	// a sync Pebble leaves log write errors (a full disk) unreported.
	if err := b.Commit(true); err != nil {
		return fmt.Errorf("state: commit transaction: %w", err)
	}
	return nil
}

// Abort drops the open transaction; a no-op without one.
func (t *TxStore) Abort() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.b != nil {
		_ = t.b.Close()
		t.b = nil
	}
}

// Offsets are the committed offsets of the store.
func (t *TxStore) Offsets() (map[TopicPartition]int64, error) { return t.s.Offsets() }

// ChangelogRoute places a change by the key layout (RouteKey).
func (t *TxStore) ChangelogRoute(key []byte, partitionOf func(tenant []byte) int32) (int32, bool, error) {
	return RouteKey(key, partitionOf)
}

// RouteKey says which changelog partition a change of the key layout
// belongs to and whether it is windowed: an offset key names its partition;
// a tenant or bucketed key goes to the partition of its tenant (partitionOf
// is the input producer's partitioner), and a bucketed key is windowed (it
// expires with its bucket, so it needs no tombstone). ok is false for any
// other key, which a store with keys of its own must route itself.
func RouteKey(key []byte, partitionOf func(tenant []byte) int32) (partition int32, windowed bool, err error) {
	if tp, ok := ParseOffsetKey(key); ok {
		return tp.Partition, false, nil
	}
	if tenant, bucketed, ok := KeyTenant(key); ok {
		return partitionOf(tenant), bucketed, nil
	}
	return 0, false, fmt.Errorf("state: key %q has no changelog partition", key)
}

// ScanKeys calls fn with every committed key, in order.
func (t *TxStore) ScanKeys(fn func(key []byte) error) error { return t.s.ScanKeys(fn) }

// Scan calls fn with every key under prefix and its value, in order,
// through the open transaction (or the committed store outside one). Key
// and value are valid only during the call.
func (t *TxStore) Scan(prefix []byte, fn func(key, val []byte) error) error {
	t.mu.Lock()
	var (
		it  *Iter
		err error
	)
	if t.b != nil {
		it, err = t.b.NewIter(prefix)
	} else {
		it, err = t.s.NewIter(prefix)
	}
	t.mu.Unlock()
	if err != nil {
		return err
	}
	defer it.Close()
	for ok := it.First(); ok; ok = it.Next() {
		if err := fn(it.Key(), it.Value()); err != nil {
			return err
		}
	}
	return it.Error()
}
