package correlate

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/stitch-xdr/stitch/state"
)

// CheckInvariants reads a correlator's committed store and reports every
// broken invariant of correlation (nil when there is none):
//
//   - every alert is in exactly one incident: its record names a live
//     (not redirected) incident that lists it, and every alert a live
//     incident lists has a record naming that incident;
//   - no two live incidents of one tenant share a linking entity within the
//     window: any two alerts indexed under one identity class (the entity
//     index holds exactly the entities judged linking, neither well-known
//     nor prevalent) at most window apart are in the same incident;
//   - no evidence is held for an alert that is placed (it would be lost);
//   - every correlationReasons entity is present in the alerts it names (the
//     second alert names the entity, the first one a member of its identity
//     class) and both are alerts of the incident.
//
// window must be the correlator's (WithWindow). Alerts released by idle
// close and index buckets already expired are not checked. Tests of this
// and other packages call it after a scenario or a replay.
func CheckInvariants(store *state.Store, window time.Duration) error {
	v := verifier{store: store, window: window, alerts: map[string]*alertRec{},
		incs: map[string]*incState{}, parent: map[string]string{}}
	if err := v.load(); err != nil {
		return err
	}
	v.placement()
	if err := v.linking(); err != nil {
		return err
	}
	v.reasons()
	if err := v.pending(); err != nil {
		return err
	}
	return errors.Join(v.errs...)
}

// Verify is CheckInvariants on the correlator's store; committed state only
// (call it outside a transaction).
func (c *Correlator) Verify() error { return CheckInvariants(c.store, c.cfg.window) }

type verifier struct {
	store  *state.Store
	window time.Duration
	// keys are tenant 0x00 id
	alerts map[string]*alertRec
	incs   map[string]*incState
	parent map[string]string
	errs   []error
}

const maxReported = 20

func (v *verifier) fail(format string, args ...any) {
	if len(v.errs) < maxReported {
		v.errs = append(v.errs, fmt.Errorf(format, args...))
	}
}

func tid(tenant, id string) string { return tenant + "\x00" + id }

// timeless walks every 'T' key of space: tenant and the rest of the key.
func (v *verifier) timeless(space byte, fn func(tenant string, rest, val []byte) error) error {
	it, err := v.store.NewIter([]byte{'T', space})
	if err != nil {
		return err
	}
	defer it.Close()
	for ok := it.First(); ok; ok = it.Next() {
		tenant, rest, ok := bytes.Cut(it.Key()[2:], []byte{0})
		if !ok {
			return fmt.Errorf("correlate: key %q has no tenant", it.Key())
		}
		if err := fn(string(tenant), rest, it.Value()); err != nil {
			return err
		}
	}
	return it.Error()
}

func (v *verifier) load() error {
	err := v.timeless(spaceAlerts, func(tenant string, rest, val []byte) error {
		var r alertRec
		if err := decodeAlertRec(val, &r); err != nil {
			return fmt.Errorf("correlate: alert record %q: %w", rest, err)
		}
		v.alerts[tid(tenant, string(bytes.TrimSuffix(rest, []byte{0})))] = &r
		return nil
	})
	if err != nil {
		return err
	}
	err = v.timeless(spaceIncidents, func(tenant string, rest, val []byte) error {
		var s incState
		if err := decodeIncState(val, &s); err != nil {
			return fmt.Errorf("correlate: incident record %q: %w", rest, err)
		}
		v.incs[tid(tenant, string(bytes.TrimSuffix(rest, []byte{0})))] = &s
		return nil
	})
	if err != nil {
		return err
	}
	return v.timeless(spaceParent, func(tenant string, rest, val []byte) error {
		v.parent[tid(tenant, string(bytes.TrimSuffix(rest, []byte{0})))] = string(val)
		return nil
	})
}

// root is the identity class of an entity key (the key itself outside one).
func (v *verifier) root(tenant, key string) string {
	for range 8 {
		p, ok := v.parent[tid(tenant, key)]
		if !ok || p == key {
			break
		}
		key = p
	}
	return key
}

func (v *verifier) placement() {
	for k, r := range v.alerts {
		tenant, id, _ := bytesCut(k)
		s := v.incs[tid(tenant, r.Inc)]
		switch {
		case s == nil:
			v.fail("alert %s/%s: its incident %s does not exist", tenant, id, r.Inc)
		case s.Inc.Status == StatusRedirected:
			v.fail("alert %s/%s: its incident %s is redirected to %v", tenant, id, r.Inc, deref(s.Inc.RedirectIncidentID))
		case !slices.ContainsFunc(s.Inc.Alerts, func(a Alert) bool { return a.ID == id }):
			v.fail("alert %s/%s: its incident %s does not list it", tenant, id, r.Inc)
		}
	}
	listed := map[string]string{}
	for k, s := range v.incs {
		tenant, id, _ := bytesCut(k)
		if s.Inc.Status == StatusRedirected {
			if len(s.Inc.Alerts) > 0 {
				v.fail("incident %s/%s is redirected but lists %d alerts", tenant, id, len(s.Inc.Alerts))
			}
			continue
		}
		for _, a := range s.Inc.Alerts {
			ak := tid(tenant, a.ID)
			if other, dup := listed[ak]; dup {
				v.fail("alert %s/%s is listed by incidents %s and %s", tenant, a.ID, other, id)
			}
			listed[ak] = id
			if r := v.alerts[ak]; r == nil {
				v.fail("alert %s/%s of incident %s has no record", tenant, a.ID, id)
			} else if r.Inc != id {
				v.fail("alert %s/%s is listed by incident %s but placed in %s", tenant, a.ID, id, r.Inc)
			}
		}
	}
}

