package pipeline

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/stitch-xdr/stitch/state"
)

// A store that last caught up with its changelog longer ago than the
// changelog keeps tombstones may hold keys deleted meanwhile: on assignment
// such partitions are rebuilt from the changelog alone. A key the changelog
// does not have (as a key whose tombstone was compacted away) is gone after
// the rebuild, and the state the changelog has is back. A store that caught
// up recently is restored incrementally and keeps its keys.
func TestStalePartitionsAreRebuilt(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the pipeline three times")
	}
	ctx, addrs, cfg := countingSetup(t, 2)
	cfg.State.Dir = t.TempDir()
	run := func() { runCounting(ctx, t, cfg, addrs, []string{"t-a", "t-b", "t-c"}, 1) }
	ghost := state.TenantKey(nil, 'n', "t-ghost")
	// edit plants the ghost key, and with age sets when the store last
	// caught up with each changelog partition.
	edit := func(age time.Duration) {
		st, err := state.Open(filepath.Join(cfg.State.Dir, "counts"))
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		bt := st.NewBatch()
		bt.Set(ghost, []byte{0, 0, 0, 0, 0, 0, 0, 9})
		if age > 0 {
			for p := range int32(2) {
				bt.SetOffset("count.counts-changelog"+syncedSuffix, p, time.Now().Add(-age).UnixMilli())
			}
		}
		if err := bt.Commit(true); err != nil {
			t.Fatal(err)
		}
	}
	has := func(key []byte) bool {
		st, err := state.Open(filepath.Join(cfg.State.Dir, "counts"))
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		_, ok, err := st.Get(key)
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	counts := func() string {
		st, err := state.Open(filepath.Join(cfg.State.Dir, "counts"))
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		var out string
		for _, tn := range []string{"t-a", "t-b", "t-c"} {
			v, _, _ := st.Get(state.TenantKey(nil, 'n', tn))
			out += tn + "=" + string(rune('0'+v[len(v)-1])) + " "
		}
		return out
	}

	run()
	// Caught up a moment ago: an incremental restore keeps what it has.
	edit(0)
	run()
	if !has(ghost) {
		t.Fatal("a store that caught up recently lost a key: it was rebuilt without need")
	}
	// Caught up 30 days ago (tombstones live 7): rebuilt from the changelog.
	edit(30 * 24 * time.Hour)
	run()
	if has(ghost) {
		t.Fatal("a stale store kept a key its changelog does not have: it was not rebuilt")
	}
	if got, want := counts(), "t-a=3 t-b=3 t-c=3 "; got != want {
		t.Fatalf("counts after the rebuild: %s, want %s", got, want)
	}
}
