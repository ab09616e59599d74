package correlate

import (
	"math"
	"slices"
	"strings"

	"github.com/stitch-xdr/stitch/state"
)

// Identity classes: a per-tenant union-find of user (and device) identifiers
// persisted in Pebble. An alert or telemetry row naming several identifiers of
// one account (object id, SID, UPN, DOMAIN\name; or DeviceId and DeviceName)
// unions them, so alerts that name the account differently still meet.
//
//	T 'u' tenant id            -> parent id (absent: id is a root)
//	T 'm' tenant root 0x00 id  -> member of root's class (absent: singleton)
//
// Every member points straight at its root (unions rewrite the smaller class),
// so find is one read, and expanding a class is one prefix scan.

const (
	spaceParent  = 'u'
	spaceMembers = 'm'
	// maxClass bounds an identity class: a bad link (a shared service account
	// row) must not fuse a whole directory into one identity.
	maxClass = 64
)

func unifiable(e Entity) bool { return e.Kind == KindUser || e.Kind == KindDevice }

func (t *tx) find(id string) (string, error) {
	for hops := 0; hops < 4; hops++ {
		p, ok, err := t.get(t.tkey(spaceParent, id))
		if err != nil {
			return "", err
		}
		if !ok || string(p) == id {
			return id, nil
		}
		id = string(p)
	}
	return id, nil
}

func (t *tx) members(root string) ([]string, error) {
	if ok, err := t.c.mayHave(t.tkey(spaceMembers, root)); err != nil {
		return nil, err
	} else if !ok {
		return []string{root}, nil
	}
	it, err := t.b.NewIter(t.tkey(spaceMembers, root))
	if err != nil {
		return nil, err
	}
	defer it.Close()
	var out []string
	pfx := len(t.tkey(spaceMembers, root))
	for ok := it.First(); ok; ok = it.Next() {
		k := it.Key()[pfx:]
		out = append(out, string(k[:len(k)-1])) // drop the NUL terminator
	}
	if err := it.Error(); err != nil {
		return nil, err
	}
	if len(out) == 0 {
		out = append(out, root)
	}
	return out, nil
}

// union joins the classes of a and b and returns the members of the one
// that moved (none when a and b were one class already or the union was
// refused because the class would grow too large).
func (t *tx) union(a, b string) ([]string, error) {
	ra, err := t.find(a)
	if err != nil {
		return nil, err
	}
	rb, err := t.find(b)
	if err != nil || ra == rb {
		return nil, err
	}
	ma, err := t.members(ra)
	if err != nil {
		return nil, err
	}
	mb, err := t.members(rb)
	if err != nil {
		return nil, err
	}
	if len(ma)+len(mb) > maxClass {
		t.c.stats.IdentityRefused++
		return nil, nil
	}
	if len(ma) < len(mb) || (len(ma) == len(mb) && rb < ra) {
		ra, rb, ma, mb = rb, ra, mb, ma
	}
	// ra survives: make sure it lists itself, then move rb's members.
	if err := t.set(t.tkey(spaceMembers, ra, ra), nil); err != nil {
		return nil, err
	}
	for _, m := range mb {
		if err := t.set(t.tkey(spaceParent, m), []byte(ra)); err != nil {
			return nil, err
		}
		if err := t.set(t.tkey(spaceMembers, ra, m), nil); err != nil {
			return nil, err
		}
	}
	// rb's member list goes key by key (mb is all of it): a range deletion
	// would make every later read of a transaction-long batch re-fragment
	// all its range deletions.
	for _, m := range mb {
		if err := t.del(t.tkey(spaceMembers, rb, m)); err != nil {
			return nil, err
		}
	}
	t.classes = nil // cached expansions are stale
	return mb, nil
}

