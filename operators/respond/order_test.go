package respond

import (
	"encoding/json"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/stitch-xdr/stitch/operators/correlate"
)

// The ledger a set of signals leaves does not depend on the order they
// arrive in (an incident before or after the telemetry about its files,
// copies before or after the block), apart from how many versions it took:
// so a run interrupted by crashes and rebalances, which interleaves the
// incidents and the telemetry differently, ends with the same actions as
// an uninterrupted one.
func TestLedgerIndependentOfOrder(t *testing.T) {
	at := func(m int) time.Time { return time.Date(2024, 1, 1, 9, m, 0, 0, time.UTC) }
	file := func(dev, host string) correlate.Evidence {
		return correlate.Evidence{ODataType: correlate.GraphEvidenceType("File"), MdeDeviceID: dev, DeviceDNSName: host,
			FileDetails: &correlate.FileDetails{SHA256: "AAAA", FileName: "Invoice.docm"}}
	}
	mde := correlate.Alert{ID: "da1", Severity: "Medium", ServiceSource: "Microsoft Defender for Endpoint", CreatedDateTime: at(20),
		Evidence: []correlate.Evidence{file("dev1", "ws1"), {ODataType: correlate.GraphEvidenceType("Machine"), MdeDeviceID: "dev1", DeviceDNSName: "ws1"}}}
	mdo := correlate.Alert{ID: "fa1", Severity: "Medium", ServiceSource: "Microsoft Defender for Office 365", CreatedDateTime: at(25),
		Evidence: []correlate.Evidence{file("", ""), {ODataType: correlate.GraphEvidenceType("MailMessage"), NetworkMessageID: "m1",
			UserAccount: &correlate.UserAccount{UserPrincipalName: "Alice@contoso.com"}}}}
	inc := func(v int64, alerts ...correlate.Alert) Signal {
		return Signal{Tenant: "t", Incident: &correlate.Incident{ID: "inc-1", TenantID: "t", Status: "active", Version: v, Alerts: alerts}}
	}
	copyOf := func(nmid, to string, m int) Signal {
		return Signal{Tenant: "t", Attachments: []correlate.AttachmentFact{{SHA256: "aaaa", NetworkMessageID: nmid, Recipient: to, Time: at(m)}}}
	}
	seen := func(dev string, m int) Signal {
		return Signal{Tenant: "t", Files: []FileSeen{{Hash: "aaaa", DeviceID: dev, Time: at(m)}}}
	}
	signals := []Signal{
		inc(1, mde), inc(2, mde, mdo),
		copyOf("m1", "alice@contoso.com", 0), copyOf("m1", "bob@contoso.com", 0), copyOf("m2", "carol@contoso.com", 5), copyOf("m9", "dave@contoso.com", 50),
		seen("dev1", 10), seen("dev2", 40), seen("dev2", 45),
	}
	final := func(order []int) string {
		r := New(openLedger(t), nil)
		for _, i := range order {
			s := signals[i]
			b, _ := json.Marshal(s) // a fresh copy, as the wire gives
			var c Signal
			if err := json.Unmarshal(b, &c); err != nil {
				t.Fatal(err)
			}
			if _, err := r.Apply(&c); err != nil {
				t.Fatal(err)
			}
		}
		acts, err := r.Actions("t")
		if err != nil {
			t.Fatal(err)
		}
		for i := range acts {
			acts[i].Version = 0
		}
		b, _ := json.MarshalIndent(acts, "", " ")
		return string(b)
	}
	base := make([]int, len(signals))
	for i := range base {
		base[i] = i
	}
	want := final(base)
	rng := rand.New(rand.NewPCG(1, 2))
	for range 30 {
		order := slices.Clone(base)
		rng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
		// The incident's versions keep their order, as the incidents topic does.
		i1, i2 := slices.Index(order, 0), slices.Index(order, 1)
		if i1 > i2 {
			order[i1], order[i2] = 1, 0
		}
		if got := final(order); got != want {
			t.Fatalf("order %v gives\n%s\nwant (input order)\n%s", order, got, want)
		}
	}
	if n := len(want); n < 100 {
		t.Fatalf("no actions: %s", want)
	}
}
