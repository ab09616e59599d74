package correlate

import (
	"sync/atomic"
	"testing"
	"time"
)

// After a rebalance a store still holds tenants whose facts partition moved
// to another process. Tick closes idle incidents only of the tenants this
// correlator owns; the others close once they are owned again.
func TestTickClosesOnlyOwnedTenants(t *testing.T) {
	facts := simFacts(t, 3000)
	tenants := map[string]bool{}
	for _, f := range facts {
		tenants[f.Tenant] = true
	}
	if len(tenants) < 2 {
		t.Fatalf("need two tenants, have %v", tenants)
	}
	var mine string
	for tn := range tenants {
		if mine == "" || tn < mine {
			mine = tn
		}
	}
	var all atomic.Bool
	c := smallCorrelator(t, WithIdleClose(time.Minute), WithLateness(time.Second), WithOwnership(func(tenant string) bool { return all.Load() || tenant == mine }))
	if err := c.Begin(); err != nil {
		t.Fatal(err)
	}
	for i, f := range facts {
		if _, err := c.ApplyOffset(0, f, "facts", int64(i)); err != nil {
			t.Fatal(err)
		}
	}
	// Move event time three days on (idle closing works in day buckets).
	var last time.Time
	for _, f := range facts {
		if f.MaxTime.After(last) {
			last = f.MaxTime
		}
	}
	if _, err := c.ApplyOffset(0, &Facts{Tenant: mine, MaxTime: last.Add(72 * time.Hour)}, "facts", int64(len(facts))); err != nil {
		t.Fatal(err)
	}
	far := time.Now().Add(365 * 24 * time.Hour)
	closed, err := c.Tick(far)
	if err != nil {
		t.Fatal(err)
	}
	if len(closed) == 0 {
		t.Fatal("no idle incident of the owned tenant was closed")
	}
	for _, inc := range closed {
		if inc.TenantID != mine {
			t.Fatalf("closed incident %s of tenant %s, which this correlator does not own", inc.ID, inc.TenantID)
		}
	}
	if err := c.Commit(); err != nil {
		t.Fatal(err)
	}
	all.Store(true)
	var later []Incident
	inTx(t, c, func() {
		if later, err = c.Tick(far); err != nil {
			t.Fatal(err)
		}
	})
	if len(later) == 0 {
		t.Fatal("the other tenant's idle incidents did not close once owned")
	}
	for _, inc := range later {
		if inc.TenantID == mine {
			t.Fatalf("incident %s closed twice", inc.ID)
		}
	}
}
