package correlate

import (
	"bytes"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/apache/arrow/go/v17/arrow"
	// AttackTechniques' JSON arrays (techniques). The facts themselves are
	// a binary encoding (facts_codec.go); go-json reads those an earlier
	// release wrote as JSON.
	json "github.com/goccy/go-json"

	"github.com/stitch-xdr/stitch/operators/normalize"
	"github.com/stitch-xdr/stitch/state"
)

// Facts is the small per-tenant summary stage 1 extracts from a normalized
// batch and produces to the repartition topic keyed by tenant: alerts,
// evidence, identity links and entity sightings. Telemetry volume is reduced
// here (sightings are deduplicated per batch) before the shuffle.
type Facts struct {
	Tenant    string         `json:"tenant"`
	Alerts    []AlertFact    `json:"alerts,omitempty"`
	Evidence  []EvidenceFact `json:"evidence,omitempty"`
	Links     [][]string     `json:"links,omitempty"`
	Sightings []Sighting     `json:"sightings,omitempty"`
	// Attachments are delivered email attachments (for response, not
	// correlation: attachments.go).
	Attachments []AttachmentFact `json:"attachments,omitempty"`
	Files       []FileFact       `json:"files,omitempty"`
	// DeviceGroups are devices' groups (DeviceInfo), for response too.
	DeviceGroups []DeviceGroupFact `json:"deviceGroups,omitempty"`
	// Mail are messages' recipients and URLs, for response too (mail.go).
	Mail []MailFact `json:"mail,omitempty"`
	// Updates are analysts' changes to incidents (analyst.go).
	Updates []AnalystUpdate `json:"updates,omitempty"`
	// MaxTime is the latest event time in the batch (drives the watermark).
	MaxTime time.Time `json:"maxTime"`
}

// AlertFact is one AlertInfo row.
type AlertFact struct {
	ID              string    `json:"id"`
	Time            time.Time `json:"time"`
	Title           string    `json:"title,omitempty"`
	Severity        string    `json:"severity,omitempty"`
	Category        string    `json:"category,omitempty"`
	ServiceSource   string    `json:"serviceSource,omitempty"`
	DetectionSource string    `json:"detectionSource,omitempty"`
	Techniques      []string  `json:"techniques,omitempty"`
}

// EvidenceFact is one AlertEvidence row: the entity keys it names and its
// Graph rendering.
type EvidenceFact struct {
	AlertID  string    `json:"alertId"`
	Time     time.Time `json:"time"`
	Entities []string  `json:"entities"`
	Evidence Evidence  `json:"evidence"`
}

// Sighting says which devices and users (entity keys) saw Entity in one
// prevalence bucket (a day). Observers are capped at MaxObservers.
type Sighting struct {
	Entity    string   `json:"entity"`
	Bucket    int64    `json:"bucket"`
	Observers []string `json:"observers"`
}

// MaxObservers caps the observers per sighting: prevalence thresholds above
// it cannot be told apart, and the cap bounds a fact's size.
const MaxObservers = 64

// PrevalenceBucket is the width of prevalence buckets.
const PrevalenceBucket = 24 * time.Hour

// Marshal encodes the facts for the repartition topic (facts_codec.go).
// A record is built in a pooled buffer and copied out at its size: grown
// by append from nothing, a telemetry batch's (100-200 KB) allocated and
// copied five times its size.
func (f *Facts) Marshal() ([]byte, error) {
	buf := factsBufs.Get().(*[]byte)
	*buf = appendFacts((*buf)[:0], f)
	v := bytes.Clone(*buf)
	factsBufs.Put(buf)
	return v, nil
}

var factsBufs = sync.Pool{New: func() any { return new([]byte) }}

// UnmarshalFacts decodes facts written by Marshal, or by an earlier
// release as JSON; bad input is an error.
func UnmarshalFacts(b []byte) (*Facts, error) {
	var f Facts
	if err := decodeFacts(b, &f); err != nil {
		return nil, fmt.Errorf("correlate: unmarshal facts: %w", err)
	}
	if !state.ValidTenant(f.Tenant) {
		return nil, fmt.Errorf("correlate: facts with invalid tenant %q", f.Tenant)
	}
	return &f, nil
}

func (f *Facts) empty() bool {
	return len(f.Alerts) == 0 && len(f.Evidence) == 0 && len(f.Links) == 0 && len(f.Sightings) == 0 && len(f.Attachments) == 0 && len(f.Files) == 0 && len(f.DeviceGroups) == 0 && len(f.Mail) == 0 && len(f.Updates) == 0
}

// Extract summarises one normalized batch; nil when it holds nothing that
// correlation uses (or the tenant cannot be keyed). It remembers nothing
// between calls: a stream's batches go through an Extractor.
func Extract(b normalize.Batch) *Facts { return extract(b, nil) }

