package respond

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stitch-xdr/stitch/operators/correlate"
	"github.com/stitch-xdr/stitch/state"
)

// The sightings that block on sight of addresses looks at: addresses seen
// by devices, URLs seen by accounts alone (clicks). The accounts of a
// device's rows are not clicks, an IP seen by accounts alone (where they
// signed in from) is no connection, other entities are not addresses. A
// sighting's time is its batch's latest, within its day bucket; the end
// of the bucket when the record carries no MaxTime (a batch in several
// records).
func TestSightReaches(t *testing.T) {
	day := time.Date(2024, 1, 2, 0, 0, 0, 0, time.UTC)
	b := state.Bucket(day, correlate.PrevalenceBucket)
	f := &correlate.Facts{Tenant: "t1", MaxTime: day.Add(9 * time.Hour), Sightings: []correlate.Sighting{
		{Entity: "ip:203.0.113.7", Bucket: b, Observers: []string{"device:id:d1", "user:sid:S-1-5-21-1"}},
		{Entity: "url:https://evil.example/", Bucket: b, Observers: []string{"user:upn:alice@contoso.com"}},
		{Entity: "url:http://cdn.example/", Bucket: b, Observers: []string{"device:name:ws1", "user:upn:bob@contoso.com"}},
		{Entity: "ip:198.51.100.1", Bucket: b, Observers: []string{"user:upn:alice@contoso.com"}},
		{Entity: "file:" + strings.Repeat("a", 64), Bucket: b, Observers: []string{"device:id:d1"}},
		{Entity: "ip:203.0.113.8", Bucket: b - 1, Observers: []string{"device:id:d2"}}, // a row of the day before
	}}
	got := fmt.Sprint(Reaches(f))
	want := fmt.Sprint([]Reach{
		{Entity: "ip:203.0.113.7", Observers: []string{"device:id:d1"}, Time: day.Add(9 * time.Hour)},
		{Entity: "url:https://evil.example/", Observers: []string{"user:upn:alice@contoso.com"}, Time: day.Add(9 * time.Hour)},
		{Entity: "url:http://cdn.example/", Observers: []string{"device:name:ws1"}, Time: day.Add(9 * time.Hour)},
		{Entity: "ip:203.0.113.8", Observers: []string{"device:id:d2"}, Time: day.Add(-time.Nanosecond)},
	})
	if got != want {
		t.Errorf("Reaches:\n got %s\nwant %s", got, want)
	}
	f.MaxTime = time.Time{}
	if r := Reaches(f); !r[0].Time.Equal(day.Add(24*time.Hour - time.Nanosecond)) {
		t.Errorf("without MaxTime: time %s, want the end of the bucket", r[0].Time)
	}
}

// The keys an address is looked up under: one point lookup each.
func TestSightCandidates(t *testing.T) {
	for _, c := range []struct {
		entity string
		want   []string
	}{
		{"ip:203.0.113.7", []string{"ip:203.0.113.7"}},
		{"url:https://a.b.evil.example/x?y=1", []string{"url:https://a.b.evil.example/x?y=1", "domain:a.b.evil.example", "domain:b.evil.example", "domain:evil.example"}},
		{"url:http://203.0.113.7:8080/", []string{"url:http://203.0.113.7:8080/", "ip:203.0.113.7"}},
		{"url:http://[2001:db8::1]/", []string{"url:http://[2001:db8::1]/", "ip:2001:db8::1"}},
		{"url:http://intranet/", []string{"url:http://intranet/"}},
		{"file:aa", nil},
	} {
		if got := candidates(nil, c.entity); !slices.Equal(got, c.want) {
			t.Errorf("candidates(%s) = %v, want %v", c.entity, got, c.want)
		}
	}
	// Indicators are keyed as the telemetry's entities are.
	for _, c := range [][3]string{
		{IndicatorIP, "::ffff:203.0.113.7", "ip:203.0.113.7"},
		{IndicatorURL, "HTTPS://Evil.Example:443/Login#x", "url:https://evil.example/Login"},
		{IndicatorURL, "http://evil.example", "url:http://evil.example/"},
		{IndicatorDomain, "Evil.Example.", "domain:evil.example"},
	} {
		if got, _ := matchKey(c[0], c[1]); got != c[2] {
			t.Errorf("matchKey(%s, %s) = %s, want %s", c[0], c[1], got, c[2])
		}
	}
}

