package respond

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/stitch-xdr/stitch/operators/correlate"
	"github.com/stitch-xdr/stitch/state"
)

// Store is the ledger's storage: a state.TxStore, whose writes commit with
// the Kafka transaction that produced the actions they record. Keys follow
// state/LAYOUT.md (timeless keys of the tenant), so that the pipeline
// routes every change to the changelog partition of the tenant.
type Store interface {
	Get(key []byte) ([]byte, bool, error)
	Set(key, val []byte) error
	Scan(prefix []byte, fn func(key, val []byte) error) error
	Delete(key []byte) error
}

// Key spaces of the ledger (state/LAYOUT.md).
const (
	spaceAction     = 'A' // T 'A' tenant actionId -> Action
	spaceAttachment = 'M' // T 'M' tenant hash 0x00 networkMessageId 0x00 recipient -> AttachmentFact
	spaceDevice     = 'D' // T 'D' tenant hash 0x00 deviceId -> FileSeen
	spaceBlock      = 'K' // T 'K' tenant hash 0x00 incidentId 0x00 playbook -> Block
	spaceGroup      = 'G' // T 'G' tenant deviceId -> DeviceGroupFact (groups.go)
	// Network block on sight (network.go): 'N' blocks, 'S' sightings, 'U'
	// messages' recipients and URLs.
)

// Signal is one input of the responder: an incident version, or telemetry
// that response indexes (delivered attachments, files seen on devices).
type Signal struct {
	Tenant      string                     `json:"tenant"`
	Incident    *correlate.Incident        `json:"incident,omitempty"`
	Attachments []correlate.AttachmentFact `json:"attachments,omitempty"`
	Files       []FileSeen                 `json:"files,omitempty"`
	// DeviceGroups are devices' groups (DeviceInfo), which automation
	// rules may scope by.
	DeviceGroups []correlate.DeviceGroupFact `json:"deviceGroups,omitempty"`
	// Decisions are analysts' approvals and rejections; Outcomes are
	// executors' reports.
	Decisions []Decision `json:"decisions,omitempty"`
	Outcomes  []Outcome  `json:"outcomes,omitempty"`
	// Indicators are operators' custom indicators.
	Indicators []Indicator `json:"indicators,omitempty"`
	// Network are addresses devices and accounts were seen with, and Mail
	// messages' recipients and URLs: what network indicators are blocked
	// on sight in (network.go).
	Network []Reach              `json:"network,omitempty"`
	Mail    []correlate.MailFact `json:"mail,omitempty"`
}

// FileSeen says a device saw a file (a telemetry sighting of its hash).
type FileSeen struct {
	Hash       string    `json:"hash"`
	DeviceID   string    `json:"deviceId,omitempty"`
	DeviceName string    `json:"deviceName,omitempty"`
	Time       time.Time `json:"time"`
}

// Block is a file found malicious by a playbook for an incident: every
// copy known and to come gets the playbook's file actions. A network
// block (an IP address, URL or domain: Indicator, IndicatorType; no Hash)
// gets its actions on what is seen with it from then on (network.go).
type Block struct {
	Hash     string   `json:"hash"`
	Incident string   `json:"incidentId"`
	Playbook string   `json:"playbook"`
	Reason   string   `json:"reason"`
	Alerts   []string `json:"alerts"`
	Types    []string `json:"types"`
	// Time and Last are the times of the earliest and latest alerts behind
	// the block.
	Time     time.Time `json:"time"`
	Last     time.Time `json:"last"`
	FileName string    `json:"fileName,omitempty"`
	IsSHA1   bool      `json:"sha1,omitempty"`
	// Expires ends an indicator's block (zero: never).
	Expires time.Time `json:"expires,omitzero"`
	// Indicator and IndicatorType name a network block's indicator;
	// Entity is the entity key of the evidence it was blocked from, which
	// its alerts name so that they join the incident.
	Indicator     string `json:"indicator,omitempty"`
	IndicatorType string `json:"indicatorType,omitempty"`
	Entity        string `json:"entity,omitempty"`
}

// Problem is a decision that could not become an action: its target could
// not be built (a device action on a device with no id). It is reported,
// never emitted half-filled.
type Problem struct {
	Type     string `json:"type"`
	Incident string `json:"incidentId"`
	Playbook string `json:"playbook"`
	Error    string `json:"error"`
}

