package correlate

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// filterRun applies facts in transactions of every facts (the first
// attempt of every third one applied, ticked and aborted, then redone),
// and returns every output, encoded, in order.
func filterRun(t *testing.T, facts []*Facts, every int, opts ...Option) []string {
	t.Helper()
	c, st := openCorrelator(t, t.TempDir(), opts...)
	defer st.Close()
	var out []string
	for i, tx := 0, 0; i < len(facts); i, tx = i+every, tx+1 {
		end := min(i+every, len(facts))
		for attempt := range 2 {
			if attempt == 0 && tx%3 != 1 {
				continue
			}
			if err := c.Begin(); err != nil {
				t.Fatal(err)
			}
			var got []string
			for j := i; j < end; j++ {
				incs, err := c.ApplyOffset(int32(j%2), facts[j], "facts", int64(j))
				if err != nil {
					t.Fatal(err)
				}
				got = append(got, encode(t, incs)...)
			}
			incs, err := c.Tick(facts[end-1].MaxTime)
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, encode(t, incs)...)
			if attempt == 0 {
				c.Abort()
				continue
			}
			if err := c.Commit(); err != nil {
				t.Fatal(err)
			}
			out = append(out, got...)
		}
	}
	if err := c.Verify(); err != nil {
		t.Errorf("invariants: %v", err)
	}
	return out
}

// TestFiltersChangeNoOutput: the lookup filters only spare reads of what
// is not there, and the recent values only reads of what is. With neither,
// the outputs are byte for byte those with both (the default), with a
// filter budget so small that groups go full, with one layer a group
// (built again from the store whenever it fills), and with recent values
// of 4 KiB a generation (they turn over every few transactions), aborted
// transactions included.
func TestFiltersChangeNoOutput(t *testing.T) {
	streams := map[string][]*Facts{"simulator": simFacts(t, 6000)}
	s := synthStream(rand.New(rand.NewPCG(5, 17)), 3, 12)
	streams["links first"] = arrange(s, delays(s, func(it item) time.Duration {
		if !it.link {
			return mmLateness - time.Minute
		}
		return 0
	}), false, false)
	streams["evidence before its alert"] = arrange(s, delays(s, func(it item) time.Duration {
		if it.alert == "" && !it.link {
			return mmLateness - time.Minute
		}
		return 0
	}), false, false)
	for name, facts := range streams {
		for _, every := range []int{1, 5} {
			want := filterRun(t, facts, every, withFilters(-1, 1), withRecent(0))
			for _, f := range []struct {
				what                   string
				budget, layers, recent int
			}{
				{"default", maxFilterBytes, maxFilterLayers, maxRecentBytes},
				{"4 KiB", 4 << 10, maxFilterLayers, 0},
				{"one layer", maxFilterBytes, 1, 0},
				{"off, recent values 4 KiB", -1, 1, 4 << 10},
			} {
				what := fmt.Sprintf("%s, %d a transaction, filters %s", name, every, f.what)
				sameOutputs(t, what, filterRun(t, facts, every, withFilters(f.budget, f.layers), withRecent(f.recent)), want)
			}
		}
	}
}

// TestFiltersSeeRestoredState: a replica whose filters were built from its
// own state restores another replica's transactions (Changes, Restore) and
// then correlates as that one does: the restored units reach its filters.
func TestFiltersSeeRestoredState(t *testing.T) {
	facts := simFacts(t, 6000)
	a, sta := openCorrelator(t, t.TempDir())
	defer sta.Close()
	b, stb := openCorrelator(t, t.TempDir())
	defer stb.Close()
	apply := func(c *Correlator, from, to int) []string {
		var out []string
		inTx(t, c, func() {
			for j := from; j < to; j++ {
				incs, err := c.ApplyOffset(0, facts[j], "facts", int64(j))
				if err != nil {
					t.Fatal(err)
				}
				out = append(out, encode(t, incs)...)
			}
		})
		return out
	}
	third := len(facts) / 3
	// Both build their filters from the same state.
	for i := 0; i < third; i += 50 {
		sameOutputs(t, "same start", apply(b, i, min(i+50, third)), apply(a, i, min(i+50, third)))
	}
	// a goes on; b restores a's transactions instead of applying them.
	for i := third; i < 2*third; i += 50 {
		if err := a.Begin(); err != nil {
			t.Fatal(err)
		}
		for j := i; j < min(i+50, 2*third); j++ {
			if _, err := a.ApplyOffset(0, facts[j], "facts", int64(j)); err != nil {
				t.Fatal(err)
			}
		}
		type change struct {
			del      bool
			key, val []byte
		}
		var changes []change
		if err := a.Changes(func(del bool, key, val []byte) error {
			changes = append(changes, change{del, slices.Clone(key), slices.Clone(val)})
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if err := a.Commit(); err != nil {
			t.Fatal(err)
		}
		inTx(t, b, func() {
			for _, ch := range changes {
				if err := b.Restore(ch.del, ch.key, ch.val); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
	for i := 2 * third; i < len(facts); i += 50 {
		sameOutputs(t, "after the restore", apply(b, i, min(i+50, len(facts))), apply(a, i, min(i+50, len(facts))))
	}
}
