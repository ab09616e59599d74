package state

import (
	"slices"
	"testing"
)

// A TxStore's writes are visible inside its transaction only, reach the
// store with the offsets they cover on CommitAt, vanish on Abort, and are
// reported by Changes in the form a replica replays with Restore.
func TestTxStoreCommitAbortAndReplay(t *testing.T) {
	open := func() *TxStore {
		s, err := Open(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return NewTxStore(s)
	}
	src := open()
	k := TenantKey(nil, 'n', "t1")
	if err := src.Set(k, []byte("x")); err == nil {
		t.Fatal("a write outside a transaction was accepted")
	}
	if err := src.Begin(); err != nil {
		t.Fatal(err)
	}
	if err := src.Set(k, []byte("1")); err != nil {
		t.Fatal(err)
	}
	if err := src.Skip("in", 2, 41); err != nil {
		t.Fatal(err)
	}
	if v, ok, _ := src.Get(k); !ok || string(v) != "1" {
		t.Fatalf("read your write: %q %v", v, ok)
	}
	type change struct {
		del  bool
		k, v string
	}
	var changes []change
	if err := src.Changes(func(del bool, key, val []byte) error {
		changes = append(changes, change{del, string(key), string(val)})
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(changes) != 2 || changes[0].k != string(k) || changes[1].k != string(OffsetKey("in", 2)) {
		t.Fatalf("changes %v: want the write, then the offset it covers", changes)
	}
	if err := src.CommitAt(map[TopicPartition]int64{{Topic: "cl", Partition: 2}: 7}); err != nil {
		t.Fatal(err)
	}
	offs, _ := src.Offsets()
	if offs[TopicPartition{"in", 2}] != 41 || offs[TopicPartition{"cl", 2}] != 7 {
		t.Fatalf("offsets after commit: %v", offs)
	}

	// An aborted transaction leaves nothing.
	src.Begin()
	src.Delete(k)
	src.Abort()
	if v, ok, _ := src.Get(k); !ok || string(v) != "1" {
		t.Fatalf("after abort: %q %v, want the committed 1", v, ok)
	}

	// A replica fed the changes holds the same.
	dst := open()
	dst.Begin()
	for _, c := range changes {
		if err := dst.Restore(c.del, []byte(c.k), []byte(c.v)); err != nil {
			t.Fatal(err)
		}
	}
	if err := dst.CommitAt(nil); err != nil {
		t.Fatal(err)
	}
	if v, ok, _ := dst.Get(k); !ok || string(v) != "1" {
		t.Fatalf("replica: %q %v", v, ok)
	}
	for _, key := range [][]byte{k, OffsetKey("in", 5), BucketKey(nil, 'x', 3, "t1")} {
		p, windowed, err := dst.ChangelogRoute(key, func(tenant []byte) int32 { return int32(len(tenant)) })
		if err != nil {
			t.Fatal(err)
		}
		want := []int32{2, 5, 2}[slices.IndexFunc([][]byte{k, OffsetKey("in", 5), BucketKey(nil, 'x', 3, "t1")}, func(b []byte) bool { return string(b) == string(key) })]
		if p != want || windowed != (key[0] == nsBucketd) {
			t.Errorf("route %q: partition %d windowed %v", key, p, windowed)
		}
	}
	if _, _, err := RouteKey([]byte("zz"), nil); err == nil {
		t.Error("a key outside the layout was routed")
	}
}