// Result is what one signal changed: each action (new, or a new version)
// to produce, and the decisions that could not be built.
type Result struct {
	Actions  []Action
	Problems []Problem
	// Alerts are block-on-sight alerts (sight.go), for the correlator.
	Alerts []Alert
}

// Responder decides actions and keeps their ledger in a Store.
type Responder struct {
	store     Store
	pb        *Playbooks
	retention time.Duration
	owns      func(tenant string) bool
	cursor    map[byte][]byte // where the last Sweep stopped, per index space
	kbuf      []byte          // a key being built; the store copies what it keeps
	vbuf      []byte          // a device index entry being built (appendSeen)
	plain     bool            // vbuf holds it
}

// New returns a responder over store with playbooks pb (nil: the defaults).
func New(store Store, pb *Playbooks, opts ...Option) *Responder {
	if pb == nil {
		pb = Default()
	}
	r := &Responder{store: store, pb: pb, retention: DefaultRetention, cursor: map[byte][]byte{}}
	for _, o := range opts {
		o(r)
	}
	if r.retention <= 0 {
		r.retention = DefaultRetention
	}
	return r
}

// Apply handles one signal. The same signal applied twice changes nothing
// the second time; the final ledger does not depend on the order in which
// an incident and the telemetry about its files arrive.
func (r *Responder) Apply(s *Signal) (Result, error) {
	var res Result
	if !state.ValidTenant(s.Tenant) {
		return res, fmt.Errorf("respond: invalid tenant %q", s.Tenant)
	}
	if s.Incident != nil {
		if err := r.incident(&res, s.Tenant, s.Incident); err != nil {
			return res, err
		}
	}
	for i := range s.Attachments {
		if err := r.attachment(&res, s.Tenant, &s.Attachments[i]); err != nil {
			return res, err
		}
	}
	for i := range s.DeviceGroups {
		if err := r.deviceGroup(s.Tenant, &s.DeviceGroups[i]); err != nil {
			return res, err
		}
	}
	if len(s.Files) > 0 {
		if err := r.files(&res, s.Tenant, s.Files); err != nil {
			return res, err
		}
	}
	if len(s.Network) > 0 {
		if err := r.reached(&res, s.Tenant, s.Network); err != nil {
			return res, err
		}
	}
	if len(s.Mail) > 0 {
		if err := r.mail(&res, s.Tenant, s.Mail); err != nil {
			return res, err
		}
	}
	for i := range s.Decisions {
		d := &s.Decisions[i]
		if !ofTenant(&res, s.Tenant, "decision", d.TenantID) {
			continue
		}
		if err := r.decide(&res, d); err != nil {
			return res, err
		}
	}
	for i := range s.Outcomes {
		o := &s.Outcomes[i]
		if !ofTenant(&res, s.Tenant, "result", o.TenantID) {
			continue
		}
		if err := r.report(&res, o); err != nil {
			return res, err
		}
	}
	for i := range s.Indicators {
		in := &s.Indicators[i]
		if !ofTenant(&res, s.Tenant, "indicator", in.TenantID) {
			continue
		}
		if err := r.indicator(&res, in); err != nil {
			return res, err
		}
	}
	return res, nil
}

// ofTenant says whether a decision, result or indicator names the tenant
// of the signal that carries it; one that names another is a problem, not
// applied: a signal is the state of its own tenant only, on the partition
// that owns it, so a record of one tenant can never block, unblock or
// approve anything of another.
func ofTenant(res *Result, tenant, what, named string) bool {
	if named == tenant {
		return true
	}
	res.Problems = append(res.Problems, Problem{Type: what,
		Error: fmt.Sprintf("a %s of tenant %q in a record of tenant %q: refused", what, named, tenant)})
	return false
}

func (r *Responder) incident(res *Result, tenant string, inc *correlate.Incident) error {
	if inc.Status == correlate.StatusRedirected || inc.TenantID != tenant {
		return nil // its alerts live on in the incident it was merged into
	}
	for i := range inc.Alerts {
		a := &inc.Alerts[i]
		for j := range r.pb.Playbooks {
			p := &r.pb.Playbooks[j]
			if !p.When.matches(inc, a) {
				continue
			}
			if err := r.playbook(res, tenant, inc, a, p); err != nil {
				return err
			}
		}
	}
	return nil
}

