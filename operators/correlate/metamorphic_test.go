package correlate

import (
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"pgregory.net/rapid"
)

// Metamorphic tests: one synthetic stream of attack stories (alerts, their
// evidence, identity links), fed in many arrival orders and transaction
// sizes, must give the same incidents, and those must be what a reference
// model computes from the stream alone: the connected components of "two
// alerts of a tenant at most the window apart name members of one identity
// class of a linking entity".

// item is one fact of a stream, with the event time its arrival is judged by.
type item struct {
	f     *Facts
	at    time.Time
	alert string // the alert an evidence fact belongs to ("" otherwise)
	link  bool
}

// stream is a synthetic stream and the incidents the reference model gives.
type stream struct {
	items []item
	want  []string
}

const (
	mmWindow   = 24 * time.Hour
	mmLateness = time.Hour
)

// synthStream builds stories for tenants: each owns a device (id and name),
// a user (SID, UPN, object id), a file hash, an address and a message; its
// alerts name a few of them, some of them an entity of an earlier story of
// the tenant (joining the two when they are within the window), some a
// well-known account or loopback address (which joins nothing). Identity
// links come as facts of their own, or never. Evidence is stamped up to 50
// minutes before its alert and up to 5 after (within the grace period).
func synthStream(rng *rand.Rand, tenants, stories int) stream {
	type alert struct {
		tenant, id string
		at         time.Time
		ents       []string
	}
	var items []item
	var alerts []alert
	var links [][2]string // tenant-scoped below
	var linkTenants []string
	at := func(base time.Time, lo, hi time.Duration) time.Time {
		return base.Add(lo + time.Duration(rng.Int64N(int64(hi-lo)+1))).Truncate(time.Second)
	}
	for ti := range tenants {
		tenant := fmt.Sprintf("t%d", ti+1)
		start := t0
		var past [][]string // entities of earlier stories
		for si := range stories {
			start = at(start, 10*time.Minute, 30*time.Hour)
			n := fmt.Sprintf("%s-s%d", tenant, si)
			dev, host := "device:id:"+strings.Repeat("d", 8)+n, "device:name:host-"+n
			sid, upn, oid := "user:sid:S-1-5-21-9-"+n, "user:upn:"+n+"@contoso.com", "user:oid:"+n
			ents := []string{dev, host, sid, upn, oid, "file:" + fmt.Sprintf("%064x", rng.Uint64()),
				"ip:203.0." + fmt.Sprint(ti) + "." + fmt.Sprint(si%250+1), "mailmessage:" + n}
			end := start
			for ai := range 2 + rng.IntN(4) {
				id := fmt.Sprintf("%s-a%d", n, ai)
				ta := at(start, 0, 3*time.Hour)
				if ta.After(end) {
					end = ta
				}
				var named []string
				for range 1 + rng.IntN(3) {
					named = appendNew(named, ents[rng.IntN(len(ents))])
				}
				if len(past) > 0 && rng.IntN(8) == 0 {
					prev := past[rng.IntN(len(past))]
					named = appendNew(named, prev[rng.IntN(len(prev))])
				}
				if rng.IntN(4) == 0 {
					named = append(named, []string{"user:sid:S-1-5-18", "ip:127.0.0.1", "user:nt:nt authority\\system"}[rng.IntN(3)])
				}
				alerts = append(alerts, alert{tenant, id, ta, named})
				items = append(items, item{f: alertFact(tenant, id, ta), at: ta})
				// One or two evidence facts share the entities out.
				split := rng.IntN(len(named) + 1)
				for _, part := range [][]string{named[:split], named[split:]} {
					if len(part) == 0 {
						continue
					}
					te := at(ta, -50*time.Minute, 5*time.Minute)
					items = append(items, item{f: evidenceFact(tenant, id, te, part...), at: te, alert: id})
				}
			}
			for _, l := range [][2]string{{sid, upn}, {upn, oid}, {dev, host}} {
				if rng.IntN(3) == 0 {
					continue // never learned
				}
				tl := at(start, 0, end.Sub(start)+time.Hour)
				items = append(items, item{f: linkFact(tenant, tl, l[0], l[1]), at: tl, link: true})
				links = append(links, l)
				linkTenants = append(linkTenants, tenant)
			}
			past = append(past, ents)
		}
	}
	// The reference model.
	parent := map[string]string{}
	var find func(string) string
	find = func(k string) string {
		if p, ok := parent[k]; ok && p != k {
			r := find(p)
			parent[k] = r
			return r
		}
		return k
	}
	union := func(a, b string) {
		if ra, rb := find(a), find(b); ra != rb {
			parent[ra] = rb
		}
	}
	for i, l := range links {
		union(linkTenants[i]+"/"+l[0], linkTenants[i]+"/"+l[1])
	}
	linking := func(k string) bool {
		e, ok := ParseEntity(k)
		return ok && !WellKnown(e)
	}
	for i, a := range alerts {
		for _, b := range alerts[:i] {
			if a.tenant != b.tenant || a.at.Sub(b.at) > mmWindow || b.at.Sub(a.at) > mmWindow {
				continue
			}
			share := slices.ContainsFunc(a.ents, func(x string) bool {
				return linking(x) && slices.ContainsFunc(b.ents, func(y string) bool {
					return linking(y) && find(a.tenant+"/"+x) == find(b.tenant+"/"+y)
				})
			})
			if share {
				union("alert/"+a.tenant+"/"+a.id, "alert/"+b.tenant+"/"+b.id)
			}
		}
	}
	comp := map[string][]alert{}
	for _, a := range alerts {
		r := find("alert/" + a.tenant + "/" + a.id)
		comp[r] = append(comp[r], a)
	}
	var want []string
	for _, as := range comp {
		ids := make([]string, len(as))
		for i, a := range as {
			ids[i] = a.id
		}
		sort.Strings(ids)
		want = append(want, as[0].tenant+": "+strings.Join(ids, " "))
	}
	sort.Strings(want)
	return stream{items: items, want: want}
}

