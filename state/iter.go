package state

import (
	"fmt"

	"github.com/cockroachdb/pebble/v2"
)

// Iter walks the keys under one prefix in order. Key and Value are valid until
// the next move; copy them to keep them.
type Iter struct {
	it     *pebble.Iterator
	prefix []byte
	seeks  *int64 // its batch's count of positionings (Batch.Reads); nil for a store's
}

type iterSource interface {
	NewIter(*pebble.IterOptions) (*pebble.Iterator, error)
}

func newIter(src iterSource, prefix []byte) (*Iter, error) {
	it, err := src.NewIter(&pebble.IterOptions{LowerBound: prefix, UpperBound: PrefixEnd(prefix)})
	if err != nil {
		return nil, fmt.Errorf("state: iterate %q: %w", prefix, err)
	}
	return &Iter{it: it, prefix: prefix}, nil
}

// First moves to the first key; false when there is none.
func (i *Iter) First() bool {
	i.count()
	return i.it.First()
}

// SeekGE moves to the first key >= key (within the prefix).
func (i *Iter) SeekGE(key []byte) bool {
	i.count()
	return i.it.SeekGE(key)
}

func (i *Iter) count() {
	if i.seeks != nil {
		*i.seeks++
	}
}

// Next moves to the next key; false at the end.
func (i *Iter) Next() bool { return i.it.Next() }

// Valid says whether the iterator is at a key.
func (i *Iter) Valid() bool { return i.it.Valid() }

// Key is the current key.
func (i *Iter) Key() []byte { return i.it.Key() }

// Value is the current value.
func (i *Iter) Value() []byte {
	v, err := i.it.ValueAndErr()
	if err != nil {
		return nil
	}
	return v
}

// Error reports an error met while iterating.
func (i *Iter) Error() error {
	if err := i.it.Error(); err != nil {
		return fmt.Errorf("state: iterate %q: %w", i.prefix, err)
	}
	return nil
}

// Close releases the iterator.
func (i *Iter) Close() error {
	if err := i.it.Close(); err != nil {
		return fmt.Errorf("state: close iterator: %w", err)
	}
	return nil
}

// ScanKeys calls fn with every key of the store, in order (listing a
// store's keys: a rebuild of stale partitions, inspection).
func (s *Store) ScanKeys(fn func(key []byte) error) error {
	it, err := s.NewIter(nil)
	if err != nil {
		return err
	}
	defer it.Close()
	for ok := it.First(); ok; ok = it.Next() {
		if err := fn(it.Key()); err != nil {
			return err
		}
	}
	return it.Error()
}