func (w *When) matches(inc *correlate.Incident, a *correlate.Alert) bool {
	in := func(set []string, v string) bool {
		return len(set) == 0 || slices.ContainsFunc(set, func(s string) bool { return strings.EqualFold(s, v) })
	}
	if w.MinSeverity != "" && severityRank(a.Severity) < severityRank(w.MinSeverity) {
		return false
	}
	if w.MinIncidentSeverity != "" && severityRank(inc.Severity) < severityRank(w.MinIncidentSeverity) {
		return false
	}
	if !in(w.ServiceSource, a.ServiceSource) || !in(w.DetectionSource, a.DetectionSource) || !in(w.Category, a.Category) {
		return false
	}
	if w.title != nil && !w.title.MatchString(a.Title) || w.alertID != nil && !w.alertID.MatchString(a.ID) {
		return false
	}
	if len(w.Evidence) > 0 && !slices.ContainsFunc(a.Evidence, func(e correlate.Evidence) bool { return in(w.Evidence, evidenceType(e)) }) {
		return false
	}
	return true
}

// evidenceType is the short evidence type of a Graph evidence
// ("#microsoft.graph.security.deviceEvidence" -> "device").
func evidenceType(e correlate.Evidence) string {
	t := strings.TrimSuffix(e.ODataType[strings.LastIndexByte(e.ODataType, '.')+1:], "Evidence")
	if t == "analyzedMessage" {
		return "mailMessage"
	}
	return t
}

// decision is one action asked for, before the ledger saw it.
type decision struct {
	tenant, incident, typ, playbook, reason string
	target                                  Target
	alerts                                  []string
	// created and updated are the earliest and latest times of the alerts
	// behind the decision: event times, so that every run agrees.
	created, updated time.Time
	// approvedBy approves the action at once whatever the automation
	// level: an analyst asked for it (an undo).
	approvedBy *Approval
}

func (r *Responder) playbook(res *Result, tenant string, inc *correlate.Incident, a *correlate.Alert, p *Playbook) error {
	at := a.CreatedDateTime
	base := decision{tenant: tenant, incident: inc.ID, playbook: p.Name, alerts: []string{a.ID}, created: at, updated: at}
	emit := func(typ string, t Target) error {
		d := base
		d.typ, d.target = typ, t
		return r.upsert(res, &d, p.Reason)
	}
	// Files named by the alert: blocked, and every copy known acted on.
	var fileTypes []string
	for _, t := range p.Actions {
		if t == StopAndQuarantineFile || t == SoftDeleteEmail {
			fileTypes = append(fileTypes, t)
		}
	}
	for _, e := range a.Evidence {
		if evidenceType(e) != "file" || e.FileDetails == nil {
			continue
		}
		hash, sha1 := fileHash(e.FileDetails)
		if hash == "" {
			continue
		}
		if len(fileTypes) > 0 {
			b := Block{Hash: hash, Incident: inc.ID, Playbook: p.Name, Reason: p.Reason, Alerts: []string{a.ID},
				Types: fileTypes, Time: at, Last: at, FileName: e.FileDetails.FileName, IsSHA1: sha1}
			if err := r.block(res, tenant, &b); err != nil {
				return err
			}
		}
		if slices.Contains(p.Actions, StopAndQuarantineFile) && e.MdeDeviceID != "" {
			// The device the alert saw it on, even before its telemetry came.
			if err := emit(StopAndQuarantineFile, fileTarget(hash, sha1, e.MdeDeviceID, e.DeviceDNSName)); err != nil {
				return err
			}
		}
	}
	for _, typ := range p.Actions {
		var targets []Target
		switch EntityType(typ) {
		case EntityDevice:
			for _, e := range a.Evidence {
				if evidenceType(e) == "device" {
					targets = append(targets, Target{DeviceID: e.MdeDeviceID, DeviceName: e.DeviceDNSName})
				}
			}
		case EntityUser:
			for _, e := range a.Evidence {
				if evidenceType(e) == "user" && e.UserAccount != nil {
					u := e.UserAccount
					targets = append(targets, Target{AccountObjectID: u.AzureAdUserID, UPN: u.UserPrincipalName, SID: u.UserSID})
				}
			}
		case EntityMail:
			for _, e := range a.Evidence {
				if evidenceType(e) == "mailMessage" && e.NetworkMessageID != "" {
					t := Target{NetworkMessageID: e.NetworkMessageID}
					if e.UserAccount != nil {
						t.Recipient = strings.ToLower(e.UserAccount.UserPrincipalName)
					}
					targets = append(targets, t)
				}
			}
		case EntityIndicator:
			var from []string
			targets, from = indicators(a, p.Indicators)
			if typ != BlockIndicator {
				break
			}
			// An address blocked is blocked on sight from then on.
			for i, t := range targets {
				if !isNetwork(t.IndicatorType) {
					continue
				}
				b := Block{Incident: inc.ID, Playbook: p.Name, Reason: p.Reason, Alerts: []string{a.ID}, Types: sightTypes(p.Actions),
					Time: at, Last: at, Indicator: t.Indicator, IndicatorType: t.IndicatorType, Entity: from[i]}
				if err := r.netBlock(tenant, &b); err != nil {
					return err
				}
			}
		}
		for _, t := range targets {
			if err := emit(typ, t); err != nil {
				return err
			}
		}
	}
	return nil
}

