package correlate

import (
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stitch-xdr/stitch/state"
)

// Order independence: correlation is a function of the facts, not of the
// order they arrive in or of where transactions end. These tests build small
// streams by hand and feed them in every order that matters.

var t0 = time.Date(2024, 6, 3, 15, 0, 0, 0, time.UTC)

func alertFact(tenant, id string, at time.Time) *Facts {
	return &Facts{Tenant: tenant, MaxTime: at, Alerts: []AlertFact{{ID: id, Time: at, Title: "alert " + id, Severity: "Medium"}}}
}

func evidenceFact(tenant, id string, at time.Time, ents ...string) *Facts {
	return &Facts{Tenant: tenant, MaxTime: at, Evidence: []EvidenceFact{{AlertID: id, Time: at, Entities: ents,
		Evidence: Evidence{ODataType: GraphEvidenceType("File"), CreatedDateTime: at, Roles: []string{}}}}}
}

func linkFact(tenant string, at time.Time, ids ...string) *Facts {
	return &Facts{Tenant: tenant, MaxTime: at, Links: [][]string{ids}}
}

// run applies facts, each tenant's from its own partition (numbered in
// order of appearance), a transaction per commitEvery facts (0: one for all),
// ticking before each commit, checks the invariants and returns the
// incidents as sorted groups of alert ids.
func run(t *testing.T, facts []*Facts, commitEvery int, opts ...Option) []string {
	t.Helper()
	return runIn(t, t.TempDir(), facts, commitEvery, opts...)
}

// tb is what run needs of a test: *testing.T and *rapid.T both are.
type tb interface {
	Helper()
	Fatal(args ...any)
	Fatalf(format string, args ...any)
	Errorf(format string, args ...any)
}

// runIn is run with the store in dir.
func runIn(t tb, dir string, facts []*Facts, commitEvery int, opts ...Option) []string {
	t.Helper()
	st, err := state.Open(dir, state.WithCacheSize(1<<20), state.WithMemTableSize(1<<20))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	c, err := New(st, opts...)
	if err != nil {
		t.Fatal(err)
	}
	latest := map[string]Incident{}
	keep := func(incs []Incident) {
		for _, inc := range incs {
			if prev, ok := latest[inc.ID]; ok && inc.Version <= prev.Version {
				t.Fatalf("incident %s: version %d after %d", inc.ID, inc.Version, prev.Version)
			}
			latest[inc.ID] = inc
		}
	}
	if commitEvery <= 0 {
		commitEvery = len(facts)
	}
	partition := map[string]int32{} // tenants in order of appearance
	for _, f := range facts {
		if _, ok := partition[f.Tenant]; !ok {
			partition[f.Tenant] = int32(len(partition))
		}
	}
	for i := 0; i < len(facts); i += commitEvery {
		if err := c.Begin(); err != nil {
			t.Fatal(err)
		}
		for j := i; j < min(i+commitEvery, len(facts)); j++ {
			incs, err := c.ApplyOffset(partition[facts[j].Tenant], facts[j], "facts", int64(j))
			if err != nil {
				t.Fatal(err)
			}
			keep(incs)
		}
		incs, err := c.Tick(time.Time{})
		if err != nil {
			t.Fatal(err)
		}
		keep(incs)
		if err := c.Commit(); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Verify(); err != nil {
		t.Errorf("invariants: %v", err)
	}
	return groups(latest)
}

// groups renders the live incidents as sorted "tenant: a b c" lines.
func groups(latest map[string]Incident) []string {
	var out []string
	for _, inc := range latest {
		if inc.Status == StatusRedirected || len(inc.Alerts) == 0 {
			continue
		}
		ids := make([]string, len(inc.Alerts))
		for i, a := range inc.Alerts {
			ids[i] = a.ID
		}
		sort.Strings(ids)
		out = append(out, inc.TenantID+": "+strings.Join(ids, " "))
	}
	sort.Strings(out)
	return out
}

func sameGroups(t tb, what string, got, want []string) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Errorf("%s:\n got %s\nwant %s", what, strings.Join(got, " | "), strings.Join(want, " | "))
	}
}

