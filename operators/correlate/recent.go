package correlate

import "bytes"

// Recent values. An alert that joins an incident reads the other alert's
// record and the incident, mostly ones that changed a little while ago;
// from Pebble each is a read through every level of the LSM (a block of
// it often not cached). So the correlator keeps the committed values of
// recent alert records and incidents (T 'a' and T 'i' keys) in memory:
//
//   - filled only from committed transactions, after their commit (the
//     values and deletions they wrote, restores included), and dropped
//     whole when a commit fails;
//   - never read for a key the open transaction wrote or deleted (its
//     pending set, filter.go): that one is read through the transaction;
//   - bounded: two generations of at most maxRecentBytes of values each;
//     when the newer fills it becomes the older, the older goes, and a
//     value read from the older moves to the newer.
const maxRecentBytes = 16 << 20

type recentValues struct {
	cur, old map[string][]byte
	curBytes int
	budget   int
}

// cached says whether key's values are kept here.
func cached(k []byte) bool {
	return len(k) > 2 && k[0] == 'T' && (k[1] == spaceAlerts || k[1] == spaceIncidents)
}

func (r *recentValues) get(k []byte) ([]byte, bool) {
	if v, ok := r.cur[string(k)]; ok {
		return v, true
	}
	v, ok := r.old[string(k)]
	if ok {
		delete(r.old, string(k))
		r.put(string(k), v)
	}
	return v, ok
}

func (r *recentValues) put(k string, v []byte) {
	if r.budget <= 0 {
		return
	}
	if r.curBytes+len(k)+len(v) > r.budget {
		r.old, r.cur, r.curBytes = r.cur, nil, 0
	}
	if r.cur == nil {
		r.cur = map[string][]byte{}
	}
	delete(r.old, k) // superseded
	r.cur[k] = v
	r.curBytes += len(k) + len(v)
}

func (r *recentValues) del(k []byte) {
	delete(r.cur, string(k))
	delete(r.old, string(k))
}

func (r *recentValues) reset() { r.cur, r.old, r.curBytes = nil, nil, 0 }

// withRecent sets the bytes of a generation of recent values (tests; 0
// turns them off).
func withRecent(n int) Option { return func(c *config) { c.recentBudget = n } }

// recentWrite is a committed write of a cached key (val nil: a deletion).
type recentWrite struct {
	key string
	val []byte
}

// stage adds to ws a copy of a transaction's write of a cached key (read by
// Correlator.staged before its batch commits); after the commit,
// committed applies them.
func (r *recentValues) stage(ws []recentWrite, del bool, k, v []byte) []recentWrite {
	if r.budget <= 0 || !cached(k) {
		return ws
	}
	w := recentWrite{key: string(k)}
	if !del {
		w.val = bytes.Clone(v)
		if w.val == nil {
			w.val = []byte{}
		}
	}
	return append(ws, w)
}

func (r *recentValues) committed(ws []recentWrite) {
	for _, w := range ws {
		if w.val == nil {
			r.del([]byte(w.key))
		} else {
			r.put(w.key, w.val)
		}
	}
}
