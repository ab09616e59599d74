package view

import (
	"cmp"
	"net/netip"
	"net/url"
	"regexp"
	"slices"
	"sort"
	"strings"

	"github.com/stitch-xdr/stitch/operators/correlate"
	"github.com/stitch-xdr/stitch/operators/respond"
)

// Ref names an entity as impactedAssets lists it: a type and an id
// (device name or id, user UPN/SID/object id, mailbox address, file hash,
// IP, URL, app id).
type Ref struct {
	Type string `json:"type"`
	ID   string `json:"id"`
}

// Entity types.
var EntityTypes = []string{"device", "user", "mailbox", "file", "ip", "url", "app"}

// Key is "type:id".
func (r Ref) Key() string { return r.Type + ":" + r.ID }

// ParseRef reads "type:id" with a known type.
func ParseRef(s string) (Ref, bool) {
	t, id, ok := strings.Cut(s, ":")
	if !ok || id == "" || !slices.Contains(EntityTypes, t) {
		return Ref{}, false
	}
	return Ref{Type: t, ID: id}, true
}

// refOfKey maps a correlator entity key ("device:name:ws5",
// "user:upn:alice@x") to the Ref impactedAssets shows.
func refOfKey(key string) (Ref, bool) {
	e, ok := correlate.ParseEntity(key)
	if !ok {
		return Ref{}, false
	}
	v := e.Value
	switch e.Kind {
	case correlate.KindDevice:
		return Ref{"device", strings.TrimPrefix(strings.TrimPrefix(v, "name:"), "id:")}, true
	case correlate.KindUser:
		if _, rest, ok := strings.Cut(v, ":"); ok {
			v = rest
		}
		return Ref{"user", v}, true
	case correlate.KindMailbox:
		return Ref{"mailbox", v}, true
	case correlate.KindFile:
		return Ref{"file", v}, true
	case correlate.KindIP:
		return Ref{"ip", v}, true
	case correlate.KindURL:
		return Ref{"url", v}, true
	case correlate.KindCloudApp:
		return Ref{"app", v}, true
	}
	return Ref{}, false
}

func incidentRefs(inc *correlate.Incident) []Ref {
	var out []Ref
	ia := inc.ImpactedAssets
	for _, l := range []struct {
		t  string
		vs []string
	}{{"device", ia.Devices}, {"user", ia.Users}, {"mailbox", ia.Mailboxes}, {"file", ia.Files}, {"ip", ia.IPs}, {"url", ia.URLs}, {"app", ia.Apps}} {
		for _, v := range l.vs {
			out = append(out, Ref{l.t, v})
		}
	}
	return out
}

// actionRefs are the entities an action acts on, as impactedAssets names
// them.
func actionRefs(a *respond.Action) []Ref {
	var out []Ref
	add := func(e correlate.Entity, ok bool) {
		if r, rok := refOfKey(e.Key()); ok && rok && !slices.Contains(out, r) {
			out = append(out, r)
		}
	}
	t := a.Target
	add(correlate.DeviceName(t.DeviceName))
	add(correlate.DeviceID(t.DeviceID))
	add(correlate.FileHash(t.SHA256))
	add(correlate.FileHash(t.SHA1))
	add(correlate.Mailbox(t.Recipient))
	add(correlate.UserUPN(t.UPN))
	add(correlate.UserSID(t.SID))
	add(correlate.UserObjectID(t.AccountObjectID))
	switch t.IndicatorType {
	case respond.IndicatorSHA1, respond.IndicatorSHA256:
		add(correlate.FileHash(t.Indicator))
	case respond.IndicatorIP:
		add(correlate.IP(t.Indicator))
	case respond.IndicatorURL, respond.IndicatorDomain:
		add(correlate.URL(t.Indicator))
	}
	return out
}

