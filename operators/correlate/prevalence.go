package correlate

import (
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

func (t *tx) recordSighting(s Sighting) error {
	e, ok := ParseEntity(s.Entity)
	if !ok || !tracked(e.Kind) {
		return nil
	}
	p := t.c.pend
	for _, o := range s.Observers {
		k := state.BucketKey(t.buf[:0], spaceSightings, s.Bucket, t.tenant)
		k = state.AppendString(k, s.Entity)
		k = append(k, o...)
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
		if err := t.b.Set(k, nil); err != nil {
			return err
		}
		if p.sighted == nil {
			p.sighted = map[string]struct{}{}
		}
		p.sighted[string(k)] = struct{}{}
	}
	return nil
}

// prevalent says whether e was seen by more than the threshold of devices
// or users in [at-lookback, at].
func (t *tx) prevalent(e Entity, at time.Time) (bool, error) {
	if !tracked(e.Kind) {
		return false, nil
	}
	memo := e.Key() + "@" + at.Truncate(PrevalenceBucket).String()
	if p, ok := t.prevalence[memo]; ok {
		return p, nil
	}
	n := t.c.cfg.prevalenceN
	devices, users := map[string]bool{}, map[string]bool{}
	first := state.Bucket(at.Add(-t.c.cfg.lookback), PrevalenceBucket)
	last := state.Bucket(at, PrevalenceBucket)
	prevalent := false
	for b := first; b <= last && !prevalent; b++ {
		pfx := state.AppendString(state.BucketKey(nil, spaceSightings, b, t.tenant), e.Key())
		it, err := t.b.NewIter(pfx)
		if err != nil {
			return false, err
		}
		for ok := it.First(); ok; ok = it.Next() {
			o := string(it.Key()[len(pfx):])
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
		err = it.Error()
		it.Close()
		if err != nil {
			return false, err
		}
	}
	t.prevalence[memo] = prevalent
	return prevalent, nil
}
