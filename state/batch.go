package state

import (
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/batchrepr"
)

// Batch is an atomic set of changes that also reads its own writes. Commit or
// Close it exactly once; it is not safe for concurrent use.
type Batch struct {
	b     *pebble.Batch
	s     *Store
	reads Reads
}

// Reads counts the reads a batch asked of the store: point Gets, iterators
// opened, and their positionings (First, SeekGE), which is where a
// transaction's time in the LSM goes (bench/correlate_test.go reports them
// per alert). Counting is a plain increment: a Batch is not shared.
type Reads struct {
	Gets, Iters, Seeks int64
}

// Add returns r plus o.
func (r Reads) Add(o Reads) Reads {
	return Reads{r.Gets + o.Gets, r.Iters + o.Iters, r.Seeks + o.Seeks}
}

// Reads are the reads made through the batch so far.
func (b *Batch) Reads() Reads { return b.reads }

// Writes is the number of changes staged in the batch (sets, deletions,
// range deletions).
func (b *Batch) Writes() int64 { return int64(b.b.Count()) }

// Get reads key through the batch (uncommitted changes first).
func (b *Batch) Get(key []byte) (val []byte, ok bool, err error) {
	b.reads.Gets++
	return get(b.b, key)
}

// Set stages key=val.
func (b *Batch) Set(key, val []byte) error {
	if err := b.b.Set(key, val, nil); err != nil {
		return fmt.Errorf("state: batch set %q: %w", key, err)
	}
	return nil
}

// Delete stages the removal of key.
func (b *Batch) Delete(key []byte) error {
	if err := b.b.Delete(key, nil); err != nil {
		return fmt.Errorf("state: batch delete %q: %w", key, err)
	}
	return nil
}

// DeleteRange stages the removal of every key in [start, end).
func (b *Batch) DeleteRange(start, end []byte) error {
	if err := b.b.DeleteRange(start, end, nil); err != nil {
		return fmt.Errorf("state: batch delete range: %w", err)
	}
	return nil
}

// DeletePrefix stages the removal of every key starting with prefix.
func (b *Batch) DeletePrefix(prefix []byte) error {
	return b.DeleteRange(prefix, PrefixEnd(prefix))
}

// NewIter iterates keys with prefix as the batch sees them.
func (b *Batch) NewIter(prefix []byte) (*Iter, error) {
	b.reads.Iters++
	it, err := newIter(b.b, prefix)
	if it != nil {
		it.seeks = &b.reads.Seeks
	}
	return it, err
}

// SetOffset records that the changes in this batch account for the input of
// topic/partition up to and including offset. Committing the batch commits
// the offset with the state, so after a crash Store.Offsets says exactly where
// to resume.
func (b *Batch) SetOffset(topic string, partition int32, offset int64) error {
	return b.Set(OffsetKey(topic, partition), appendUint64(nil, uint64(offset)))
}

// Len is the size of the staged changes in bytes.
func (b *Batch) Len() int { return b.b.Len() }

// Empty says whether nothing was staged.
func (b *Batch) Empty() bool { return b.b.Empty() }

// Commit applies the batch atomically; sync waits for the WAL to reach disk.
// The batch is released either way.
func (b *Batch) Commit(sync bool) error {
	wo := pebble.NoSync
	if sync {
		wo = pebble.Sync
	}
	err := b.s.write(func() error {
		if err := b.b.Commit(wo); err != nil {
			return fmt.Errorf("state: commit batch (%d bytes): %w", b.b.Len(), err)
		}
		return nil
	})
	if err == nil || !errors.Is(err, ErrFailed) {
		b.b.Close() // a batch whose commit failed fatally is Pebble's still
	}
	return err
}

// Close discards an uncommitted batch.
func (b *Batch) Close() error {
	if err := b.b.Close(); err != nil {
		return fmt.Errorf("state: close batch: %w", err)
	}
	return nil
}

// TopicPartition names one Kafka partition.
type TopicPartition struct {
	Topic     string
	Partition int32
}

// Offsets returns the last committed offset of every topic/partition that
// recorded one with Batch.SetOffset.
func (s *Store) Offsets() (map[TopicPartition]int64, error) {
	it, err := s.NewIter(offsetPrefix)
	if err != nil {
		return nil, err
	}
	defer it.Close()
	out := make(map[TopicPartition]int64)
	for ok := it.First(); ok; ok = it.Next() {
		tp, ok := ParseOffsetKey(it.Key())
		if !ok {
			return nil, fmt.Errorf("state: bad offset key %q", it.Key())
		}
		v := it.Value()
		if len(v) != 8 {
			return nil, fmt.Errorf("state: offset of %s/%d: %d bytes, want 8", tp.Topic, tp.Partition, len(v))
		}
		out[tp] = int64(readUint64(v))
	}
	if err := it.Error(); err != nil {
		return nil, err
	}
	return out, nil
}

// Changes calls fn for every point write staged in the batch, in the order
// they were staged: del is true for a deletion (val is nil then). Range
// deletions are not reported: they are bucket expiry, which every replica
// of the state does by itself (see LAYOUT.md). The slices are valid until
// the batch is committed or closed. This is what a changelog of the batch
// carries.
func (b *Batch) Changes(fn func(del bool, key, val []byte) error) error {
	r := batchrepr.Read(b.b.Repr())
	for {
		kind, k, v, ok, err := r.Next()
		if err != nil {
			return fmt.Errorf("state: read batch: %w", err)
		}
		if !ok {
			return nil
		}
		switch kind {
		case pebble.InternalKeyKindSet:
			err = fn(false, k, v)
		case pebble.InternalKeyKindDelete:
			err = fn(true, k, nil)
		case pebble.InternalKeyKindRangeDelete:
			continue
		default:
			err = fmt.Errorf("state: batch holds a %s write, which has no changelog form", kind)
		}
		if err != nil {
			return err
		}
	}
}