// A transaction that aborts forgets the sighting with the rest: the batch
// retried raises the same alert, by the same id, and once committed the
// pair is known, whatever the process that reads it next (the store is
// the changelogged ledger).
func TestSightAlertOnceAcrossAbort(t *testing.T) {
	tx := openLedger(t)
	r := New(tx, nil)
	apply := applier(t, r)
	at := time.Date(2024, 1, 2, 0, 0, 0, 0, time.UTC)
	apply(&Signal{Tenant: "t1", Indicators: []Indicator{{TenantID: "t1", Type: IndicatorIP, Value: "198.51.100.66", By: "soc", Time: at}}})
	if err := tx.CommitAt(nil); err != nil {
		t.Fatal(err)
	}
	if err := tx.Begin(); err != nil {
		t.Fatal(err)
	}
	seen := &Signal{Tenant: "t1", Network: []Reach{{Entity: "ip:198.51.100.66", Observers: []string{"device:id:d1"}, Time: at.Add(time.Hour)}}}
	first := apply(seen)
	tx.Abort()
	if err := tx.Begin(); err != nil {
		t.Fatal(err)
	}
	again := apply(seen)
	if len(first.Alerts) != 1 || len(again.Alerts) != 1 || first.Alerts[0].Info.ID != again.Alerts[0].Info.ID {
		t.Fatalf("alerts before and after the abort: %+v, %+v", first.Alerts, again.Alerts)
	}
	if len(again.Actions) != 1 || again.Actions[0].ID != first.Actions[0].ID {
		t.Fatalf("actions before and after the abort: %+v, %+v", first.Actions, again.Actions)
	}
	if err := tx.CommitAt(nil); err != nil {
		t.Fatal(err)
	}
	if err := tx.Begin(); err != nil {
		t.Fatal(err)
	}
	r = New(tx, nil) // a fresh responder over the committed ledger
	apply = applier(t, r)
	if res := apply(seen); len(res.Alerts)+len(res.Actions) != 0 {
		t.Errorf("the committed sighting again: %+v", res)
	}
}

// The sightings of a blocked address age like the other indexes, by when
// they were last seen: a device that keeps reaching it keeps its entry
// (refreshed once a day), and the message index keeps a day.
func TestSightIndexesAge(t *testing.T) {
	tx := openLedger(t)
	r := New(tx, nil, WithRetention(48*time.Hour))
	at := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	apply := applier(t, r)
	apply(&Signal{Tenant: "t1", Indicators: []Indicator{{TenantID: "t1", Type: IndicatorURL, Value: "https://evil.example/", By: "soc", Time: at}}})
	reach := func(dev string, t time.Time) *Signal {
		return &Signal{Tenant: "t1", Network: []Reach{{Entity: "url:https://evil.example/", Observers: []string{"device:id:" + dev}, Time: t}}}
	}
	apply(reach("d1", at.Add(time.Hour)))
	apply(reach("d2", at.Add(time.Hour)))
	apply(&Signal{Tenant: "t1", Mail: []correlate.MailFact{{NetworkMessageID: "m1", Recipient: "bob@contoso.com", Time: at.Add(time.Hour)}}})
	for day := 1; day <= 5; day++ {
		apply(reach("d1", at.Add(time.Duration(day)*24*time.Hour)))
	}
	n, err := r.Sweep(1000)
	if err != nil {
		t.Fatal(err)
	}
	// d2's sighting (last seen 4 days before the clock) and the message
	// half go; d1's stays.
	if n != 2 {
		t.Errorf("swept %d entries, want 2", n)
	}
	if res := apply(reach("d1", at.Add(5*24*time.Hour+time.Hour))); len(res.Alerts) != 0 {
		t.Errorf("d1, still reaching it, alerted again: %+v", res.Alerts)
	}
}

// indicatorActions: the defaults when no file sets them, [] for the alert
// alone, and set in one file of a directory only.
func TestIndicatorActionsPlaybooks(t *testing.T) {
	if got := Default().indicatorActions(); !slices.Equal(got, []string{SoftDeleteEmail, RunAntivirusScan}) {
		t.Errorf("default indicatorActions %v", got)
	}
	pb, err := Parse("x.yaml", []byte("indicatorActions: []\n"))
	if err != nil || pb.indicatorActions() == nil || len(pb.indicatorActions()) != 0 {
		t.Errorf("indicatorActions: [] -> %v, %v", pb, err)
	}
	pb, err = Parse("x.yaml", []byte("playbooks: []\n"))
	if err != nil || !slices.Equal(pb.indicatorActions(), DefaultIndicatorActions) {
		t.Errorf("unset -> %v, %v", pb, err)
	}
	dir := t.TempDir()
	for _, f := range []string{"a.yaml", "b.yaml"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte("indicatorActions: [IsolateDevice]\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := Load(dir); err == nil || !strings.Contains(err.Error(), "indicatorActions: also set in") {
		t.Errorf("indicatorActions in two files: %v", err)
	}
}

// BenchmarkSightReached is the respond stage's cost of a batch of
// connections (5000 distinct addresses, half of them URLs on four domain
// levels) in a tenant with network blocks, none of them matched: the
// common case.
func BenchmarkSightReached(b *testing.B) {
	st, err := state.Open(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	tx := state.NewTxStore(st)
	if err := tx.Begin(); err != nil {
		b.Fatal(err)
	}
	defer tx.Abort()
	r := New(tx, nil)
	at := time.Date(2024, 1, 2, 0, 0, 0, 0, time.UTC)
	if _, err := r.Apply(&Signal{Tenant: "t1", Indicators: []Indicator{{TenantID: "t1", Type: IndicatorIP, Value: "198.51.100.66", By: "soc", Time: at}}}); err != nil {
		b.Fatal(err)
	}
	sig := &Signal{Tenant: "t1"}
	for i := range 5000 {
		e := fmt.Sprintf("ip:10.%d.%d.%d", i>>16&255, i>>8&255, i&255)
		if i%2 == 1 {
			e = fmt.Sprintf("url:https://a%d.b.c.example/x", i)
		}
		sig.Network = append(sig.Network, Reach{Entity: e, Observers: []string{fmt.Sprintf("device:id:d%d", i%300)}, Time: at.Add(time.Hour)})
	}
	b.ResetTimer()
	for range b.N {
		if _, err := r.Apply(sig); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(sig.Network)), "ns/address")
}