// evidenceRefs are the entities one piece of evidence names.
func evidenceRefs(ev correlate.Evidence) []Ref {
	var out []Ref
	add := func(e correlate.Entity, ok bool) {
		if r, rok := refOfKey(e.Key()); ok && rok && !slices.Contains(out, r) {
			out = append(out, r)
		}
	}
	if ev.DeviceDNSName != "" {
		add(correlate.DeviceName(ev.DeviceDNSName))
	} else {
		add(correlate.DeviceID(ev.MdeDeviceID))
	}
	if u := ev.UserAccount; u != nil {
		switch {
		case u.UserPrincipalName != "":
			add(correlate.UserUPN(u.UserPrincipalName))
		case u.AzureAdUserID != "":
			add(correlate.UserObjectID(u.AzureAdUserID))
		case u.UserSID != "":
			add(correlate.UserSID(u.UserSID))
		default:
			add(correlate.UserNT(u.DomainName, u.AccountName))
		}
	}
	if f := ev.FileDetails; f != nil {
		add(correlate.FileHash(cmp.Or(f.SHA256, f.SHA1)))
	}
	add(correlate.IP(ev.IPAddress))
	add(correlate.URL(ev.URL))
	add(correlate.Mailbox(ev.PrimaryAddress))
	return out
}

// Suggestion is an entity found by a search.
type Suggestion struct {
	Type      string `json:"type"`
	ID        string `json:"id"`
	Label     string `json:"label"`
	Incidents int    `json:"incidents"`
}

// SearchResult is what a search finds: suggestions, and the entity to go
// straight to when the query names one exactly.
type SearchResult struct {
	Results []Suggestion `json:"results"`
	Exact   *Ref         `json:"exact"`
}

var hashRE = regexp.MustCompile(`^(?i:[0-9a-f]{40}|[0-9a-f]{64})$`)

// Search finds the entities in scope whose id holds q (case-insensitive),
// those that start with it first, then those in more incidents.
func (x *Index) Search(s Scope, q, typ string, limit int) SearchResult {
	out := SearchResult{Results: []Suggestion{}}
	lq := strings.ToLower(strings.TrimSpace(q))
	if lq == "" {
		return out
	}
	x.mu.RLock()
	var found []Suggestion
	for r, t := range x.entities {
		if typ != "" && r.Type != typ || !strings.Contains(strings.ToLower(r.ID), lq) {
			continue
		}
		n := 0
		for id := range t.incidents {
			if e := x.incidents[id]; e != nil && e.visible(s) {
				n++
			}
		}
		if n == 0 && !x.anyActionVisible(t, s) {
			continue
		}
		found = append(found, Suggestion{Type: r.Type, ID: r.ID, Label: r.ID, Incidents: n})
	}
	x.mu.RUnlock()
	sort.Slice(found, func(i, j int) bool {
		a, b := found[i], found[j]
		pa, pb := strings.HasPrefix(strings.ToLower(a.ID), lq), strings.HasPrefix(strings.ToLower(b.ID), lq)
		if pa != pb {
			return pa
		}
		if a.Incidents != b.Incidents {
			return a.Incidents > b.Incidents
		}
		return a.Type+a.ID < b.Type+b.ID
	})
	exactType := exactly(q)
	for _, f := range found {
		if strings.EqualFold(f.ID, strings.TrimSpace(q)) && (exactType == "" || exactType == f.Type) {
			out.Exact = &Ref{Type: f.Type, ID: f.ID}
			break
		}
	}
	if out.Exact == nil && exactType != "" {
		// An IP, hash or URL goes to its page even when no incident has
		// it: the page shows its telemetry.
		r := Ref{Type: exactType, ID: strings.TrimSpace(q)}
		if e, ok := canonical(r); ok {
			r = e
		}
		out.Exact = &r
	}
	out.Results = append(out.Results, found[:min(len(found), limit)]...)
	return out
}

func (x *Index) anyActionVisible(t *touches, s Scope) bool {
	for id := range t.actions {
		if a := x.actions[id]; a != nil && x.actionVisible(a, s) {
			return true
		}
	}
	return false
}