func fileHash(f *correlate.FileDetails) (hash string, sha1 bool) {
	if f.SHA256 != "" {
		return strings.ToLower(f.SHA256), false
	}
	return strings.ToLower(f.SHA1), f.SHA1 != ""
}

func fileTarget(hash string, sha1 bool, deviceID, deviceName string) Target {
	t := Target{DeviceID: strings.ToLower(deviceID), DeviceName: deviceName}
	if sha1 {
		t.SHA1 = hash
	} else {
		t.SHA256 = hash
	}
	return t
}

// indicators are the BlockIndicator targets of an alert's evidence, and
// the entity key of the evidence each comes from.
func indicators(a *correlate.Alert, kinds []string) (out []Target, from []string) {
	add := func(t Target, e correlate.Entity, ok bool) {
		out = append(out, t)
		if ok {
			from = append(from, e.Key())
		} else {
			from = append(from, "")
		}
	}
	for _, e := range a.Evidence {
		switch evidenceType(e) {
		case "file":
			if slices.Contains(kinds, "file") && e.FileDetails != nil {
				if h, sha1 := fileHash(e.FileDetails); h != "" {
					typ := IndicatorSHA256
					if sha1 {
						typ = IndicatorSHA1
					}
					add(Target{Indicator: h, IndicatorType: typ}, correlate.Entity{}, false)
				}
			}
		case "ip":
			if slices.Contains(kinds, "ip") && e.IPAddress != "" {
				ent, ok := correlate.IP(e.IPAddress)
				add(Target{Indicator: e.IPAddress, IndicatorType: IndicatorIP}, ent, ok)
			}
		case "url":
			if e.URL == "" {
				continue
			}
			ent, ok := correlate.URL(e.URL)
			if slices.Contains(kinds, "url") {
				add(Target{Indicator: e.URL, IndicatorType: IndicatorURL}, ent, ok)
			}
			if slices.Contains(kinds, "domain") {
				raw := e.URL
				if ok {
					raw = ent.Value // a bare host name has its scheme
				}
				if u, err := url.Parse(raw); err == nil && u.Hostname() != "" {
					add(Target{Indicator: strings.ToLower(u.Hostname()), IndicatorType: IndicatorDomain}, ent, ok)
				}
			}
		}
	}
	return out, from
}

func hashKey(space byte, tenant, hash string) []byte {
	return state.AppendString(state.TenantKey(nil, space, tenant), hash)
}

// block records (or widens) a block and acts on every copy of the file
// indexed so far.
func (r *Responder) block(res *Result, tenant string, b *Block) error {
	key := state.AppendString(state.AppendString(hashKey(spaceBlock, tenant, b.Hash), b.Incident), b.Playbook)
	var cur Block
	ok, err := r.get(key, &cur)
	if err != nil {
		return err
	}
	if ok {
		changed := union(&cur.Alerts, b.Alerts)
		if !widen(&cur.Time, &cur.Last, b.Time, b.Last) && !changed {
			return nil
		}
		*b = cur
	}
	if err := r.put(key, b); err != nil {
		return err
	}
	if slices.Contains(b.Types, SoftDeleteEmail) {
		var copies []correlate.AttachmentFact
		if err := r.scan(hashKey(spaceAttachment, tenant, b.Hash), func(v []byte) error {
			var c correlate.AttachmentFact
			copies = append(copies, c)
			return json.Unmarshal(v, &copies[len(copies)-1])
		}); err != nil {
			return err
		}
		for i := range copies {
			if !r.retained(copies[i].Time, b.Time) || !b.live(copies[i].Time) {
				continue
			}
			if err := r.onCopy(res, tenant, b, &copies[i]); err != nil {
				return err
			}
		}
	}
	if slices.Contains(b.Types, StopAndQuarantineFile) {
		var seen []FileSeen
		if err := r.scan(hashKey(spaceDevice, tenant, b.Hash), func(v []byte) error {
			seen = append(seen, FileSeen{})
			return json.Unmarshal(v, &seen[len(seen)-1])
		}); err != nil {
			return err
		}
		for i := range seen {
			if !r.retainedSeen(seen[i].Time, b.Time) || !b.live(seen[i].Time) {
				continue
			}
			if err := r.onDevice(res, tenant, b, &seen[i]); err != nil {
				return err
			}
		}
	}
	return nil
}

