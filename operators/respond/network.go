package respond

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/stitch-xdr/stitch/operators/correlate"
	"github.com/stitch-xdr/stitch/state"
)

// Block on sight of network indicators. An IP address, URL or domain
// blocked by a playbook's BlockIndicator for an incident, or by an
// operator's indicator until it expires, is matched against the telemetry
// that comes after: a device seen with it (a connection: RemoteIP or
// RemoteUrl of a device table, DeviceNetworkEvents above all), an account
// that clicked it (UrlClickEvents), a delivered message that carries it
// (EmailUrlInfo, joined to the message's recipients from EmailEvents).
// Each match raises a block-on-sight alert, evidence the device, account
// or message and the address, which joins the incident through the
// address (or stands alone for an operator's indicator), and decides the
// block's actions at once: the playbook's device actions on the device,
// its account actions on the account, SoftDeleteEmail on the copy; for an
// operator's indicator, the playbooks' indicatorActions.
//
// Matching is per batch: every address of a batch is looked up in the
// tenant's blocks under the keys it may match (the IP; the URL, its host
// as an IP or as each of its domains), and only when the tenant has a
// network block at all: in the set of the tenant's block keys, read once
// per batch when they are few (maxKeySet), else a store lookup each. A block matches what is seen
// from its start (the earliest alert behind it, or the indicator's time)
// until it expires, by event time; what was processed before the block
// was recorded is not looked at again (unlike files, no index of past
// connections is kept: network telemetry is the largest there is). Each
// (address, incident, device or account) raises one alert and decides
// its actions once, however often the device connects: the ledger keeps
// the pair (T 'S'), refreshed at most once a day while it goes on and aged
// like the other indexes.

// Key spaces of network block on sight (state/LAYOUT.md).
const (
	spaceNetBlock = 'N' // T 'N' tenant matchKey 0x00 incidentId 0x00 playbook -> Block
	spaceSighted  = 'S' // T 'S' tenant matchKey 0x00 incidentId 0x00 observer -> sighting
	spaceMail     = 'U' // T 'U' tenant networkMessageId 0x00 ("to:" recipient | url key) -> mailHalf
)

// mailRetention is how long the message index keeps a half of a message:
// the EmailEvents and EmailUrlInfo rows of one message arrive together,
// give or take a connector's lag.
const mailRetention = 24 * time.Hour

// Reach says that devices or accounts were seen with an address: the
// sighting of an ip: or url: entity in a telemetry batch (correlate.Facts'
// Sightings), with the batch's time.
type Reach struct {
	Entity    string    `json:"entity"`    // ip:<addr> or url:<normalised URL>
	Observers []string  `json:"observers"` // device:id:<id>, device:name:<host>, user:<...>
	Time      time.Time `json:"time"`
}

// Reaches are the sightings of a facts record that block on sight of
// network indicators looks at: addresses seen by devices (a device
// table's RemoteIP or RemoteUrl) and URLs seen by accounts alone (a
// click). The accounts of a device's row are not clicks, nor is the IP a
// user signed in from. A sighting has a day bucket, not a time: its time
// is the batch's latest (MaxTime; the end of the bucket in the records of
// a batch split in several, which carry none but the last), so an
// indicator never matches past its expiry.
func Reaches(f *correlate.Facts) []Reach {
	var out []Reach
	for _, s := range f.Sightings {
		kind, _, _ := strings.Cut(s.Entity, ":")
		if kind != string(correlate.KindIP) && kind != string(correlate.KindURL) {
			continue
		}
		var devices, users []string
		for _, o := range s.Observers {
			switch {
			case strings.HasPrefix(o, "device:"):
				devices = append(devices, o)
			case strings.HasPrefix(o, "user:"):
				users = append(users, o)
			}
		}
		obs := devices
		if len(devices) == 0 && kind == string(correlate.KindURL) {
			obs = users
		}
		if len(obs) == 0 {
			continue
		}
		start := time.Unix(0, s.Bucket*int64(correlate.PrevalenceBucket)).UTC()
		t := start.Add(correlate.PrevalenceBucket - time.Nanosecond)
		if !f.MaxTime.IsZero() && f.MaxTime.Before(t) {
			t = f.MaxTime
			if t.Before(start) {
				t = start
			}
		}
		out = append(out, Reach{Entity: s.Entity, Observers: obs, Time: t})
	}
	return out
}