// exactly says which type q is by its form alone: an IP, a hash or a URL.
func exactly(q string) string {
	q = strings.TrimSpace(q)
	if _, err := netip.ParseAddr(q); err == nil {
		return "ip"
	}
	if hashRE.MatchString(q) {
		return "file"
	}
	if u, err := url.Parse(q); err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != "" {
		return "url"
	}
	return ""
}

// canonical writes a Ref's id as the correlator does (a hash in lower
// case, an IP in its canonical text, a normalised URL).
func canonical(r Ref) (Ref, bool) {
	var e correlate.Entity
	var ok bool
	switch r.Type {
	case "ip":
		e, ok = correlate.IP(r.ID)
	case "file":
		e, ok = correlate.FileHash(r.ID)
	case "url":
		e, ok = correlate.URL(r.ID)
	case "mailbox":
		e, ok = correlate.Mailbox(r.ID)
	case "device":
		// A name as impactedAssets has it: lower case, its first label.
		e, ok = correlate.DeviceName(r.ID)
	case "user":
		if strings.Contains(r.ID, "@") {
			e, ok = correlate.UserUPN(r.ID)
		} else {
			return r, true
		}
	default:
		return r, true
	}
	if !ok {
		return r, false
	}
	return refOfKey(e.Key())
}

// EntityAlert is an alert that names an entity, with its incident.
type EntityAlert struct {
	IncidentID string `json:"incidentId"`
	correlate.Alert
}

// EntityPage is what the view knows of an entity in scope.
type EntityPage struct {
	Entity    Ref           `json:"entity"`
	Tenants   []string      `json:"tenants"`
	Incidents []Summary     `json:"incidents"`
	Alerts    []EntityAlert `json:"alerts"`
	Actions   []ActionView  `json:"actions"`
}

// Entity is the page of an entity: the incidents in scope that touch it,
// their alerts whose evidence names it, and the actions on it. found is
// false when nothing in scope touches it.
func (x *Index) Entity(s Scope, r Ref) (page *EntityPage, found bool) {
	if c, ok := canonical(r); ok {
		r = c
	}
	page = &EntityPage{Entity: r, Tenants: []string{}, Incidents: []Summary{}, Alerts: []EntityAlert{}, Actions: []ActionView{}}
	x.mu.RLock()
	defer x.mu.RUnlock()
	t := x.entities[r]
	if t == nil {
		return page, false
	}
	for id := range t.incidents {
		e := x.incidents[id]
		if e == nil || !e.visible(s) {
			continue
		}
		page.Incidents = append(page.Incidents, e.sum)
		page.Tenants = appendNew(page.Tenants, e.inc.TenantID)
		for _, a := range e.inc.Alerts {
			if slices.ContainsFunc(a.Evidence, func(ev correlate.Evidence) bool { return slices.Contains(evidenceRefs(ev), r) }) {
				page.Alerts = append(page.Alerts, EntityAlert{IncidentID: id, Alert: a})
			}
		}
	}
	for id := range t.actions {
		if a := x.actions[id]; a != nil && x.actionVisible(a, s) {
			page.Actions = append(page.Actions, actionView(a))
			page.Tenants = appendNew(page.Tenants, a.TenantID)
		}
	}
	sort.Slice(page.Incidents, func(i, j int) bool {
		return page.Incidents[i].LastUpdateDateTime.After(page.Incidents[j].LastUpdateDateTime)
	})
	sort.Slice(page.Alerts, func(i, j int) bool {
		return page.Alerts[i].FirstActivityDateTime.After(page.Alerts[j].FirstActivityDateTime)
	})
	sort.Slice(page.Actions, func(i, j int) bool {
		return page.Actions[i].LastUpdateDateTime.After(page.Actions[j].LastUpdateDateTime)
	})
	sort.Strings(page.Tenants)
	return page, len(page.Incidents)+len(page.Actions) > 0
}