// blocks are the blocks of a file hash.
func (r *Responder) blocks(tenant, hash string) ([]Block, error) {
	var out []Block
	err := r.scan(hashKey(spaceBlock, tenant, hash), func(v []byte) error {
		out = append(out, Block{})
		return json.Unmarshal(v, &out[len(out)-1])
	})
	return out, err
}

// onCopy soft-deletes a delivered copy of a blocked file.
func (r *Responder) onCopy(res *Result, tenant string, b *Block, c *correlate.AttachmentFact) error {
	d := decision{tenant: tenant, incident: b.Incident, typ: SoftDeleteEmail, playbook: b.Playbook, alerts: b.Alerts,
		created: b.Time, updated: b.Last, target: Target{NetworkMessageID: c.NetworkMessageID, Recipient: c.Recipient}}
	return r.onSight(res, &d, b, c.Time)
}

// onDevice quarantines a blocked file on a device that saw it.
func (r *Responder) onDevice(res *Result, tenant string, b *Block, f *FileSeen) error {
	d := decision{tenant: tenant, incident: b.Incident, typ: StopAndQuarantineFile, playbook: b.Playbook, alerts: b.Alerts,
		created: b.Time, updated: b.Last, target: fileTarget(b.Hash, b.IsSHA1, f.DeviceID, f.DeviceName)}
	return r.onSight(res, &d, b, f.Time)
}

// onSight records the action on a copy or device that had the blocked
// file at time seen and, when it had it after the block's first alert (in
// event time, so whichever of the alert and the sighting is processed
// first), raises the block-on-sight alert of the new action (sight.go).
func (r *Responder) onSight(res *Result, d *decision, b *Block, seen time.Time) error {
	a, err := r.record(res, d, b.Reason)
	if err != nil || a == nil || !seen.After(b.Time) {
		return err
	}
	sighted(res, a, b, seen)
	return nil
}

// attachment indexes a delivered copy and, if its file is blocked, removes
// it at once (block on sight).
func (r *Responder) attachment(res *Result, tenant string, c *correlate.AttachmentFact) error {
	c.SHA256, c.Recipient = strings.ToLower(c.SHA256), strings.ToLower(c.Recipient)
	if c.SHA256 == "" || c.NetworkMessageID == "" || c.Recipient == "" || !validPart(c.NetworkMessageID) || !validPart(c.Recipient) || !validPart(c.SHA256) {
		return nil
	}
	if err := r.advance(tenant, c.Time); err != nil {
		return err
	}
	key := state.AppendString(state.AppendString(hashKey(spaceAttachment, tenant, c.SHA256), c.NetworkMessageID), c.Recipient)
	var cur correlate.AttachmentFact
	if ok, err := r.get(key, &cur); err != nil || ok && !c.Time.After(cur.Time) {
		return err // known, and not seen later than known: the entry keeps the latest time
	}
	if err := r.put(key, c); err != nil {
		return err
	}
	bs, err := r.blocks(tenant, c.SHA256)
	if err != nil {
		return err
	}
	for i := range bs {
		if slices.Contains(bs[i].Types, SoftDeleteEmail) && r.retained(c.Time, bs[i].Time) && bs[i].live(c.Time) {
			if err := r.onCopy(res, tenant, &bs[i], c); err != nil {
				return err
			}
		}
	}
	return nil
}