// arrange orders the stream for arrival: item i arrives at its event time
// plus delay[i] (less than the allowed lateness, so nothing is late), ties
// in stream order; byTenant sends every tenant's facts in one go, tenant
// after tenant (one partition consumed far ahead of the others); with folds
// every evidence fact into its alert's facts (evidence with its alert).
func arrange(s stream, delay []time.Duration, byTenant, with bool) []*Facts {
	type arrival struct {
		it  item
		key time.Time
		i   int
	}
	var arr []arrival
	for i, it := range s.items {
		arr = append(arr, arrival{it, it.at.Add(delay[i]), i})
	}
	sort.SliceStable(arr, func(i, j int) bool {
		if byTenant && arr[i].it.f.Tenant != arr[j].it.f.Tenant {
			return arr[i].it.f.Tenant < arr[j].it.f.Tenant
		}
		return arr[i].key.Before(arr[j].key)
	})
	var out []*Facts
	alertAt := map[string]*Facts{}
	for _, a := range arr {
		f := *a.it.f // facts are shared between arrangements: copy what changes
		if with && a.it.alert != "" {
			if host := alertAt[a.it.alert]; host != nil {
				host.Evidence = append(slices.Clip(host.Evidence), f.Evidence...)
				if f.MaxTime.After(host.MaxTime) {
					host.MaxTime = f.MaxTime
				}
				continue
			}
		}
		out = append(out, &f)
		if len(f.Alerts) == 1 {
			alertAt[f.Alerts[0].ID] = &f
		}
	}
	if with { // evidence that arrived before its alert goes with it too
		var kept []*Facts
		pending := map[string][]EvidenceFact{}
		for _, f := range out {
			if len(f.Evidence) > 0 && len(f.Alerts) == 0 {
				pending[f.Evidence[0].AlertID] = append(pending[f.Evidence[0].AlertID], f.Evidence...)
				continue
			}
			if len(f.Alerts) == 1 {
				f.Evidence = append(slices.Clip(pending[f.Alerts[0].ID]), f.Evidence...)
				for _, ev := range f.Evidence {
					if ev.Time.After(f.MaxTime) {
						f.MaxTime = ev.Time
					}
				}
			}
			kept = append(kept, f)
		}
		out = kept
	}
	return out
}