// Extractor is Extract for the batches of a stream, one after the other
// (one goroutine). It keeps the canonical entities of the column values it
// has seen (canonMemo), so that a device, account or address costs its
// canonicalising once, not once a batch: a live stream's batches are a
// table's few hundred rows of one transaction, and the same values come
// back in every one (bench/RESULTS.md, "Facts extraction").
type Extractor struct {
	canons canonMemo
	idents identityMemo
	batch  uint64 // batches extracted: the identities' linked stamps
}

// NewExtractor is an Extractor with an empty memory.
func NewExtractor() *Extractor { return &Extractor{} }

// Extract is Extract(b), with x's memory.
func (x *Extractor) Extract(b normalize.Batch) *Facts {
	x.batch++
	return extract(b, x)
}

// extract is Extract with x's memory (nil: a map a column and batch).
func extract(b normalize.Batch, x *Extractor) *Facts {
	if b.Record == nil || b.Record.NumRows() == 0 || !state.ValidTenant(b.Tenant) {
		return nil
	}
	f := &Facts{Tenant: b.Tenant}
	rec := b.Record
	ts := normalize.Times(rec, "Timestamp")
	n := int(rec.NumRows())
	for i := 0; i < n; i++ {
		if t := ts.Value(i); t.After(f.MaxTime) {
			f.MaxTime = t
		}
	}
	switch b.Table {
	case "AlertInfo":
		extractAlerts(f, rec, ts, n)
	case "AlertEvidence":
		extractEvidence(f, rec, ts, n)
	default:
		extractTelemetry(f, rec, ts, n, x)
		switch b.Table {
		case "EmailAttachmentInfo":
			extractAttachments(f, rec, ts, n)
		case "DeviceFileEvents", "DeviceProcessEvents":
			extractFiles(f, rec, ts, n)
		case "DeviceInfo":
			extractDeviceGroups(f, rec, ts, n)
		case "EmailEvents", "EmailUrlInfo":
			extractMail(f, b.Table, rec, ts, n)
		}
	}
	if f.empty() {
		return nil
	}
	return f
}

func str(rec arrow.Record, col string) normalize.StringColumn { return normalize.Strings(rec, col) }

func extractAlerts(f *Facts, rec arrow.Record, ts normalize.TimeColumn, n int) {
	id, title, sev := str(rec, "AlertId"), str(rec, "Title"), str(rec, "Severity")
	cat, svc, det, tech := str(rec, "Category"), str(rec, "ServiceSource"), str(rec, "DetectionSource"), str(rec, "AttackTechniques")
	for i := 0; i < n; i++ {
		if id.Value(i) == "" || ts.IsNull(i) {
			continue
		}
		f.Alerts = append(f.Alerts, AlertFact{
			ID: id.Value(i), Time: ts.Value(i), Title: title.Value(i), Severity: sev.Value(i),
			Category: cat.Value(i), ServiceSource: svc.Value(i), DetectionSource: det.Value(i),
			Techniques: techniques(tech.Value(i)),
		})
	}
}

// techniques reads AttackTechniques, a JSON array of strings in the
// streaming API ("[\"T1566\"]") but a comma-separated list in some exports.
func techniques(s string) []string {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil
	}
	var out []string
	if strings.HasPrefix(s, "[") && json.Unmarshal([]byte(s), &out) == nil {
		return out
	}
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// userIDs are the column groups naming one account; a row that fills several
// of one group teaches that those identifiers are one identity.
var userIDs = []struct{ oid, upn, sid, domain, name string }{
	{"AccountObjectId", "AccountUpn", "AccountSid", "AccountDomain", "AccountName"},
	{"AccountObjectId", "AccountUpn", "OnPremSid", "AccountDomain", "AccountName"}, // IdentityInfo
	{"InitiatingProcessAccountObjectId", "InitiatingProcessAccountUpn", "InitiatingProcessAccountSid", "InitiatingProcessAccountDomain", "InitiatingProcessAccountName"},
	{"RequestAccountSid", "", "RequestAccountSid", "RequestAccountDomain", "RequestAccountName"},
}

// accountSlots name userIDs' groups in an Extractor's identityMemo.
var accountSlots = func() []string {
	s := make([]string, len(userIDs))
	for i := range userIDs {
		s[i] = "account " + strconv.Itoa(i)
	}
	return s
}()

// userCols are a table's account column groups (userIDs), each column
// canonicalised once per distinct value of the batch.
type userCols struct {
	oid, sid, upn *colMemo
	nt            *pairMemo
	slot          string // the group's, in an Extractor's identityMemo
}