// files indexes the devices that saw files, one signal's worth (a
// telemetry batch), and quarantines blocked files on them at once (block
// on sight). The work that does not depend on the file is done once per
// batch: the tenant's index clock moves once, to the batch's latest
// sighting (nothing in between reads it), and one scan of the tenant's
// file blocks says which hashes are blocked (when they are few, else a
// store lookup per hash); the blocks of a hash are read once per batch.
// Nothing here is kept from one signal to the next, so an aborted
// transaction or a restored partition leaves nothing behind to go stale.
func (r *Responder) files(res *Result, tenant string, fs []FileSeen) error {
	var last time.Time
	valid := 0
	for i := range fs {
		f := &fs[i]
		// strings.ToLower returns its argument, without allocating, when it
		// has no upper case: telemetry's hashes and device ids are lower.
		f.Hash, f.DeviceID = strings.ToLower(f.Hash), strings.ToLower(f.DeviceID)
		if !indexable(f) {
			continue
		}
		valid++
		if f.Time.After(last) {
			last = f.Time
		}
	}
	if valid == 0 {
		return nil
	}
	if err := r.advance(tenant, last); err != nil {
		return err
	}
	bl, err := r.fileBlocks(tenant)
	if err != nil {
		return err
	}
	for i := range fs {
		if !indexable(&fs[i]) {
			continue
		}
		if err := r.fileSeen(res, tenant, &fs[i], bl); err != nil {
			return err
		}
	}
	return nil
}

// indexable says whether a file seen can be indexed: without a device id
// no StopAndQuarantineFile could be built.
func indexable(f *FileSeen) bool {
	return f.Hash != "" && f.DeviceID != "" && validPart(f.Hash) && validPart(f.DeviceID)
}

// seenStep is how far a device's sighting of a file may move forward
// before its index entry is written again: min(1 h, retention/720), an
// hour at the default 30-day retention. Without it every later sighting
// rewrote the entry, and every rewrite is a changelog record (0.31 of
// them per telemetry record in a 10-minute run at the simulator's rate):
// a device that keeps running a binary kept its entry in every
// transaction. Only files with no block are held back; the entry of a
// blocked file follows every later sighting, as it always did.
//
// So an entry's time t is the device's latest sighting T, or up to
// seenStep before it: t <= T <= t+seenStep. What compares it:
//
//   - a block found later counts the entry when it is within the
//     retention before the block's first alert. It reads t+seenStep
//     (retainedSeen), so no device the latest sighting would have counted
//     is left out: a quarantine is never lost. The cost is at most
//     seenStep more of retention for the device index, 30 days and an
//     hour by default; the sweep keeps entries as long.
//   - an expiring block (an operator's indicator) counts an entry seen
//     before it expired: t, never later than T, is the safe side again.
//   - the block-on-sight alert of a device found by a block later is
//     raised when the device had the file after the block's first alert:
//     that reads t, so a device whose sightings after the alert were all
//     held back gets its quarantine without that alert. This is what
//     happened before whenever those sightings were processed after the
//     block instead of before it; a sighting processed after the block
//     is compared as it comes, as before.
//
// The file-seen path itself decides with each sighting's own time as it
// always did: every later sighting still looks at the blocks.
func (r *Responder) seenStep() time.Duration { return min(time.Hour, r.retention/720) }

// retainedSeen is retained for a device index entry of time t, which may
// be up to seenStep behind the device's latest sighting.
func (r *Responder) retainedSeen(t, at time.Time) bool { return r.retained(t.Add(r.seenStep()), at) }

// blocksOf are the file blocks of a tenant, for one batch.
type blocksOf struct {
	some   bool               // the tenant has a file block at all
	hashes map[string]bool    // the hashes blocked, when they are few (maxKeySet); nil: look each up
	byHash map[string][]Block // the blocks read so far, by hash
}

// fileBlocks returns the blocks of tenant's files for one batch: one scan
// of the tenant's file blocks, which reads their hashes when they are few.
func (r *Responder) fileBlocks(tenant string) (*blocksOf, error) {
	hashes, some, err := r.blockKeys(spaceBlock, tenant)
	if err != nil {
		return nil, err
	}
	return &blocksOf{some: some, hashes: hashes}, nil
}

// blocksOfHash are the blocks of a file hash, read at most once a batch.
func (r *Responder) blocksOfHash(bl *blocksOf, tenant, hash string) ([]Block, error) {
	if !bl.some || bl.hashes != nil && !bl.hashes[hash] {
		return nil, nil
	}
	if bs, ok := bl.byHash[hash]; ok {
		return bs, nil
	}
	bs, err := r.blocks(tenant, hash)
	if err != nil {
		return nil, err
	}
	if bl.byHash == nil {
		bl.byHash = map[string][]Block{}
	}
	bl.byHash[hash] = bs
	return bs, nil
}

