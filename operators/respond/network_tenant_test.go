package respond

import (
	"strings"
	"testing"
	"time"

	"github.com/stitch-xdr/stitch/operators/correlate"
)

// Network block on sight never crosses tenants. Tenant t1 blocks an IP
// address, a URL and a domain; tenants t2, t10 (whose id starts with
// t1's) and t reach, click and receive mail with exactly those addresses,
// and get no alert and no action. A record of t2 that carries an
// indicator naming t1 (a hostile or broken producer of the respond topic)
// is refused with a problem, and blocks nothing for either tenant. t1's
// own devices, accounts and messages then get their alerts and actions,
// all of t1.
func TestSightNeverCrossesTenants(t *testing.T) {
	tx := openLedger(t)
	r := New(tx, nil)
	apply := applier(t, r)
	at := time.Date(2024, 1, 2, 0, 0, 0, 0, time.UTC)
	for _, in := range []Indicator{
		{TenantID: "t1", Type: IndicatorIP, Value: "198.51.100.66", By: "soc", Time: at},
		{TenantID: "t1", Type: IndicatorURL, Value: "https://evil.example/login", By: "soc", Time: at},
		{TenantID: "t1", Type: IndicatorDomain, Value: "bad.example", By: "soc", Time: at},
	} {
		res := apply(&Signal{Tenant: "t1", Indicators: []Indicator{in}})
		if len(res.Actions) != 1 || res.Actions[0].TenantID != "t1" || res.Actions[0].Type != BlockIndicator {
			t.Fatalf("indicator %s: %+v", in.Value, res.Actions)
		}
	}
	// What every tenant's telemetry brings: a device reaching each
	// address, an account clicking each URL, a message carrying one.
	seen := func(tenant string, when time.Time) *Signal {
		return &Signal{Tenant: tenant,
			Network: []Reach{
				{Entity: "ip:198.51.100.66", Observers: []string{"device:id:d-" + tenant}, Time: when},
				{Entity: "url:https://evil.example/login", Observers: []string{"device:name:ws-" + tenant}, Time: when},
				{Entity: "url:https://cdn.bad.example/x", Observers: []string{"device:id:d-" + tenant}, Time: when},
				{Entity: "url:https://evil.example/login", Observers: []string{"user:upn:alice@" + tenant + ".example"}, Time: when},
			},
			Mail: []correlate.MailFact{
				{NetworkMessageID: "m-" + tenant, Recipient: "bob@" + tenant + ".example", Time: when},
				{NetworkMessageID: "m-" + tenant, URL: "https://cdn.bad.example/x", Time: when},
			}}
	}
	for _, other := range []string{"t2", "t10", "t"} {
		if res := apply(seen(other, at.Add(time.Hour))); len(res.Alerts)+len(res.Actions)+len(res.Problems) != 0 {
			t.Errorf("tenant %s, with t1's blocked addresses, got %d alerts, %d actions, %d problems: %+v",
				other, len(res.Alerts), len(res.Actions), len(res.Problems), res)
		}
	}

	// A t2 record carrying an indicator of t1, and one that removes t1's
	// IP block: refused, nothing blocked or unblocked.
	res := apply(&Signal{Tenant: "t2", Indicators: []Indicator{
		{TenantID: "t1", Type: IndicatorIP, Value: "203.0.113.9", By: "mallory", Time: at},
		{TenantID: "t1", Type: IndicatorIP, Value: "198.51.100.66", By: "mallory", Time: at, Removed: true},
	}})
	if len(res.Actions) != 0 || len(res.Problems) != 2 || !strings.Contains(res.Problems[0].Error, `tenant "t1"`) {
		t.Errorf("t2's record of t1's indicators: %d actions, problems %+v; want 2 problems naming the tenant", len(res.Actions), res.Problems)
	}
	for _, tenant := range []string{"t1", "t2"} {
		res := apply(&Signal{Tenant: tenant, Network: []Reach{{Entity: "ip:203.0.113.9", Observers: []string{"device:id:x-" + tenant}, Time: at.Add(time.Hour)}}})
		if len(res.Alerts)+len(res.Actions) != 0 {
			t.Errorf("the refused indicator blocks %s: %+v", tenant, res)
		}
	}

	// t1's own: every sighting alerts in t1 and acts on t1's targets only.
	res = apply(seen("t1", at.Add(time.Hour)))
	if len(res.Alerts) != 5 {
		t.Errorf("t1's sightings raised %d alerts, want 5 (3 devices, 1 click, 1 message): %+v", len(res.Alerts), res.Alerts)
	}
	if len(res.Actions) == 0 {
		t.Error("t1's sightings decided no action")
	}
	for _, a := range res.Actions {
		if a.TenantID != "t1" {
			t.Errorf("action %s %s is of tenant %s", a.Type, a.ID, a.TenantID)
		}
		for _, v := range []string{a.Target.DeviceID, a.Target.DeviceName, a.Target.Recipient, a.Target.UPN} {
			if v != "" && !strings.Contains(v, "t1") {
				t.Errorf("action %s of t1 targets %q", a.Type, v)
			}
		}
	}
	for _, al := range res.Alerts {
		for _, e := range al.Evidence {
			if d := e.Evidence.MdeDeviceID + e.Evidence.DeviceDNSName; d != "" && !strings.Contains(d, "t1") {
				t.Errorf("t1's alert %q names device %q", al.Info.Title, d)
			}
		}
	}
}

// applier is r.Apply that fails the test on an error.
func applier(t *testing.T, r *Responder) func(*Signal) Result {
	return func(s *Signal) Result {
		t.Helper()
		res, err := r.Apply(s)
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
}