func userColumns(rec arrow.Record, rows int, memo *canonMemo) []userCols {
	var out []userCols
	for gi, g := range userIDs {
		s := rec.Schema()
		if !s.HasField(g.oid) && !s.HasField(g.upn) && !s.HasField(g.sid) && !s.HasField(g.name) {
			continue // the table has no such account columns
		}
		u := userCols{
			oid:  newColMemo(memo, "oid "+g.oid, str(rec, g.oid), UserObjectID, rows),
			sid:  newColMemo(memo, "sid "+g.sid, str(rec, g.sid), UserSID, rows),
			upn:  newColMemo(memo, "upn "+g.upn, str(rec, g.upn), UserUPN, rows),
			nt:   &pairMemo{a: str(rec, g.domain), b: str(rec, g.name)},
			slot: accountSlots[gi],
		}
		if memo != nil {
			u.nt.m, u.nt.keep = memo.slot("nt "+g.domain+" "+g.name), memo
		} else if rows >= memoRows {
			u.nt.m = map[string]canon{}
		}
		out = append(out, u)
	}
	return out
}

// ids returns the user entities of row i, best identifier first
// (object id, SID, UPN, DOMAIN\name).
func (u userCols) ids(dst []canon, i int) []canon {
	for _, c := range [...]canon{u.oid.at(i), u.sid.at(i), u.upn.at(i), u.nt.at(i)} {
		if c.ok {
			dst = append(dst, c)
		}
	}
	return dst
}

// linker collects identity links, deduplicated per batch.
type linker struct {
	f    *Facts
	seen map[string]bool
	ents []canon // scratch: the link being built
	sig  []byte  // scratch: its keys, sorted, NUL-separated
}

// add records ids (one account's or one host's identifiers) as a link once
// per batch. A batch repeats the same few links on most of its rows, so a
// repeat is found without allocating: the signature is built in scratch
// space and looked up as it is.
func (l *linker) add(ids []canon) {
	if !l.sortedLink(ids) || l.seen[string(l.sig)] {
		return
	}
	l.seen[string(l.sig)] = true
	l.f.Links = append(l.f.Links, l.keys())
}

// addKnown records a link that sortedLink and keys made before (an
// Extractor's identity), with its signature, once per batch.
func (l *linker) addKnown(link []string, sig string) {
	if link == nil || l.seen[sig] {
		return
	}
	l.seen[sig] = true
	l.f.Links = append(l.f.Links, link)
}

// sortedLink puts in l.ents the entities of ids that a link joins (not
// well known, each once), sorted, and their signature in l.sig; false
// when there are fewer than two.
func (l *linker) sortedLink(ids []canon) bool {
	l.ents = l.ents[:0]
	for _, e := range ids {
		if !e.wk && !slices.ContainsFunc(l.ents, func(c canon) bool { return c.e == e.e }) {
			l.ents = append(l.ents, e)
		}
	}
	if len(l.ents) < 2 {
		return false
	}
	slices.SortFunc(l.ents, func(a, b canon) int { return compareKeys(a.e, b.e) })
	l.sig = l.sig[:0]
	for _, e := range l.ents {
		l.sig = append(e.appendKey(l.sig), 0)
	}
	return true
}

// keys are the keys of the link sortedLink made.
func (l *linker) keys() []string {
	keys := make([]string, len(l.ents))
	for i, e := range l.ents {
		keys[i] = e.k()
	}
	return keys
}

// compareKeys orders entities as their keys (Entity.Key) sort.
func compareKeys(a, b Entity) int {
	if a.Kind == b.Kind {
		return strings.Compare(a.Value, b.Value)
	}
	return strings.Compare(a.Key(), b.Key())
}

func extractEvidence(f *Facts, rec arrow.Record, ts normalize.TimeColumn, n int) {
	c := evidenceCols(rec)
	users := userColumns(rec, n, nil)
	lk := linker{f: f, seen: map[string]bool{}}
	var ents, devs []canon
	for i := 0; i < n; i++ {
		id := c.alertID.Value(i)
		if id == "" || ts.IsNull(i) {
			continue
		}
		ents = ents[:0]
		for _, u := range users {
			n := len(ents)
			ents = u.ids(ents, i)
			lk.add(ents[n:])
		}
		ev, more := c.evidence(i, ts.Value(i))
		devs = devs[:0]
		for _, e := range more {
			c := newCanon(e, true)
			ents = append(ents, c)
			if e.Kind == KindDevice {
				devs = append(devs, c)
			}
		}
		lk.add(devs)
		keys := make([]string, 0, len(ents))
		for _, e := range ents {
			if k := e.k(); !slices.Contains(keys, k) {
				keys = append(keys, k)
			}
		}
		f.Evidence = append(f.Evidence, EvidenceFact{AlertID: id, Time: ts.Value(i), Entities: keys, Evidence: ev})
	}
}