// delays gives every item the delay pick returns for it.
func delays(s stream, pick func(it item) time.Duration) []time.Duration {
	out := make([]time.Duration, len(s.items))
	for i, it := range s.items {
		out[i] = pick(it)
	}
	return out
}

// TestSameIncidentsWhateverTheBatching feeds synthetic streams in arrival
// orders and transaction sizes that a pipeline may produce (evidence before,
// with and after its alert; identity links first or last; one partition far
// ahead of another; a commit per fact, per 7, per 100 or one for all) and
// wants the reference model's incidents from each.
func TestSameIncidentsWhateverTheBatching(t *testing.T) {
	late := mmLateness - time.Minute
	orders := []struct {
		name     string
		pick     func(it item) time.Duration
		byTenant bool
		with     bool
	}{
		{"in event time", func(item) time.Duration { return 0 }, false, false},
		{"evidence after its alert", func(it item) time.Duration {
			if it.alert != "" {
				return late
			}
			return 0
		}, false, false},
		{"evidence before its alert", func(it item) time.Duration {
			if it.alert == "" && !it.link {
				return late
			}
			return 0
		}, false, false},
		{"evidence with its alert", func(item) time.Duration { return 0 }, false, true},
		{"links last", func(it item) time.Duration {
			if it.link {
				return late
			}
			return 0
		}, false, false},
		{"links first", func(it item) time.Duration {
			if !it.link {
				return late
			}
			return 0
		}, false, false},
		{"tenant after tenant", func(item) time.Duration { return 0 }, true, false},
	}
	seeds := []uint64{1, 2, 3}
	if testing.Short() {
		seeds = seeds[:1]
	}
	for _, seed := range seeds {
		s := synthStream(rand.New(rand.NewPCG(seed, 17)), 3, 12)
		merged := 0
		for _, g := range s.want {
			merged += strings.Count(g, " ") - 1
		}
		if len(s.want) < 10 || merged < 10 {
			t.Fatalf("seed %d: %d incidents of %d merged alerts: not a useful stream", seed, len(s.want), merged)
		}
		for _, o := range orders {
			facts := arrange(s, delays(s, o.pick), o.byTenant, o.with)
			for _, every := range []int{1, 7, 100, 0} {
				what := fmt.Sprintf("seed %d, %s, commit every %d", seed, o.name, every)
				sameGroups(t, what, run(t, facts, every), s.want)
			}
		}
	}
}

// TestShuffledArrivalProperty: for any stream and any arrival order within
// the allowed lateness (each fact delayed by less than it), any transaction
// size, evidence folded into its alert or not and tenants interleaved or
// not, the incidents are the reference model's.
func TestShuffledArrivalProperty(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		seed := rapid.Uint64().Draw(rt, "seed")
		s := synthStream(rand.New(rand.NewPCG(seed, 5)), rapid.IntRange(1, 3).Draw(rt, "tenants"), rapid.IntRange(1, 8).Draw(rt, "stories"))
		ms := rapid.SliceOfN(rapid.Int64Range(0, int64(mmLateness/time.Minute)-1), len(s.items), len(s.items)).Draw(rt, "delay minutes")
		delay := make([]time.Duration, len(ms))
		for i, m := range ms {
			delay[i] = time.Duration(m) * time.Minute
		}
		facts := arrange(s, delay, rapid.Bool().Draw(rt, "tenant after tenant"), rapid.Bool().Draw(rt, "evidence with its alert"))
		every := rapid.IntRange(0, len(facts)).Draw(rt, "commit every")
		dir, err := os.MkdirTemp("", "correlate-rapid-")
		if err != nil {
			rt.Fatal(err)
		}
		defer os.RemoveAll(dir)
		sameGroups(rt, "shuffled", runIn(rt, dir, facts, every), s.want)
	})
}