// link unions every identifier of one account and returns the identifiers
// whose class changed (see relink).
//
// Most links repeat (every batch of a user's logons links the same
// account names and SIDs), and a link whose identifiers are one class
// already changes nothing, so the links applied by committed transactions
// and by the open one are remembered and skipped: without that, each
// repeat walked the union-find in the store, key by key, and was most of
// the correlate stage's time. Classes only ever merge (nothing splits or
// deletes them, and a restore only adds other replicas' merges), so a link
// once applied stays applied.
func (t *tx) link(keys []string) ([]string, error) {
	var ids, moved []string
	for _, k := range keys {
		if e, ok := ParseEntity(k); ok && unifiable(e) && !WellKnown(e) {
			ids = append(ids, k)
		}
	}
	if len(ids) < 2 {
		return nil, nil
	}
	memo := t.tenant + "\x00" + strings.Join(ids, "\x00")
	p := t.c.pend
	if _, ok := t.c.linked[memo]; ok {
		return nil, nil
	}
	if _, ok := p.linked[memo]; ok {
		return nil, nil
	}
	refused := t.c.stats.IdentityRefused
	for _, k := range ids[1:] {
		mb, err := t.union(ids[0], k)
		if err != nil {
			return nil, err
		}
		moved = appendNew(moved, mb...)
	}
	if t.c.stats.IdentityRefused == refused {
		// Refused unions are not remembered: they are counted each time.
		if p.linked == nil {
			p.linked = map[string]struct{}{}
		}
		p.linked[memo] = struct{}{}
	}
	return moved, nil
}

// relink joins the incidents that identity links learned after their alerts
// bridge. When a union moves class B into class A, every alert indexed under
// a member of B is looked up again with the joined class: it finds the
// alerts of A within its window, as it would have had the link come first.
// (Looking up B's alerts is enough: a pair within the window has one alert
// on each side, and pairs within one side were joined already.)
func (t *tx) relink(moved []string) error {
	var alerts []string
	seen := map[string]bool{}
	for _, m := range moved {
		err := t.everyBucket(spaceIndex, state.AppendString(nil, m), math.MaxInt64, func(_, alert, _ []byte) error {
			if !seen[string(alert)] {
				seen[string(alert)] = true
				alerts = append(alerts, string(alert))
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	for _, id := range alerts {
		rec, err := t.alert(id)
		if err != nil {
			return err
		}
		if rec == nil || rec.Inc == "" {
			continue // released by idle close
		}
		var keys []string
		for _, k := range rec.E {
			if slices.Contains(moved, k) {
				keys = append(keys, k)
			}
		}
		cands, err := t.candidates(id, rec, keys)
		if err != nil {
			return err
		}
		if len(cands) == 0 {
			continue
		}
		if err := t.place(id, rec, cands, nil); err != nil {
			return err
		}
	}
	return nil
}

// expand returns every identifier of e's identity class (e itself for kinds
// without classes).
func (t *tx) expand(key string) ([]string, error) {
	e, ok := ParseEntity(key)
	if !ok || !unifiable(e) {
		return []string{key}, nil
	}
	if c, ok := t.classes[key]; ok {
		return c, nil
	}
	root, err := t.find(key)
	if err != nil {
		return nil, err
	}
	m, err := t.members(root)
	if err != nil {
		return nil, err
	}
	if !slices.Contains(m, key) {
		m = append(m, key)
	}
	if t.classes == nil {
		t.classes = map[string][]string{}
	}
	t.classes[key] = m
	return m, nil
}

// displayRank orders identifiers for display: names an analyst reads first.
func displayRank(key string) int {
	for i, p := range []string{"device:name:", "user:upn:", "user:nt:", "user:sid:", "user:oid:", "device:id:"} {
		if len(key) >= len(p) && key[:len(p)] == p {
			return i
		}
	}
	return 99
}

// assets collapses entity keys to one display entity per identity class, so
// a user named by UPN and SID counts once.
func (t *tx) assets(keys []string) ([]Entity, error) {
	seen := map[string]bool{}
	var out []Entity
	for _, k := range keys {
		e, ok := ParseEntity(k)
		if !ok || WellKnown(e) {
			continue
		}
		if unifiable(e) {
			class, err := t.expand(k)
			if err != nil {
				return nil, err
			}
			best := k
			for _, m := range class {
				if slices.Contains(keys, m) && (displayRank(m) < displayRank(best) || (displayRank(m) == displayRank(best) && m < best)) {
					best = m
				}
			}
			slices.Sort(class)
			sig := class[0]
			if seen[sig] {
				continue
			}
			seen[sig] = true
			e, _ = ParseEntity(best)
		}
		out = append(out, e)
	}
	return out, nil
}
