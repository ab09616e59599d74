package correlate

import (
	"bytes"
	"strings"
	"time"

	"github.com/stitch-xdr/stitch/state"
)

// Prevalence: an entity seen by more than N distinct devices or more than N
// distinct users in telemetry within the lookback is common (a CDN address,
// a signed system binary, a newsletter sender) and links nothing.
//
//	B 'v' day tenant entity 0x00 observer -> empty
//
// Only telemetry sightings count, and only those written before the alert is
// applied, so the first alerts to share a prevalent entity are not joined
// either. Devices, users and mail messages are not tracked: a device or an
// account is what an attack is about, and a message id is unique by nature.

const spaceSightings = 'v'

func tracked(k Kind) bool {
	return k != KindDevice && k != KindUser && k != KindMailMessage
}

// observerCount is how many distinct devices and users a process knows it
// recorded as observers of one entity in one bucket (see recordSighting).
type observerCount struct{ devices, users int }

func (c observerCount) over(n int) bool { return c.devices > n || c.users > n }

func (t *tx) recordSighting(s Sighting) error {
	e, ok := ParseEntity(s.Entity)
	if !ok || !tracked(e.Kind) {
		return nil
	}
	p := t.c.pend
	pk := state.AppendString(state.BucketKey(t.buf[:0], spaceSightings, s.Bucket, t.tenant), s.Entity)
	t.buf = pk
	// A bucket that already holds more than the threshold of devices or of
	// users of the entity makes it prevalent in every window that holds the
	// bucket, and no window reads part of a bucket: more observers there
	// cannot change a decision, so they are not recorded (nor sent to the
	// changelog). The counts are of what this process recorded, never more
	// than the store holds.
	n := t.c.cfg.prevalenceN
	known := t.c.observers[string(pk)]
	pend := p.observers[string(pk)]
	if (observerCount{known.devices + pend.devices, known.users + pend.users}).over(n) {
		return nil
	}
	plen := len(pk)
	for _, o := range s.Observers {
		k := append(t.buf[:plen], o...)
		t.buf = k
		// Every batch of a busy entity names the same observers again:
		// one recorded by a committed transaction (or this one) is in the
		// store already, and writing it again would only add a changelog
		// record. (Sightings are deleted only with their whole bucket,
		// once it is past every window; a late one of such a bucket
		// counts nowhere either way.)
		if _, ok := t.c.sighted[string(k)]; ok {
			continue
		}
		if _, ok := p.sighted[string(k)]; ok {
			continue
		}
		if err := t.set(k, nil); err != nil {
			return err
		}
		if p.sighted == nil {
			p.sighted, p.observers = map[string]struct{}{}, map[string]observerCount{}
		}
		p.sighted[string(k)] = struct{}{}
		if strings.HasPrefix(o, "device:") {
			pend.devices++
		} else {
			pend.users++
		}
		p.observers[string(k[:plen])] = pend
		if (observerCount{known.devices + pend.devices, known.users + pend.users}).over(n) {
			break
		}
	}
	return nil
}

// keepSightings adds a committed transaction's recorded sightings and
// observer counts to the caches. Both start over together when either
// would pass maxSighted: a count must never include an observer that the
// sightings cache no longer holds, or a rewrite would count it twice.
func (c *Correlator) keepSightings(p *pending) {
	if len(c.sighted)+len(p.sighted) > maxSighted || len(c.observers)+len(p.observers) > maxSighted {
		c.sighted, c.observers = nil, nil
	}
	c.sighted = keepCommitted(c.sighted, p.sighted, maxSighted)
	if c.observers == nil {
		c.observers = make(map[string]observerCount, len(p.observers))
	}
	for k, v := range p.observers {
		w := c.observers[k]
		c.observers[k] = observerCount{w.devices + v.devices, w.users + v.users}
	}
}

// prevalenceMemo is an entity key and the day a prevalence judgement of it
// was made for (one call memoizes them).
type prevalenceMemo struct {
	key string
	day int64
}

// prevalent says whether e (key) was seen by more than the threshold of
// devices or users in [at-lookback, at].
func (t *tx) prevalent(e Entity, key string, at time.Time) (bool, error) {
	if !tracked(e.Kind) {
		return false, nil
	}
	memo := prevalenceMemo{key, at.Truncate(PrevalenceBucket).Unix()}
	if p, ok := t.prevalence[memo]; ok {
		return p, nil
	}
	n := t.c.cfg.prevalenceN
	var devices, users map[string]bool // made at the first sighting
	first := state.Bucket(at.Add(-t.c.cfg.lookback), PrevalenceBucket)
	last := state.Bucket(at, PrevalenceBucket)
	prevalent := false
	// One iterator over the sightings space for every bucket of the
	// lookback that may hold sightings of e (a seek per bucket): an
	// iterator per bucket cost as much to open and close as its seek
	// (BenchmarkCorrelate's profile), and the filters (filter.go) say
	// which buckets hold none.
	// The prefix is built in the correlator's scratch (mayHave keeps
	// nothing of it, and the iterator's bounds are the space's).
	var it *state.Iter
	for b := first; b <= last && !prevalent; b++ {
		t.c.pbuf = state.AppendString(state.BucketKey(t.c.pbuf[:0], spaceSightings, b, t.tenant), key)
		pfx := t.c.pbuf
		may, err := t.c.mayHave(pfx)
		if err != nil {
			return false, err
		}
		if !may {
			continue
		}
		if it == nil {
			if it, err = t.b.NewIter(state.BucketPrefix(nil, spaceSightings, first)[:2]); err != nil {
				return false, err
			}
			defer it.Close()
		}
		for ok := it.SeekGE(pfx); ok && bytes.HasPrefix(it.Key(), pfx); ok = it.Next() {
			o := string(it.Key()[len(pfx):])
			if devices == nil {
				devices, users = map[string]bool{}, map[string]bool{}
			}
			if strings.HasPrefix(o, "device:") {
				devices[o] = true
			} else {
				users[o] = true
			}
			if len(devices) > n || len(users) > n {
				prevalent = true
				break
			}
		}
		if err := it.Error(); err != nil {
			return false, err
		}
	}
	t.prevalence[memo] = prevalent
	return prevalent, nil
}
