package view

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stitch-xdr/stitch/operators/correlate"
)

// tenantScope sees one tenant.
type tenantScope string

func (s tenantScope) SeesTenant(t string) bool  { return string(s) == t }
func (tenantScope) SeesAnyDevice([]string) bool { return true }
func (tenantScope) SeesDevice(string) bool      { return true }

func manyIncidents(n int) *Index {
	x := New()
	at := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	sev := []string{"low", "medium", "high"}
	for i := range n {
		t := at.Add(time.Duration(i%500) * time.Minute) // many equal times: ties break by id
		x.PutIncident(correlate.Incident{ID: fmt.Sprintf("inc-%05d", i), TenantID: fmt.Sprintf("t%d", i%2), Status: correlate.StatusActive,
			Severity: sev[i%3], Version: 1, CreatedDateTime: t, LastUpdateDateTime: t, DisplayName: fmt.Sprintf("incident %d", i),
			ImpactedAssets: correlate.ImpactedAssets{Devices: []string{fmt.Sprintf("ws-%d", i%300)}, IPs: []string{fmt.Sprintf("10.0.%d.%d", i%7, i%250)}}})
	}
	return x
}

// Paging in either direction visits every match once, in order, and the
// counts are over every match; a tenant's scope holds its incidents only.
func TestPagesVisitEveryIncidentOnce(t *testing.T) {
	x := manyIncidents(1000)
	for _, sort := range []string{"lastUpdate", "-lastUpdate", "severity", "-alerts", "created"} {
		all, err := x.ListIncidents(tenantScope("t1"), Filter{}, Page{Sort: sort, Limit: 1000})
		if err != nil {
			t.Fatal(err)
		}
		desc := sort[0] != '-'
		for i := 1; i < len(all.Incidents); i++ {
			a, b := all.Incidents[i-1], all.Incidents[i]
			ka, kb := sortKey(&a, strings.TrimPrefix(sort, "-")), sortKey(&b, strings.TrimPrefix(sort, "-"))
			if ka == kb && (a.ID < b.ID) != desc || ka != kb && (ka > kb) != desc {
				t.Fatalf("%s: %s (%s) before %s (%s)", sort, a.ID, ka, b.ID, kb)
			}
		}
		var paged []string
		cursor := ""
		for {
			pg, err := x.ListIncidents(tenantScope("t1"), Filter{}, Page{Sort: sort, Limit: 37, Cursor: cursor})
			if err != nil {
				t.Fatal(err)
			}
			if pg.Total != 500 || pg.Counts["status"][correlate.StatusActive] != 500 {
				t.Fatalf("%s: total %d counts %v", sort, pg.Total, pg.Counts)
			}
			for _, s := range pg.Incidents {
				paged = append(paged, s.ID)
			}
			if cursor = pg.NextCursor; cursor == "" {
				break
			}
		}
		var whole []string
		for _, s := range all.Incidents {
			if s.TenantID != "t1" {
				t.Fatalf("scope t1 sees %s of %s", s.ID, s.TenantID)
			}
			whole = append(whole, s.ID)
		}
		if len(whole) != 500 || strings.Join(paged, ",") != strings.Join(whole, ",") {
			t.Errorf("%s: pages of 37 differ from one page (%d and %d incidents)", sort, len(paged), len(whole))
		}
	}
	if _, err := x.ListIncidents(Everything, Filter{}, Page{Limit: 1, Cursor: "%%%"}); err != ErrBadCursor {
		t.Errorf("bad cursor: %v", err)
	}
	pg, _ := x.ListIncidents(Everything, Filter{Severities: []string{"high"}, Entity: "device:ws-5"}, Page{Limit: 500})
	for _, s := range pg.Incidents {
		if s.Severity != "high" || s.ImpactedAssets.Devices[0] != "ws-5" {
			t.Errorf("filter let %+v through", s)
		}
	}
	if pg.Total == 0 {
		t.Error("the filter found nothing")
	}
	found := x.Search(tenantScope("t0"), "10.0.2.", "", 5)
	if len(found.Results) != 5 || found.Exact != nil {
		t.Errorf("search: %+v", found)
	}
	if found = x.Search(Everything, "10.0.2.2", "", 5); found.Exact == nil || found.Exact.Type != "ip" {
		t.Errorf("an exact IP: %+v", found.Exact)
	}
	// A device however it is written: WS-5, ws-5.contoso.local.
	for _, id := range []string{"ws-5", "WS-5", "ws-5.contoso.local"} {
		if page, ok := x.Entity(tenantScope("t1"), Ref{Type: "device", ID: id}); !ok || page.Entity.ID != "ws-5" || len(page.Incidents) == 0 {
			t.Errorf("device %s: %v %+v", id, ok, page.Entity)
		}
	}
}

// The queue of 10k incidents answers a page, a filtered page and a search
// in a few milliseconds.
func BenchmarkQueueOf10kIncidents(b *testing.B) {
	x := manyIncidents(10000)
	b.ResetTimer()
	for range b.N {
		if _, err := x.ListIncidents(Everything, Filter{}, Page{Limit: 50}); err != nil {
			b.Fatal(err)
		}
		x.ListIncidents(Everything, Filter{Severities: []string{"high"}, Text: "incident 9"}, Page{Limit: 50, Sort: "severity"})
		x.Search(Everything, "ws-1", "", 10)
	}
}
