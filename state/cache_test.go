package state

import (
	"fmt"
	"testing"
)

// Stores opened with one SharedCache read through it; the cache goes with
// the last store that closes, and a store opened after that gets a new one.
func TestSharedCacheOutlivesNoStore(t *testing.T) {
	c := NewSharedCache(8 << 20) // room for the memtables' reservations (1 MiB or less each) and blocks
	dir1, dir2 := t.TempDir(), t.TempDir()
	fill := func(s *Store) {
		t.Helper()
		b := s.NewBatch()
		for i := range 100 {
			if err := b.Set(fmt.Appendf(nil, "k%03d", i), make([]byte, 100)); err != nil {
				t.Fatal(err)
			}
		}
		if err := b.Commit(false); err != nil {
			t.Fatal(err)
		}
		if err := s.Flush(); err != nil {
			t.Fatal(err)
		}
		if _, ok, err := s.Get([]byte("k050")); !ok || err != nil {
			t.Fatalf("get: %v %v", ok, err)
		}
	}
	for round := range 2 {
		a, err := Open(dir1, WithSharedCache(c), WithMemTableSize(1<<20))
		if err != nil {
			t.Fatal(err)
		}
		b, err := Open(dir2, WithSharedCache(c), WithMemTableSize(1<<20))
		if err != nil {
			t.Fatal(err)
		}
		fill(a)
		if ma, mb := a.Metrics(), b.Metrics(); ma.CacheBytes == 0 || ma.CacheBytes != mb.CacheBytes {
			t.Fatalf("round %d: cache bytes %d and %d: not one cache", round, ma.CacheBytes, mb.CacheBytes)
		}
		fill(b)
		if err := a.Close(); err != nil {
			t.Fatal(err)
		}
		if _, ok, err := b.Get([]byte("k050")); !ok || err != nil {
			t.Fatalf("round %d: the other store's cache went with the first close: %v %v", round, ok, err)
		}
		if err := b.Close(); err != nil {
			t.Fatal(err)
		}
	}
}
