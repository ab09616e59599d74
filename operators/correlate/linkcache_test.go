package correlate

import (
	"fmt"
	"testing"
	"time"

	"github.com/stitch-xdr/stitch/state"
)

// The cache of applied identity links skips only links a committed (or the
// open) transaction applied: an aborted transaction's links are applied
// again, and a repeated link changes nothing.
func TestLinkCacheFollowsCommits(t *testing.T) {
	c, st := openCorrelator(t, t.TempDir())
	defer st.Close()
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	link := &Facts{Tenant: "t1", MaxTime: at, Links: [][]string{{"user:upn:alice@contoso.com", "user:sid:S-1-5-21-1"}}}
	apply := func(commit bool) { applyTwice(t, c, link, commit, nil) }
	joined := func() bool {
		t.Helper()
		if err := c.Begin(); err != nil {
			t.Fatal(err)
		}
		defer c.Abort()
		tx := c.begin("t1")
		a, err := tx.find("user:upn:alice@contoso.com")
		if err != nil {
			t.Fatal(err)
		}
		b, err := tx.find("user:sid:S-1-5-21-1")
		if err != nil {
			t.Fatal(err)
		}
		return a == b
	}
	apply(false)
	if joined() || len(c.linked) != 0 {
		t.Fatalf("aborted link applied (cache %v)", c.linked)
	}
	apply(true)
	if !joined() || len(c.linked) != 1 {
		t.Fatalf("committed link not applied (cache %v)", c.linked)
	}
	apply(true) // a repeat: skipped, and still joined
	if !joined() {
		t.Fatal("repeat undid the link")
	}
}

// A sighting recorded by a committed transaction is not written (nor sent
// to the changelog) again; one of an aborted transaction is.
func TestSightingCacheFollowsCommits(t *testing.T) {
	c, st := openCorrelator(t, t.TempDir())
	defer st.Close()
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	f := &Facts{Tenant: "t1", MaxTime: at, Sightings: []Sighting{
		{Entity: "ip:203.0.113.7", Bucket: 20000, Observers: []string{"device:d1", "device:d2"}},
	}}
	changes := func(commit bool) int {
		t.Helper()
		n := 0
		applyTwice(t, c, f, commit, func() {
			if err := c.Changes(func(_ bool, key, _ []byte) error {
				if tenant, bucketed, ok := state.KeyTenant(key); ok && bucketed && string(tenant) == "t1" {
					n++
				}
				return nil
			}); err != nil {
				t.Fatal(err)
			}
		})
		return n
	}
	if n := changes(false); n != 2 {
		t.Fatalf("first transaction wrote %d sightings, want 2", n)
	}
	if n := changes(true); n != 2 {
		t.Fatalf("after an abort, %d sightings written, want 2 again", n)
	}
	if n := changes(true); n != 0 {
		t.Fatalf("committed sightings written again: %d", n)
	}
}

// applyTwice applies f twice in one transaction (the second a repeat the
// caches must see), calls before, then commits or aborts.
func applyTwice(t *testing.T, c *Correlator, f *Facts, commit bool, before func()) {
	t.Helper()
	if err := c.Begin(); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if _, err := c.Apply(0, f); err != nil {
			t.Fatal(err)
		}
	}
	if before != nil {
		before()
	}
	if !commit {
		c.Abort()
		return
	}
	if err := c.Commit(); err != nil {
		t.Fatal(err)
	}
}

// Once a bucket holds more than the threshold of devices seeing an entity,
// more observers of it there are not recorded: they cannot change whether
// it is prevalent.
func TestSaturatedBucketRecordsNoMoreObservers(t *testing.T) {
	c, st := openCorrelator(t, t.TempDir()) // threshold 10
	defer st.Close()
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	sighting := func(from, to int) *Facts {
		s := Sighting{Entity: "ip:203.0.113.7", Bucket: 20000}
		for i := from; i < to; i++ {
			s.Observers = append(s.Observers, fmt.Sprintf("device:d%d", i))
		}
		return &Facts{Tenant: "t1", MaxTime: at, Sightings: []Sighting{s}}
	}
	written := func(f *Facts) int {
		t.Helper()
		n := 0
		applyTwice(t, c, f, true, func() {
			if err := c.Changes(func(_ bool, key, _ []byte) error {
				if _, bucketed, ok := state.KeyTenant(key); ok && bucketed {
					n++
				}
				return nil
			}); err != nil {
				t.Fatal(err)
			}
		})
		return n
	}
	if n := written(sighting(0, 5)); n != 5 {
		t.Fatalf("%d of 5 observers written", n)
	}
	if n := written(sighting(5, 20)); n != 6 {
		t.Fatalf("%d observers written past 5, want 6 (to 11, over the threshold of 10)", n)
	}
	if n := written(sighting(20, 30)); n != 0 {
		t.Fatalf("%d observers written to a saturated bucket", n)
	}
}