// fileSeen indexes a device that saw a file and, if the file is blocked,
// quarantines it there at once (block on sight).
func (r *Responder) fileSeen(res *Result, tenant string, f *FileSeen, bl *blocksOf) error {
	r.kbuf = state.AppendString(state.AppendString(state.TenantKey(r.kbuf[:0], spaceDevice, tenant), f.Hash), f.DeviceID)
	key := r.kbuf
	v, ok, err := r.store.Get(key)
	if err != nil {
		return err
	}
	// The entry as it would be written now: when the stored one is the
	// same up to its time (same hash, device and name), its time is read
	// from there, else the entry is decoded.
	r.vbuf, r.plain = appendSeen(r.vbuf[:0], f)
	var cur FileSeen
	if ok {
		if !r.plain || !sameSeen(v, r.vbuf, &cur.Time) {
			if err := decodeEntry(key, v, &cur); err != nil {
				return err
			}
		} else {
			cur.DeviceName = f.DeviceName
		}
		if !f.Time.After(cur.Time) {
			return nil // known, and not seen later than known: the entry keeps the latest time
		}
	}
	bs, err := r.blocksOfHash(bl, tenant, f.Hash)
	if err != nil {
		return err
	}
	if !ok || len(bs) > 0 || f.Time.Sub(cur.Time) > r.seenStep() || f.DeviceName != cur.DeviceName {
		if !r.plain {
			err = r.put(key, f)
		} else {
			err = r.store.Set(key, r.vbuf) // the store copies it
		}
		if err != nil {
			return err
		}
	}
	for i := range bs {
		if slices.Contains(bs[i].Types, StopAndQuarantineFile) && r.retained(f.Time, bs[i].Time) && bs[i].live(f.Time) {
			if err := r.onDevice(res, tenant, &bs[i], f); err != nil {
				return err
			}
		}
	}
	return nil
}

// seenTime and seenEnd surround the time of a device index entry.
var seenTime, seenEnd = []byte(`","time":"`), []byte(`"}`)

// appendSeen appends f's device index entry to dst, as json.Marshal
// writes it, without allocating; ok is false (dst unchanged) when a string
// would need escaping or the time has no RFC 3339 form, for which
// json.Marshal is used instead.
func appendSeen(dst []byte, f *FileSeen) ([]byte, bool) {
	if y := f.Time.Year(); y < 0 || y > 9999 || !plainJSON(f.Hash) || !plainJSON(f.DeviceID) || !plainJSON(f.DeviceName) || f.DeviceID == "" {
		return dst, false
	}
	dst = append(append(append(dst, `{"hash":"`...), f.Hash...), `","deviceId":"`...)
	dst = append(dst, f.DeviceID...)
	if f.DeviceName != "" {
		dst = append(append(dst, `","deviceName":"`...), f.DeviceName...)
	}
	dst = f.Time.AppendFormat(append(dst, seenTime...), time.RFC3339Nano)
	return append(dst, seenEnd...), true
}

// sameSeen says whether the stored entry v is entry up to its time (the
// same hash, device and name) and, if so, reads its time into t.
func sameSeen(v, entry []byte, t *time.Time) bool {
	head := entry[:bytes.LastIndex(entry, seenTime)+len(seenTime)]
	return bytes.HasPrefix(v, head) && bytes.HasSuffix(v, seenEnd) && len(v) >= len(head)+len(seenEnd) &&
		t.UnmarshalText(v[len(head):len(v)-len(seenEnd)]) == nil
}

// plainJSON says whether s is written as it is in a JSON string by
// encoding/json: printable ASCII but for the quote, the backslash and the
// characters it escapes for HTML.
func plainJSON(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			return false
		}
	}
	return true
}

func validPart(s string) bool { return !strings.ContainsRune(s, 0) }

// upsert records a decision in the ledger: a new action, or a new version
// of the one already decided for the same incident, type and target when
// the decision adds to it (an alert, a playbook, an earlier time). The
// action is returned for producing in either case, never otherwise.
func (r *Responder) upsert(res *Result, d *decision, reason string) error {
	_, err := r.record(res, d, reason)
	return err
}