// sightingKey groups observers of one entity in one bucket.
type sightingKey struct {
	entity string
	bucket int64
}

// telemetry entity columns: which columns of any table name a shareable
// entity, and how to canonicalise them.
var telemetryEntities = []struct {
	col  string
	conv func(string) (Entity, bool)
}{
	{"SHA256", FileHash}, {"SHA1", FileHash},
	{"InitiatingProcessSHA256", FileHash}, {"InitiatingProcessSHA1", FileHash},
	{"RemoteIP", IP}, {"IPAddress", IP}, {"DestinationIPAddress", IP}, {"SenderIPv4", IP},
	{"RemoteUrl", URL}, {"Url", URL},
	{"SenderFromAddress", Mailbox}, {"SenderMailFromAddress", Mailbox},
	{"NetworkMessageId", MailMessage}, {"OAuthApplicationId", OAuthApp},
}

func extractTelemetry(f *Facts, rec arrow.Record, ts normalize.TimeColumn, n int, x *Extractor) {
	var memo *canonMemo
	if x != nil {
		memo = &x.canons
	}
	devID, devName := newColMemo(memo, "device id", str(rec, "DeviceId"), DeviceID, n), newColMemo(memo, "device name", str(rec, "DeviceName"), DeviceName, n)
	users := userColumns(rec, n, memo)
	recipOID, recip := newColMemo(memo, "recipient oid", str(rec, "RecipientObjectId"), UserObjectID, n),
		newColMemo(memo, "recipient mailbox", str(rec, "RecipientEmailAddress"), mailboxUser, n)
	appID := normalize.Int64s(rec, "ApplicationId")
	apps := map[int64]canon{}
	var cols []*colMemo
	for _, te := range telemetryEntities {
		if rec.Schema().HasField(te.col) {
			cols = append(cols, newColMemo(memo, te.col, str(rec, te.col), te.conv, n))
		}
	}
	lk := linker{f: f, seen: map[string]bool{}}
	// A row's host and accounts: with an Extractor, identities it keeps
	// (facts_identity.go).
	var host identities
	accounts := make([]identities, len(users))
	if x != nil {
		host = hostIdentities(devID, devName, x, &lk)
		for j, u := range users {
			accounts[j] = accountIdentities(u, x, &lk)
		}
	} else {
		host = &freshIdentities{canon: hostIDs(devID, devName), lk: &lk}
		for j, u := range users {
			accounts[j] = &freshIdentities{canon: u.ids, lk: &lk}
		}
	}
	// Sightings of the batch, in first-seen order: the row loop looks each
	// (bucket, entity) up by a key built in scratch space, and allocates
	// only for one it has not seen (most rows repeat a few entities).
	at := map[string]int{}
	var order []sightingKey
	var seen [][]string
	var scratch []byte
	var obsKeys []string
	var ents []canon
	for i := 0; i < n; i++ {
		if ts.IsNull(i) {
			continue
		}
		obsKeys = obsKeys[:0]
		if ids := host.row(i); len(ids) > 0 {
			obsKeys = append(obsKeys, ids[0].k()) // DeviceId, else DeviceName
		}
		for _, a := range accounts {
			if ids := a.row(i); len(ids) > 0 && !ids[0].wk {
				obsKeys = append(obsKeys, ids[0].k())
			}
		}
		if c := recipOID.at(i); c.ok {
			obsKeys = append(obsKeys, c.k())
		} else if c := recip.at(i); c.ok {
			obsKeys = append(obsKeys, c.k())
		}
		if len(obsKeys) == 0 {
			continue
		}
		ents = ents[:0]
		for _, c := range cols {
			if e := c.at(i); e.ok && !e.wk {
				ents = append(ents, e)
			}
		}
		if id := appID.Value(i); id > 0 {
			e, ok := apps[id]
			if !ok {
				e = keyedCanon(CloudApp(id))
				apps[id] = e
			}
			ents = append(ents, e)
		}
		b := state.Bucket(ts.Value(i), PrevalenceBucket)
		for _, e := range ents {
			scratch = e.appendKey(state.AppendInt64(scratch[:0], b))
			j, ok := at[string(scratch)]
			if !ok {
				j = len(order)
				at[string(scratch)] = j
				order = append(order, sightingKey{e.k(), b})
				seen = append(seen, nil)
			}
			obs := seen[j]
			for _, o := range obsKeys {
				if len(obs) < MaxObservers && !slices.Contains(obs, o) {
					obs = append(obs, o)
				}
			}
			seen[j] = obs
		}
	}
	for j, k := range order {
		f.Sightings = append(f.Sightings, Sighting{Entity: k.entity, Bucket: k.bucket, Observers: seen[j]})
	}
}