// matchKey is the key a network indicator is blocked under, the form the
// telemetry's entities take: "ip:" and "url:" entity keys (correlate.IP,
// correlate.URL), "domain:" and the lower-case name.
func matchKey(typ, value string) (string, bool) {
	var e correlate.Entity
	var ok bool
	switch typ {
	case IndicatorIP:
		e, ok = correlate.IP(value)
	case IndicatorURL:
		e, ok = correlate.URL(value)
	case IndicatorDomain:
		d := strings.Trim(strings.ToLower(strings.TrimSpace(value)), ".")
		return "domain:" + d, d != ""
	}
	if !ok {
		return "", false
	}
	return e.Key(), true
}

// candidates appends the match keys an address entity key may be blocked
// under: an IP itself; a URL itself, its host as an IP, or its host and
// each parent domain (a block of contoso.example covers
// cdn.contoso.example).
func candidates(dst []string, entity string) []string {
	e, ok := correlate.ParseEntity(entity)
	if !ok {
		return dst
	}
	switch e.Kind {
	case correlate.KindIP:
		return append(dst, entity)
	case correlate.KindURL:
		dst = append(dst, entity)
		u, err := url.Parse(e.Value)
		if err != nil {
			return dst
		}
		host := strings.ToLower(u.Hostname())
		if a, err := netip.ParseAddr(host); err == nil {
			return append(dst, correlate.Entity{Kind: correlate.KindIP, Value: a.Unmap().WithZone("").String()}.Key())
		}
		for h := strings.Trim(host, "."); strings.Contains(h, "."); h = h[strings.IndexByte(h, '.')+1:] {
			dst = append(dst, "domain:"+h)
		}
	}
	return dst
}

// isNetwork says whether an indicator type is an IP address, URL or domain.
func isNetwork(typ string) bool {
	return typ == IndicatorIP || typ == IndicatorURL || typ == IndicatorDomain
}

// sightTypes are the actions a network block takes on what it is seen
// with: the device, account and mail actions of types.
func sightTypes(types []string) []string {
	out := []string{}
	for _, t := range types {
		switch EntityType(t) {
		case EntityDevice, EntityUser, EntityMail:
			if !slices.Contains(out, t) {
				out = append(out, t)
			}
		}
	}
	return out
}

func netBlockKey(tenant, key, incident, playbook string) []byte {
	return state.AppendString(state.AppendString(hashKey(spaceNetBlock, tenant, key), incident), playbook)
}

// netBlock records (or widens) a network block.
func (r *Responder) netBlock(tenant string, b *Block) error {
	mk, ok := matchKey(b.IndicatorType, b.Indicator)
	if !ok {
		return nil
	}
	key := netBlockKey(tenant, mk, b.Incident, b.Playbook)
	var cur Block
	found, err := r.get(key, &cur)
	if err != nil {
		return err
	}
	if found {
		changed := union(&cur.Alerts, b.Alerts)
		changed = union(&cur.Types, b.Types) || changed
		if !widen(&cur.Time, &cur.Last, b.Time, b.Last) && !changed {
			return nil
		}
		b = &cur
	}
	return r.put(key, b)
}

// unblockNet ends the network blocks of an indicator for an incident.
func (r *Responder) unblockNet(tenant, typ, value, incident string) error {
	mk, ok := matchKey(typ, value)
	if !ok {
		return nil
	}
	return r.deletePrefix(state.AppendString(hashKey(spaceNetBlock, tenant, mk), incident))
}

