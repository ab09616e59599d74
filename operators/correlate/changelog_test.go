package correlate

import (
	"testing"
	"time"

	"github.com/stitch-xdr/stitch/state"
)

// Every write a transaction makes, in every space (alerts, incidents,
// identity links and classes, entity index, sightings, early evidence,
// idle index, offsets, watermarks), has a changelog partition: its tenant's,
// or the partition an offset or watermark names. Restore turns the changes
// back into the same store.
func TestChangesRouteAndRestore(t *testing.T) {
	open := func() *Correlator {
		st, err := state.Open(t.TempDir(), state.WithCacheSize(1<<20), state.WithMemTableSize(1<<20))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		c, err := New(st, WithIdleClose(time.Hour), WithWindow(time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	at := time.Date(2024, 6, 3, 8, 0, 0, 0, time.UTC)
	facts := func(tenant string, at time.Time, id string) *Facts {
		return &Facts{Tenant: tenant, MaxTime: at,
			Links:     [][]string{{"user:upn:alice@contoso.com", "user:sid:S-1-5-21-1"}},
			Sightings: []Sighting{{Entity: "file:sha256:" + id, Bucket: state.Bucket(at, PrevalenceBucket), Observers: []string{"device:name:h1"}}},
			Evidence: []EvidenceFact{{AlertID: id + "-late", Time: at, Entities: []string{"device:name:h1"},
				Evidence: Evidence{ODataType: GraphEvidenceType("Machine"), CreatedDateTime: at}}},
			Alerts: []AlertFact{{ID: id, Time: at, Title: "t"}},
		}
	}
	partOf := map[string]int32{"contoso": 0, "fabrikam": 1}
	src, dst := open(), open()
	seen := map[byte]bool{}
	seenMark := false
	for i, step := range []struct {
		tenant string
		at     time.Time
	}{{"contoso", at}, {"fabrikam", at}, {"contoso", at.Add(26 * time.Hour)}} {
		if err := src.Begin(); err != nil {
			t.Fatal(err)
		}
		p := partOf[step.tenant]
		f := facts(step.tenant, step.at, "a"+string(rune('0'+i)))
		f.Evidence = append(f.Evidence, EvidenceFact{AlertID: f.Alerts[0].ID, Time: step.at, Entities: []string{"device:name:h1", "user:upn:alice@contoso.com"},
			Evidence: Evidence{ODataType: GraphEvidenceType("Machine"), CreatedDateTime: step.at}})
		if _, err := src.ApplyOffset(p, f, "facts", int64(i)); err != nil {
			t.Fatal(err)
		}
		if _, err := src.Tick(time.Time{}); err != nil {
			t.Fatal(err)
		}
		if err := dst.Begin(); err != nil {
			t.Fatal(err)
		}
		err := src.Changes(func(del bool, k, v []byte) error {
			got, _, err := ChangelogRoute(k, func(tenant []byte) int32 { return partOf[string(tenant)] })
			if err != nil {
				return err
			}
			if tp, ok := state.ParseOffsetKey(k); ok && tp.Partition != p {
				t.Errorf("offset key %q routed to %d", k, got)
			}
			if wp, ok := state.ParseWatermarkKey(k); ok {
				seenMark = true
				if got != wp || wp != p {
					t.Errorf("watermark key %q of partition %d routed to %d", k, wp, got)
				}
			}
			if tenant, _, ok := state.KeyTenant(k); ok && got != partOf[string(tenant)] {
				t.Errorf("key %q of tenant %s routed to %d", k, tenant, got)
			}
			if len(k) > 1 {
				seen[k[1]] = true
			}
			return dst.Restore(del, k, v)
		})
		if err != nil {
			t.Fatal(err)
		}
		if err := src.Commit(); err != nil {
			t.Fatal(err)
		}
		if err := dst.Commit(); err != nil {
			t.Fatal(err)
		}
	}
	for _, space := range []byte{spaceAlerts, spaceIncidents, spaceIndex, spaceSightings, spacePending, spaceIdle, 'u', 'm'} {
		if !seen[space] {
			t.Errorf("no change of space %q: the test does not cover it", space)
		}
	}
	if !seenMark {
		t.Error("no watermark change: the test does not cover them")
	}
	if src.Stats().Closed == 0 {
		t.Error("nothing idle-closed: deletions are not covered")
	}
	// Bucket expiry is not in the changes: both stores expire by themselves,
	// and close the same incidents (none: a deletion not restored would
	// close one again).
	var closed [2]int
	for i, c := range []*Correlator{src, dst} {
		inTx(t, c, func() {
			incs, err := c.Tick(time.Time{})
			if err != nil {
				t.Fatal(err)
			}
			closed[i] = len(incs)
		})
	}
	if closed[0] != closed[1] {
		t.Fatalf("a tick after restore closed %d incidents, the source %d", closed[1], closed[0])
	}
	dump := func(c *Correlator) map[string]string {
		it, err := c.store.NewIter(nil)
		if err != nil {
			t.Fatal(err)
		}
		defer it.Close()
		out := map[string]string{}
		for ok := it.First(); ok; ok = it.Next() {
			out[string(it.Key())] = string(it.Value())
		}
		return out
	}
	a, b := dump(src), dump(dst)
	if len(a) != len(b) {
		t.Fatalf("restored store has %d keys, source %d", len(b), len(a))
	}
	for k, v := range a {
		if b[k] != v {
			t.Fatalf("key %q: restored %q, source %q", k, b[k], v)
		}
	}
	if src.clock.now() != dst.clock.now() {
		t.Errorf("watermark: restored %v, source %v", dst.clock.now(), src.clock.now())
	}
}
