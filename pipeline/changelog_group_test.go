package pipeline

import (
	"encoding/binary"
	"fmt"
	"slices"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/stitch-xdr/stitch/operators/correlate"
	"github.com/stitch-xdr/stitch/state"
)

// changesStore is a StateStore whose open transaction is a fixed list of
// changes (the correlator's routing and grouping), and whose Restore
// records what a restore applies.
type changesStore struct {
	StateStore
	changes  [][2][]byte // key, value (nil value: a deletion)
	restored map[string]string
}

func (s *changesStore) Changes(fn func(del bool, key, val []byte) error) error {
	for _, c := range s.changes {
		if err := fn(c[1] == nil, c[0], c[1]); err != nil {
			return err
		}
	}
	return nil
}

func (s *changesStore) ChangelogRoute(key []byte, partitionOf func([]byte) int32) (int32, bool, error) {
	return correlate.ChangelogRoute(key, partitionOf)
}

func (s *changesStore) ChangelogGroup(key, val []byte) int { return correlate.SightingGroup(key, val) }

func (s *changesStore) Restore(del bool, key, val []byte) error {
	if del {
		delete(s.restored, string(key))
	} else {
		s.restored[string(key)] = string(val)
	}
	return nil
}

// TestGroupedSightingsRestoreAsWritten: a transaction's sightings (more
// than one grouped record holds) travel as few window-changelog records,
// and a restore of what was produced sets exactly the keys the
// transaction wrote; other windowed and timeless changes travel as before.
func TestGroupedSightingsRestoreAsWritten(t *testing.T) {
	const n = 5000
	st := &changesStore{}
	want := map[string]string{}
	set := func(k []byte, v []byte) {
		st.changes = append(st.changes, [2][]byte{k, v})
		want[string(k)] = string(v)
	}
	bucket := int64(19877)
	for i := range n {
		tenant := fmt.Sprintf("tenant-%d", i%2)
		k := state.AppendString(state.BucketKey(nil, 'v', bucket, tenant), fmt.Sprintf("ip:10.0.%d.%d", i/250, i%250))
		set(append(k, fmt.Sprintf("device:name:host-%d", i%97)...), []byte{})
	}
	// An entity index entry (windowed, with a value): not grouped.
	set(state.AppendString(state.BucketKey(nil, 'e', bucket, "tenant-0"), "ip:10.0.0.1"), []byte("x"))
	// The offsets the transaction reached, on both partitions.
	for p := range int32(2) {
		set(state.OffsetKey("facts", p), binary.BigEndian.AppendUint64(nil, uint64(100+p)))
	}

	w := newChangelogWriter([]string{"cl", "wcl"}, "facts")
	var recs []*kgo.Record
	got, err := w.emit(st, 2, func(r *kgo.Record) { recs = append(recs, r) })
	if err != nil {
		t.Fatal(err)
	}
	if got != len(recs) {
		t.Fatalf("emit says %d records, produced %d", got, len(recs))
	}
	grouped, keys := 0, map[string]bool{}
	for _, r := range recs {
		if len(r.Value) > 0 && r.Value[0] == changelogValueGroup {
			grouped++
			if keys[string(r.Key)] {
				t.Fatalf("two grouped records share the key %q: compaction would drop one", r.Key)
			}
			keys[string(r.Key)] = true
			if len(r.Value) > maxGroupBytes+1024 {
				t.Fatalf("grouped record of %d bytes", len(r.Value))
			}
		}
	}
	// 5,000 sightings of ~40 bytes over two tenants: a few records each.
	if grouped < 4 || len(recs) > 20 {
		t.Fatalf("%d records (%d grouped) for %d sightings", len(recs), grouped, n)
	}

	st.restored = map[string]string{}
	shown := map[state.TopicPartition]int64{}
	for _, r := range recs {
		if err := applyChange(st, "facts", r, shown); err != nil {
			t.Fatal(err)
		}
	}
	for k, v := range want {
		if _, ok := state.ParseOffsetKey([]byte(k)); ok {
			continue // offsets are not applied as writes
		}
		if got, ok := st.restored[k]; !ok || got != v {
			t.Fatalf("key %q restored as %q (%v), want %q", k, got, ok, v)
		}
	}
	if len(st.restored) != len(want)-2 {
		extra := []string{}
		for k := range st.restored {
			if _, ok := want[k]; !ok {
				extra = append(extra, k)
			}
		}
		slices.Sort(extra)
		t.Fatalf("restore set %d keys, want %d; extra: %q", len(st.restored), len(want)-2, extra)
	}

	// A second transaction that reached a later offset: grouped records
	// under other keys.
	st.changes = st.changes[len(st.changes)-2:]
	k := state.AppendString(state.BucketKey(nil, 'v', bucket, "tenant-0"), "ip:10.9.9.9")
	st.changes = append(st.changes, [2][]byte{append(slices.Clone(k), "device:name:a"...), {}}, [2][]byte{append(k, "device:name:b"...), {}})
	for p := range int32(2) {
		st.changes = append(st.changes, [2][]byte{state.OffsetKey("facts", p), binary.BigEndian.AppendUint64(nil, uint64(200+p))})
	}
	recs = recs[:0]
	if _, err := w.emit(st, 2, func(r *kgo.Record) { recs = append(recs, r) }); err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		if keys[string(r.Key)] {
			t.Fatalf("a later transaction's record has an earlier one's key %q", r.Key)
		}
	}
}
