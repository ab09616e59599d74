package respond

import (
	"bytes"
	"encoding/json"
	"time"

	"github.com/stitch-xdr/stitch/state"
)

// spaceClock is T 'W' tenant -> the latest event time of the tenant's
// indexed telemetry (i64 Unix ns): the clock its index ages by.
const spaceClock = 'W'

// DefaultRetention is how long the attachment and device indexes keep an
// entry, by the tenant's event time: the window in which a file found
// malicious has its earlier copies acted on.
const DefaultRetention = 30 * 24 * time.Hour

// Option configures a Responder.
type Option func(*Responder)

// WithRetention sets the index retention (DefaultRetention when unset).
func WithRetention(d time.Duration) Option { return func(r *Responder) { r.retention = d } }

// WithOwnership tells Sweep which tenants this process owns now: the store
// keeps the state of partitions that moved elsewhere, and only the owner
// may delete from it (its deletions go to the tenant's changelog
// partition).
func WithOwnership(owns func(tenant string) bool) Option { return func(r *Responder) { r.owns = owns } }

func clockKey(tenant string) []byte { return state.TenantKey(nil, spaceClock, tenant) }

// advance moves the tenant's index clock to t if t is later.
func (r *Responder) advance(tenant string, t time.Time) error {
	key := clockKey(tenant)
	v, ok, err := r.store.Get(key)
	if err != nil || ok && len(v) == 8 && state.ReadInt64(v) >= t.UnixNano() {
		return err
	}
	return r.store.Set(key, state.AppendInt64(nil, t.UnixNano()))
}

func (r *Responder) clock(tenant string) (time.Time, bool, error) {
	v, ok, err := r.store.Get(clockKey(tenant))
	if err != nil || !ok || len(v) != 8 {
		return time.Time{}, false, err
	}
	return time.Unix(0, state.ReadInt64(v)).UTC(), true, nil
}

// retained says whether an index entry of time t still counts for a block
// at time at: within the retention before it. The same answer whenever
// the block is applied, so the actions do not depend on when the sweep ran.
func (r *Responder) retained(t, at time.Time) bool { return !t.Before(at.Add(-r.retention)) }

// Sweep deletes, from where the last sweep stopped, up to limit index
// entries of owned tenants that are older than the tenant's clock minus
// the retention (a day more, so that a block a little behind the clock
// still finds what it may act on): delivered copies, files on devices,
// addresses' sightings (network.go) and, after a day, the message index. It returns how many it deleted; the
// deletions are changes of the open transaction, logged like any other.
func (r *Responder) Sweep(limit int) (int, error) {
	type entry struct {
		key    []byte
		tenant string
		t      time.Time
		keep   time.Duration
	}
	// The message index keeps a day at most: the halves of one message
	// arrive together. Sightings of blocked addresses age like the file
	// indexes, by when they were last seen.
	mail := min(mailRetention, r.retention)
	var batch []entry
	scanned := 0
	for _, space := range []byte{spaceAttachment, spaceDevice, spaceSighted, spaceMail} {
		keep := r.retention
		switch space {
		case spaceMail:
			keep = mail
		case spaceDevice:
			keep += r.seenStep() // an entry's time may be that far behind its latest sighting (seenStep)
		}
		prefix := []byte{'T', space}
		from := r.cursor[space]
		err := r.store.Scan(prefix, func(k, v []byte) error {
			if scanned >= limit || from != nil && bytes.Compare(k, from) <= 0 {
				return nil
			}
			scanned++
			tenant, _, ok := state.KeyTenant(k)
			if !ok {
				return nil
			}
			var e struct {
				Time time.Time `json:"time"`
			}
			if json.Unmarshal(v, &e) == nil {
				batch = append(batch, entry{bytes.Clone(k), string(tenant), e.Time, keep})
			}
			r.cursor[space] = bytes.Clone(k)
			return nil
		})
		if err != nil {
			return 0, err
		}
		if scanned < limit {
			r.cursor[space] = nil // the space is done: start over next time
		}
	}
	deleted := 0
	clocks := map[string]time.Time{}
	for _, e := range batch {
		if r.owns != nil && !r.owns(e.tenant) {
			continue
		}
		c, seen := clocks[e.tenant]
		if !seen {
			var err error
			if c, _, err = r.clock(e.tenant); err != nil {
				return deleted, err
			}
			clocks[e.tenant] = c
		}
		if c.IsZero() || !e.t.Before(c.Add(-e.keep-24*time.Hour)) {
			continue
		}
		if err := r.store.Delete(e.key); err != nil {
			return deleted, err
		}
		deleted++
	}
	return deleted, nil
}