// TestIdentityLinkLearnedLater: two alerts name one account by different
// identifiers; the link between the identifiers arrives after both were
// placed. It joins their incidents, as it would have had it come first.
func TestIdentityLinkLearnedLater(t *testing.T) {
	sid, upn := "user:sid:S-1-5-21-1-2-3-1001", "user:upn:kim@contoso.com"
	a, b := alertFact("t1", "A", t0), alertFact("t1", "B", t0.Add(10*time.Minute))
	ea, eb := evidenceFact("t1", "A", t0, sid), evidenceFact("t1", "B", t0.Add(10*time.Minute), upn)
	link := linkFact("t1", t0.Add(20*time.Minute), sid, upn)
	want := []string{"t1: A B"}
	sameGroups(t, "link first", run(t, []*Facts{link, ea, a, eb, b}, 1), want)
	sameGroups(t, "link last", run(t, []*Facts{ea, a, eb, b, link}, 1), want)
	sameGroups(t, "link between", run(t, []*Facts{ea, a, link, eb, b}, 0), want)
	// A link chain learned piece by piece, after the alerts.
	oid := "user:oid:0b8f1c2e-0000-4000-8000-000000000001"
	c, ec := alertFact("t1", "C", t0.Add(30*time.Minute)), evidenceFact("t1", "C", t0.Add(30*time.Minute), oid)
	sameGroups(t, "chain", run(t, []*Facts{ea, a, eb, b, ec, c, linkFact("t1", t0, upn, oid), linkFact("t1", t0, sid, upn)}, 1),
		[]string{"t1: A B C"})
}

// TestEvidenceLongBeforeItsAlert: evidence stamped more than the grace
// period before its alert (a mail alert names the delivery of the message
// two and a half hours earlier) joins the alert whether it arrives before or
// after it.
func TestEvidenceLongBeforeItsAlert(t *testing.T) {
	hash := "file:" + strings.Repeat("fa", 32)
	a := alertFact("t1", "mail", t0.Add(150*time.Minute))
	ea := evidenceFact("t1", "mail", t0, hash)
	b, eb := alertFact("t1", "proc", t0.Add(160*time.Minute)), evidenceFact("t1", "proc", t0.Add(160*time.Minute), hash)
	want := []string{"t1: mail proc"}
	sameGroups(t, "evidence after its alert", run(t, []*Facts{a, ea, b, eb}, 1), want)
	sameGroups(t, "evidence before its alert", run(t, []*Facts{ea, a, b, eb}, 1), want)
	sameGroups(t, "evidence before, one transaction", run(t, []*Facts{ea, a, eb, b}, 0), want)
}

// TestLaggingPartitionKeepsItsState: each tenant's facts come from its own
// partition, and how far one partition's consumer runs ahead of another's is
// a matter of fetch and poll sizes. A partition days ahead must not expire
// the entity index, the pending evidence or the incidents of a tenant on a
// partition behind it.
func TestLaggingPartitionKeepsItsState(t *testing.T) {
	dev := "device:id:a4087612aa"
	ahead := alertFact("t1", "X", t0.Add(9*24*time.Hour))
	a, ea := alertFact("t2", "A", t0), evidenceFact("t2", "A", t0, dev)
	b, eb := alertFact("t2", "B", t0.Add(95*time.Minute)), evidenceFact("t2", "B", t0.Add(95*time.Minute), dev)
	c, ec := alertFact("t2", "C", t0.Add(3*time.Hour)), evidenceFact("t2", "C", t0.Add(3*time.Hour), dev)
	want := []string{"t1: X", "t2: A B C"}
	sameGroups(t, "in step", run(t, []*Facts{ea, a, eb, b, ec, c, ahead}, 1), want)
	// t1's partition runs nine days ahead between A and the rest of t2's
	// stream, with a tick (and a commit) after each fact.
	sameGroups(t, "one partition ahead", run(t, []*Facts{ea, a, ahead, eb, b, ec, c}, 1), want)
	sameGroups(t, "ahead while evidence waits", run(t, []*Facts{ea, a, eb, ec, ahead, b, c}, 1), want)
}
