package state

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/cockroachdb/pebble/v2"
)

// A store written by an earlier release (Pebble's default table options: no
// filters, L0 compacted at 2 sublevels) opens with the current ones, keeps
// every key, takes writes, and the tables it writes from then on carry
// filters that answer Gets of absent keys. (Pebble's Get does not consult
// the last level's filters, so the check is on a flushed L0 table.)
func TestOpensStoreWrittenWithoutFilters(t *testing.T) {
	dir := t.TempDir()
	key := func(i int) []byte { return []byte(fmt.Sprintf("t/inc/%08x", uint32(i)*2654435761)) }
	val := func(i int) []byte { return bytes.Repeat([]byte{byte(i)}, 100) }

	old, err := pebble.Open(dir, &pebble.Options{FormatMajorVersion: pebble.FormatNewest, Logger: quietLogger{}})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 20_000; i++ {
		if err := old.Set(key(i), val(i), pebble.NoSync); err != nil {
			t.Fatal(err)
		}
	}
	if err := old.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := old.Close(); err != nil {
		t.Fatal(err)
	}

	s, err := Open(dir)
	if err != nil {
		t.Fatalf("open a store written with the old options: %v", err)
	}
	defer s.Close()
	for i := 0; i < 20_000; i += 997 {
		v, ok, err := s.Get(key(i))
		if err != nil || !ok || !bytes.Equal(v, val(i)) {
			t.Fatalf("key %d after reopening: ok=%v err=%v", i, ok, err)
		}
	}
	// Misses against the old tables read without filters: none used.
	for i := 20_000; i < 21_000; i++ {
		if _, ok, err := s.Get(key(i)); ok || err != nil {
			t.Fatalf("absent key %d: ok=%v err=%v", i, ok, err)
		}
	}
	if f := s.db.Metrics().Filter; f.Hits+f.Misses != 0 {
		t.Fatalf("old tables have no filters, yet %d filter probes", f.Hits+f.Misses)
	}
	for i := 21_000; i < 23_000; i++ {
		if err := s.Set(key(i), val(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Flush(); err != nil {
		t.Fatal(err)
	}
	// The new table has a filter: misses are answered by it.
	for i := 20_001; i < 21_000; i++ {
		if _, ok, err := s.Get(key(i)); ok || err != nil {
			t.Fatalf("absent key %d: ok=%v err=%v", i, ok, err)
		}
	}
	if f := s.db.Metrics().Filter; f.Hits < 900 {
		t.Fatalf("after a flush, %d of 999 absent keys were answered by a filter (misses %d)", f.Hits, f.Misses)
	}
	if err := s.Compact(); err != nil {
		t.Fatal(err)
	}
	for _, i := range []int{0, 12_345, 19_999, 21_000, 22_999} {
		if v, ok, err := s.Get(key(i)); err != nil || !ok || !bytes.Equal(v, val(i)) {
			t.Fatalf("key %d after a compaction: ok=%v err=%v", i, ok, err)
		}
	}
}