type indexed struct {
	alert string
	at    time.Time
	ent   string
}

func (v *verifier) linking() error {
	it, err := v.store.NewIter([]byte{'B', spaceIndex})
	if err != nil {
		return err
	}
	defer it.Close()
	byClass := map[string][]indexed{} // tenant 0x00 class root
	for ok := it.First(); ok; ok = it.Next() {
		_, tenant, rest, err := state.ParseBucketKey(it.Key())
		if err != nil {
			return err
		}
		ent, alert, ok := bytes.Cut(rest, []byte{0})
		if !ok || len(it.Value()) != 8 {
			return fmt.Errorf("correlate: bad index entry %q", it.Key())
		}
		k := tid(tenant, v.root(tenant, string(ent)))
		byClass[k] = append(byClass[k], indexed{string(alert), time.Unix(0, state.ReadInt64(it.Value())).UTC(), string(ent)})
	}
	if err := it.Error(); err != nil {
		return err
	}
	for k, list := range byClass {
		tenant, _, _ := bytesCut(k)
		sort.Slice(list, func(i, j int) bool { return list[i].at.Before(list[j].at) })
		// Sorted by time, any two entries within the window are joined by a
		// chain of neighbours within the window, so checking neighbours is
		// checking every pair.
		for i := 1; i < len(list); i++ {
			a, b := list[i-1], list[i]
			if b.at.Sub(a.at) > v.window {
				continue
			}
			ra, rb := v.alerts[tid(tenant, a.alert)], v.alerts[tid(tenant, b.alert)]
			if ra == nil || rb == nil || ra.Inc == rb.Inc {
				continue // released by idle close, or joined
			}
			v.fail("tenant %s: alerts %s (%s, %s, incident %s) and %s (%s, %s, incident %s) share a linking entity %s apart but are in different incidents",
				tenant, a.alert, a.ent, a.at.Format(time.RFC3339), ra.Inc, b.alert, b.ent, b.at.Format(time.RFC3339), rb.Inc, b.at.Sub(a.at))
		}
	}
	return nil
}

func (v *verifier) reasons() {
	for k, s := range v.incs {
		if s.Inc.Status == StatusRedirected {
			continue
		}
		tenant, id, _ := bytesCut(k)
		for _, r := range s.Inc.CorrelationReasons {
			first, second := v.alerts[tid(tenant, r.Alerts[0])], v.alerts[tid(tenant, r.Alerts[1])]
			if first == nil || second == nil {
				v.fail("incident %s/%s: reason %s names alerts %v not all placed", tenant, id, r.Entity, r.Alerts)
				continue
			}
			if first.Inc != id || second.Inc != id {
				v.fail("incident %s/%s: reason %s names alerts %v in incidents %s and %s", tenant, id, r.Entity, r.Alerts, first.Inc, second.Inc)
			}
			if !slices.Contains(second.E, r.Entity) {
				v.fail("incident %s/%s: reason entity %s is not an entity of alert %s", tenant, id, r.Entity, r.Alerts[1])
			}
			root := v.root(tenant, r.Entity)
			if !slices.ContainsFunc(first.E, func(e string) bool { return v.root(tenant, e) == root }) {
				v.fail("incident %s/%s: reason entity %s (class %s) is not an entity of alert %s", tenant, id, r.Entity, root, r.Alerts[0])
			}
		}
	}
}

func (v *verifier) pending() error {
	it, err := v.store.NewIter([]byte{'B', spacePending})
	if err != nil {
		return err
	}
	defer it.Close()
	for ok := it.First(); ok; ok = it.Next() {
		_, tenant, rest, err := state.ParseBucketKey(it.Key())
		if err != nil {
			return err
		}
		alert, _, _ := bytes.Cut(rest, []byte{0})
		if v.alerts[tid(tenant, string(alert))] != nil {
			v.fail("alert %s/%s is placed but evidence of it is still held as pending", tenant, alert)
		}
	}
	return it.Error()
}

func bytesCut(k string) (tenant, id string, ok bool) { return strings.Cut(k, "\x00") }

func deref(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}