// record is upsert, saying which action is new (nil when the decision
// changed nothing or could not be built).
func (r *Responder) record(res *Result, d *decision, reason string) (*Action, error) {
	tk, err := d.target.Key(d.typ)
	if err != nil {
		res.Problems = append(res.Problems, Problem{Type: d.typ, Incident: d.incident, Playbook: d.playbook, Error: err.Error()})
		return nil, nil
	}
	id := ActionID(d.tenant, d.incident, d.typ, tk)
	key := append(state.TenantKey(nil, spaceAction, d.tenant), id...)
	group, err := r.groupOf(d.tenant, d.target.DeviceID)
	if err != nil {
		return nil, err
	}
	n := Action{ID: id, TenantID: d.tenant, Type: d.typ, Target: d.target, IncidentID: d.incident,
		Alerts: slices.Sorted(slices.Values(d.alerts)), Playbooks: []string{d.playbook},
		Reason: fmt.Sprintf("%s: %s", reason, Describe(d.typ, d.target)), Automation: r.pb.Automation.Level(d.tenant, d.typ, d.playbook, group),
		CreatedDateTime: d.created, LastUpdateDateTime: d.updated, Approvals: []Approval{}, IdempotencyKey: id, Version: 1}
	n.Status = StatusPending
	if n.Automation == LevelFull {
		n.Status = StatusApproved
	}
	if d.approvedBy != nil {
		n.Status, n.Approvals = StatusApproved, []Approval{*d.approvedBy}
	}
	var cur Action
	ok, err := r.get(key, &cur)
	if err != nil {
		return nil, err
	}
	// One version per action per signal: a later change within the same
	// signal replaces the version it produced.
	prev := slices.IndexFunc(res.Actions, func(a Action) bool { return a.ID == n.ID })
	if ok {
		if !cur.merge(&n) {
			return nil, nil
		}
		if prev >= 0 {
			cur.Version--
		}
		n = cur
	}
	if err := r.put(key, &n); err != nil {
		return nil, err
	}
	if prev >= 0 {
		res.Actions[prev] = n
	} else {
		res.Actions = append(res.Actions, n)
	}
	if ok {
		return nil, nil
	}
	return &n, nil
}

// Describe says in words what an action of type does to target.
func Describe(typ string, t Target) string {
	dev := t.DeviceName
	if dev == "" {
		dev = t.DeviceID
	}
	user := t.UPN
	if user == "" {
		user = t.AccountObjectID + t.SID
	}
	switch typ {
	case IsolateDevice:
		return "isolate device " + dev
	case ReleaseDevice:
		return "release device " + dev + " from isolation"
	case CollectInvestigationPackage:
		return "collect an investigation package from device " + dev
	case RunAntivirusScan:
		return "run an antivirus scan on device " + dev
	case RestrictAppExecution:
		return "restrict app execution on device " + dev
	case StopAndQuarantineFile:
		return "stop and quarantine file " + t.hash() + " on device " + dev
	case BlockIndicator:
		return "block " + t.IndicatorType + " " + t.Indicator
	case UnblockIndicator:
		return "unblock " + t.IndicatorType + " " + t.Indicator
	case RemoveAppRestriction:
		return "remove the app execution restriction of device " + dev
	case SoftDeleteEmail:
		return "soft-delete message " + t.NetworkMessageID + " from the mailbox of " + t.Recipient
	case DisableUser:
		return "disable account " + user
	case RevokeSessions:
		return "revoke the sessions of account " + user
	case ForcePasswordReset:
		return "force a password reset of account " + user
	case MarkUserCompromised:
		return "mark account " + user + " compromised"
	}
	return typ
}

// Actions returns every action of tenant in the ledger (tests, the CLI).
func (r *Responder) Actions(tenant string) ([]Action, error) {
	var out []Action
	err := r.scan(state.TenantKey(nil, spaceAction, tenant), func(v []byte) error {
		out = append(out, Action{})
		return json.Unmarshal(v, &out[len(out)-1])
	})
	return out, err
}

func (r *Responder) get(key []byte, v any) (bool, error) {
	b, ok, err := r.store.Get(key)
	if err != nil || !ok {
		return false, err
	}
	if err := decodeEntry(key, b, v); err != nil {
		return false, err
	}
	return true, nil
}

// decodeEntry decodes the ledger entry b stored under key into v.
func decodeEntry(key, b []byte, v any) error {
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("respond: ledger entry %q: %w", key, err)
	}
	return nil
}

func (r *Responder) put(key []byte, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return r.store.Set(key, b)
}

func (r *Responder) scan(prefix []byte, fn func(v []byte) error) error {
	return r.store.Scan(prefix, func(_, v []byte) error { return fn(v) })
}