// deletePrefix deletes every key under prefix.
func (r *Responder) deletePrefix(prefix []byte) error {
	var keys [][]byte
	if err := r.store.Scan(prefix, func(k, _ []byte) error {
		keys = append(keys, slices.Clone(k))
		return nil
	}); err != nil {
		return err
	}
	for _, k := range keys {
		if err := r.store.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

var errMany = errors.New("many")

// maxKeySet is how many network (or file) blocks a tenant may have for a
// batch to read their keys into a set first (one scan of at most this many
// keys), so that its addresses (or files) that match none, nearly all of
// them, cost a map lookup each instead of a store lookup.
var maxKeySet = 1024

// matcher looks the addresses of one signal up, each key once.
type matcher struct {
	r      *Responder
	tenant string
	// keys are the match keys of the tenant's blocks, when it has at most
	// maxKeySet of them; nil: look every key up in the store.
	keys   map[string]bool
	blocks map[string][]Block
}

// matcher returns the matcher of a signal of tenant, or nil when the
// tenant has no network block, and its batch nothing to match.
func (r *Responder) matcher(tenant string) (*matcher, error) {
	keys, some, err := r.blockKeys(spaceNetBlock, tenant)
	if err != nil || !some {
		return nil, err
	}
	return &matcher{r: r, tenant: tenant, keys: keys, blocks: map[string][]Block{}}, nil
}

// blockKeys reads the keys the tenant's blocks in space are under (a
// network block's match key, a file block's hash: what follows the tenant
// up to the next 0x00) into a set, when the tenant has at most maxKeySet
// blocks there; keys is nil when it has more. some says whether it has
// any.
func (r *Responder) blockKeys(space byte, tenant string) (keys map[string]bool, some bool, err error) {
	keys = map[string]bool{}
	prefix := state.TenantKey(nil, space, tenant)
	n := 0
	err = r.store.Scan(prefix, func(k, _ []byte) error {
		if n++; n > maxKeySet {
			return errMany
		}
		rest := k[len(prefix):]
		if i := slices.Index(rest, 0); i >= 0 {
			keys[string(rest[:i])] = true
		}
		return nil
	})
	switch {
	case errors.Is(err, errMany):
		return nil, true, nil
	case err != nil:
		return nil, false, err
	}
	return keys, n > 0, nil
}

// match returns the blocks under key, in key order (by incident, then
// playbook).
func (m *matcher) match(key string) ([]Block, error) {
	if bs, ok := m.blocks[key]; ok || m.keys != nil && !m.keys[key] {
		return bs, nil
	}
	var bs []Block
	err := m.r.scan(hashKey(spaceNetBlock, m.tenant, key), func(v []byte) error {
		bs = append(bs, Block{})
		return json.Unmarshal(v, &bs[len(bs)-1])
	})
	if err != nil {
		return nil, err
	}
	m.blocks[key] = bs
	return bs, nil
}

// hit is what an address matched for one incident: the keys it matched
// (in candidates' order) and the blocks under them live at the time.
type hit struct {
	incident string
	keys     []string
	blocks   []Block
}

// hits are the blocks live at t that entity matches, by incident.
func (m *matcher) hits(entity string, t time.Time) ([]hit, error) {
	var out []hit
	for _, k := range candidates(nil, entity) {
		bs, err := m.match(k)
		if err != nil {
			return nil, err
		}
		for _, b := range bs {
			if !b.live(t) || t.Before(b.Time) {
				continue
			}
			i := slices.IndexFunc(out, func(h hit) bool { return h.incident == b.Incident })
			if i < 0 {
				out, i = append(out, hit{incident: b.Incident}), len(out)
			}
			h := &out[i]
			if !slices.Contains(h.keys, k) {
				h.keys = append(h.keys, k)
			}
			h.blocks = append(h.blocks, b)
		}
	}
	return out, nil
}

// sighting is a T 'S' entry: an (address, incident, observer) that has
// raised its alert. Time is when it was last seen (refreshed at most once
// a day), which the sweep ages it by.
type sighting struct {
	First time.Time `json:"first"`
	Time  time.Time `json:"time"`
}

// once records that observer was seen at t with the keys of h, and
// returns those it is new for; a known one is refreshed when it was last
// seen a day or more before t.
func (r *Responder) once(tenant string, h *hit, observer string, t time.Time) ([]string, error) {
	var fresh []string
	for _, k := range h.keys {
		key := state.AppendString(state.AppendString(hashKey(spaceSighted, tenant, k), h.incident), observer)
		var cur sighting
		ok, err := r.get(key, &cur)
		switch {
		case err != nil:
			return nil, err
		case !ok:
			fresh = append(fresh, k)
			err = r.put(key, &sighting{First: t, Time: t})
		case t.Sub(cur.Time) >= 24*time.Hour:
			cur.Time = t
			err = r.put(key, &cur)
		}
		if err != nil {
			return nil, err
		}
	}
	return fresh, nil
}

// reached matches the addresses devices and accounts were seen with.
func (r *Responder) reached(res *Result, tenant string, rs []Reach) error {
	m, err := r.matcher(tenant)
	if err != nil || m == nil {
		return err
	}
	var last time.Time
	for i := range rs {
		if rs[i].Time.After(last) {
			last = rs[i].Time
		}
	}
	if err := r.advance(tenant, last); err != nil {
		return err
	}
	for i := range rs {
		x := &rs[i]
		if !validPart(x.Entity) {
			continue
		}
		hits, err := m.hits(x.Entity, x.Time)
		if err != nil {
			return err
		}
		for j := range hits {
			h := &hits[j]
			for _, o := range x.Observers {
				if !validPart(o) {
					continue
				}
				fresh, err := r.once(tenant, h, o, x.Time)
				if err != nil {
					return err
				}
				if len(fresh) == 0 {
					continue
				}
				if err := r.onReach(res, tenant, h, fresh, x, o); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// onReach decides the actions of the blocks of h on a device or account
// that was seen with the address, and raises the alert.
func (r *Responder) onReach(res *Result, tenant string, h *hit, fresh []string, x *Reach, observer string) error {
	var target Target
	var where sightEvidence
	var id, name string
	device := strings.HasPrefix(observer, "device:")
	if v, ok := strings.CutPrefix(observer, "device:id:"); ok {
		id = v
	} else if v, ok := strings.CutPrefix(observer, "device:name:"); ok {
		name = v
	}
	if device {
		target = Target{DeviceID: id, DeviceName: name}
		where = sightEvidence{"device", correlate.Evidence{MdeDeviceID: id, DeviceDNSName: name}, []string{observer}}
	} else {
		u := userAccount(observer)
		target = Target{AccountObjectID: u.AzureAdUserID, UPN: u.UserPrincipalName, SID: u.UserSID}
		where = sightEvidence{"user", correlate.Evidence{UserAccount: u}, []string{observer}}
	}
	verb := "clicking"
	if device {
		verb = "reaching"
	}
	for _, b := range h.blocks {
		for _, typ := range b.Types {
			if et := EntityType(typ); device && et != EntityDevice || !device && et != EntityUser {
				continue
			}
			d := decision{tenant: tenant, incident: b.Incident, typ: typ, playbook: b.Playbook, alerts: b.Alerts,
				created: b.Time, updated: b.Last, target: target}
			if _, err := r.record(res, &d, sightReason(&b, verb, x.Entity)); err != nil {
				return err
			}
		}
	}
	var title, category string
	if device {
		title = fmt.Sprintf("Device reached a blocked %s: %s connected to %s", keyWords(fresh[0]), observerName(observer), address(x.Entity, fresh[0]))
		category = "CommandAndControl"
	} else {
		title = fmt.Sprintf("Blocked %s clicked: %s clicked %s", keyWords(fresh[0]), observerName(observer), address(x.Entity, fresh[0]))
		category = "InitialAccess"
	}
	raise(res, sightID(tenant, fresh, h.incident, observer), title, category, x.Time, where, addressEvidence(x.Entity, h))
	return nil
}

// mailHalf is a T 'U' entry: a recipient of a message, or a URL in it.
type mailHalf struct {
	Recipient string    `json:"recipient,omitempty"`
	URL       string    `json:"url,omitempty"`
	Message   string    `json:"networkMessageId"`
	Time      time.Time `json:"time"`
}

// mail joins messages' recipients and URLs and soft-deletes each copy of
// a message that carries a blocked URL.
func (r *Responder) mail(res *Result, tenant string, ms []correlate.MailFact) error {
	m, err := r.matcher(tenant)
	if err != nil || m == nil {
		return err
	}
	for i := range ms {
		if err := r.indexMail(res, tenant, m, &ms[i]); err != nil {
			return err
		}
	}
	return nil
}

// indexMail indexes a half of a message and joins it to the other halves
// known.
func (r *Responder) indexMail(res *Result, tenant string, m *matcher, f *correlate.MailFact) error {
	msg, to := strings.TrimSpace(f.NetworkMessageID), strings.ToLower(strings.TrimSpace(f.Recipient))
	if msg == "" || !validPart(msg) || !validPart(to) {
		return nil
	}
	var half string
	var h mailHalf
	switch {
	case to != "":
		half, h = "to:"+to, mailHalf{Recipient: to, Message: msg, Time: f.Time}
	case f.URL != "":
		e, ok := correlate.URL(f.URL)
		if !ok || !validPart(e.Key()) {
			return nil
		}
		half, h = e.Key(), mailHalf{URL: e.Key(), Message: msg, Time: f.Time}
	default:
		return nil
	}
	if err := r.advance(tenant, f.Time); err != nil {
		return err
	}
	prefix := state.AppendString(state.TenantKey(nil, spaceMail, tenant), strings.ToLower(msg))
	key := append(slices.Clip(prefix), half...)
	var cur mailHalf
	if ok, err := r.get(key, &cur); err != nil || ok && !f.Time.After(cur.Time) {
		return err // known, and not seen later than known: it was joined when it came
	}
	if err := r.put(key, &h); err != nil {
		return err
	}
	// The other halves of the message: each makes a copy (recipient, URL).
	var others []mailHalf
	if err := r.scan(prefix, func(v []byte) error {
		var o mailHalf
		if err := json.Unmarshal(v, &o); err != nil {
			return err
		}
		if (o.Recipient != "") != (h.Recipient != "") {
			others = append(others, o)
		}
		return nil
	}); err != nil {
		return err
	}
	for _, o := range others {
		rcpt, u := h, o
		if h.URL != "" {
			rcpt, u = o, h
		}
		if err := r.mailCopy(res, tenant, m, &rcpt, &u); err != nil {
			return err
		}
	}
	return nil
}

// mailCopy acts on one copy (a recipient of a message) if a URL it
// carries is blocked: SoftDeleteEmail of the copy, where the block takes
// it, and an alert per (address, incident, recipient).
func (r *Responder) mailCopy(res *Result, tenant string, m *matcher, rcpt, u *mailHalf) error {
	t := rcpt.Time
	if u.Time.After(t) {
		t = u.Time
	}
	hits, err := m.hits(u.URL, t)
	if err != nil {
		return err
	}
	target := Target{NetworkMessageID: rcpt.Message, Recipient: rcpt.Recipient}
	for j := range hits {
		h := &hits[j]
		for _, b := range h.blocks {
			if !slices.Contains(b.Types, SoftDeleteEmail) {
				continue
			}
			d := decision{tenant: tenant, incident: b.Incident, typ: SoftDeleteEmail, playbook: b.Playbook, alerts: b.Alerts,
				created: b.Time, updated: b.Last, target: target}
			if _, err := r.record(res, &d, sightReason(&b, "carrying", u.URL)); err != nil {
				return err
			}
		}
		observer := "to:" + rcpt.Recipient
		fresh, err := r.once(tenant, h, observer, t)
		if err != nil {
			return err
		}
		if len(fresh) == 0 {
			continue
		}
		var keys []string
		if e, ok := correlate.MailMessage(rcpt.Message); ok {
			keys = append(keys, e.Key())
		}
		if e, ok := correlate.Mailbox(rcpt.Recipient); ok {
			keys = append(keys, e.Key())
		}
		where := sightEvidence{"mailmessage", correlate.Evidence{NetworkMessageID: rcpt.Message, PrimaryAddress: rcpt.Recipient}, keys}
		title := fmt.Sprintf("Blocked %s delivered: message %s to %s carries %s", keyWords(fresh[0]), rcpt.Message, rcpt.Recipient, address(u.URL, fresh[0]))
		raise(res, sightID(tenant, fresh, h.incident, observer), title, "InitialAccess", t, where, addressEvidence(u.URL, h))
	}
	return nil
}

// sightReason is the reason of an action a network block decides on
// what was seen with the address (verb: reaching, clicking, carrying).
func sightReason(b *Block, verb, entity string) string {
	what := b.IndicatorType + " " + b.Indicator
	if mk, _ := matchKey(b.IndicatorType, b.Indicator); mk == entity {
		return fmt.Sprintf("%s, %s blocked %s", b.Reason, verb, what)
	}
	_, v, _ := strings.Cut(entity, ":")
	return fmt.Sprintf("%s, %s %s (blocked %s)", b.Reason, verb, v, what)
}

// sightID is the id of the alert of an (address, incident, observer) by
// the keys the address was new for: the same sighting raised again is the
// same alert.
func sightID(tenant string, keys []string, incident, observer string) string {
	h := sha256.New()
	for _, s := range append([]string{tenant, incident, observer}, keys...) {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	return "sight-" + hex.EncodeToString(h.Sum(nil)[:12])
}

// keyWords names the kind of address a match key is.
func keyWords(key string) string {
	switch kind, _, _ := strings.Cut(key, ":"); kind {
	case string(correlate.KindIP):
		return "IP address"
	case string(correlate.KindURL):
		return "URL"
	}
	return "domain"
}

// address says in words the address seen, and the domain it matched.
func address(entity, key string) string {
	_, v, _ := strings.Cut(entity, ":")
	if d, ok := strings.CutPrefix(key, "domain:"); ok {
		return v + " (in " + d + ")"
	}
	return v
}

// addressEvidence is the alert's evidence of the address: the address
// seen, by its entity key, the keys it matched (an IP a URL's host is)
// and the entities the blocks came from (the URL whose domain a playbook
// blocked), so that the alert joins the incident that blocked it.
func addressEvidence(entity string, h *hit) sightEvidence {
	keys := []string{entity}
	add := func(k string) {
		if k != "" && !strings.HasPrefix(k, "domain:") && !slices.Contains(keys, k) {
			keys = append(keys, k)
		}
	}
	for _, k := range h.keys {
		add(k)
	}
	for _, b := range h.blocks {
		add(b.Entity)
	}
	kind, v, _ := strings.Cut(entity, ":")
	if kind == string(correlate.KindIP) {
		return sightEvidence{"ip", correlate.Evidence{IPAddress: v}, keys}
	}
	return sightEvidence{"url", correlate.Evidence{URL: v}, keys}
}

// userAccount is the account an observer's user key names.
func userAccount(observer string) *correlate.UserAccount {
	v, _ := strings.CutPrefix(observer, "user:")
	u := &correlate.UserAccount{}
	switch k, rest, _ := strings.Cut(v, ":"); k {
	case "oid":
		u.AzureAdUserID = rest
	case "sid":
		u.UserSID = rest
	case "upn":
		u.UserPrincipalName = rest
	case "nt":
		u.DomainName, u.AccountName, _ = strings.Cut(rest, `\`)
	}
	return u
}

// observerName is an observer key in words: a device's id or host, an
// account's identifier.
func observerName(observer string) string {
	for _, p := range []string{"device:id:", "device:name:", "user:oid:", "user:sid:", "user:upn:", "user:nt:"} {
		if v, ok := strings.CutPrefix(observer, p); ok {
			return v
		}
	}
	return observer
}
