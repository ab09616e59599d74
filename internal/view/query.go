package view

import (
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/stitch-xdr/stitch/operators/correlate"
	"github.com/stitch-xdr/stitch/operators/respond"
)

// Summary is an incident as the queue lists it.
type Summary struct {
	ID                 string                   `json:"id"`
	TenantID           string                   `json:"tenantId"`
	DisplayName        string                   `json:"displayName"`
	Severity           string                   `json:"severity"`
	Status             string                   `json:"status"`
	Classification     string                   `json:"classification"`
	Determination      string                   `json:"determination"`
	AssignedTo         *string                  `json:"assignedTo"`
	Tags               []string                 `json:"tags"`
	CreatedDateTime    time.Time                `json:"createdDateTime"`
	LastUpdateDateTime time.Time                `json:"lastUpdateDateTime"`
	AlertCount         int                      `json:"alertCount"`
	ServiceSources     []string                 `json:"serviceSources"`
	DetectionSources   []string                 `json:"detectionSources"`
	Categories         []string                 `json:"categories"`
	ImpactedAssets     correlate.ImpactedAssets `json:"impactedAssets"`
	Version            int64                    `json:"version"`
	Revision           int64                    `json:"revision"`
}

func summarize(inc *Incident) Summary {
	s := Summary{ID: inc.ID, TenantID: inc.TenantID, DisplayName: inc.DisplayName, Severity: inc.Severity, Status: inc.Status,
		Classification: inc.Classification, Determination: inc.Determination, AssignedTo: inc.AssignedTo, Tags: inc.Tags,
		CreatedDateTime: inc.CreatedDateTime, LastUpdateDateTime: inc.LastUpdateDateTime, AlertCount: len(inc.Alerts),
		ImpactedAssets: inc.ImpactedAssets, Version: inc.Version, Revision: inc.Revision,
		ServiceSources: []string{}, DetectionSources: []string{}, Categories: []string{}}
	if s.Tags == nil {
		s.Tags = []string{}
	}
	for _, a := range inc.Alerts {
		s.ServiceSources = appendNew(s.ServiceSources, a.ServiceSource)
		s.DetectionSources = appendNew(s.DetectionSources, a.DetectionSource)
		s.Categories = appendNew(s.Categories, a.Category)
	}
	return s
}

func appendNew(l []string, v string) []string {
	if v == "" || slices.Contains(l, v) {
		return l
	}
	return append(l, v)
}

// Filter selects incidents; empty fields select everything.
type Filter struct {
	Statuses         []string
	Severities       []string
	Tenants          []string
	ServiceSources   []string
	DetectionSources []string
	// Entity is "type:id" (exact), or text found in any impacted asset.
	Entity     string
	AssignedTo string
	// Text is found in the title.
	Text     string
	From, To time.Time // on lastUpdateDateTime, inclusive
}

// Sorts of incidents: the newest, highest, largest first; a "-" prefix
// reverses.
var Sorts = []string{"lastUpdate", "created", "severity", "alerts"}

// Page is a slice of a sorted list: Limit items after Cursor.
type Page struct {
	Sort   string
	Limit  int
	Cursor string
}

// Incidents is a page of incidents and the counts over every match.
type Incidents struct {
	Incidents  []Summary                 `json:"incidents"`
	Total      int                       `json:"total"`
	NextCursor string                    `json:"nextCursor"`
	Counts     map[string]map[string]int `json:"counts"`
	Seq        int64                     `json:"seq"`
}

// ErrBadCursor is a cursor this view did not make.
var ErrBadCursor = errors.New("cursor is not one this API returned")

// ErrBadSort is an unknown sort.
var ErrBadSort = fmt.Errorf("sort is not one of %s (a '-' prefix reverses)", strings.Join(Sorts, ", "))

var severityRank = map[string]int{"unknown": 0, "informational": 1, "low": 2, "medium": 3, "high": 4}

// sortKey orders incidents as text (higher first): fixed-width times and
// zero-padded numbers compare as their values do.
func sortKey(s *Summary, by string) string {
	const ts = "2006-01-02T15:04:05.000000000"
	switch by {
	case "created":
		return s.CreatedDateTime.UTC().Format(ts)
	case "severity":
		return fmt.Sprintf("%d|%s", severityRank[s.Severity], s.LastUpdateDateTime.UTC().Format(ts))
	case "alerts":
		return fmt.Sprintf("%09d|%s", s.AlertCount, s.LastUpdateDateTime.UTC().Format(ts))
	}
	return s.LastUpdateDateTime.UTC().Format(ts)
}

// ListIncidents is the page of the incidents in scope that match f.
func (x *Index) ListIncidents(s Scope, f Filter, p Page) (*Incidents, error) {
	by, asc := strings.CutPrefix(p.Sort, "-")
	if by == "" {
		by = "lastUpdate"
	}
	if !slices.Contains(Sorts, by) {
		return nil, ErrBadSort
	}
	x.mu.RLock()
	out := &Incidents{Incidents: []Summary{}, Seq: x.seq, Counts: map[string]map[string]int{"status": {}, "severity": {}}}
	keyed := make([]keyedItem[*Summary], 0, len(x.incidents))
	k := slices.Index(Sorts, by)
	for _, e := range x.incidents {
		if !e.visible(s) || !f.matches(e) {
			continue
		}
		keyed = append(keyed, keyedItem[*Summary]{key: e.keys[k], id: e.sum.ID, v: &e.sum})
		out.Counts["status"][e.sum.Status]++
		out.Counts["severity"][e.sum.Severity]++
	}
	out.Total = len(keyed)
	items, next, err := paginate(keyed, asc, p)
	if err != nil {
		x.mu.RUnlock()
		return nil, err
	}
	for _, it := range items {
		out.Incidents = append(out.Incidents, *it)
	}
	x.mu.RUnlock()
	out.NextCursor = next
	return out, nil
}

func (f *Filter) matches(e *entry) bool {
	s := &e.sum
	in := func(l []string, v string) bool { return len(l) == 0 || slices.Contains(l, v) }
	any := func(l, vs []string) bool {
		return len(l) == 0 || slices.ContainsFunc(vs, func(v string) bool { return slices.Contains(l, v) })
	}
	switch {
	case !in(f.Statuses, s.Status), !in(f.Severities, s.Severity), !in(f.Tenants, s.TenantID),
		!any(f.ServiceSources, s.ServiceSources), !any(f.DetectionSources, s.DetectionSources),
		!f.From.IsZero() && s.LastUpdateDateTime.Before(f.From),
		!f.To.IsZero() && s.LastUpdateDateTime.After(f.To),
		f.AssignedTo != "" && (s.AssignedTo == nil || !strings.EqualFold(*s.AssignedTo, f.AssignedTo)),
		f.Text != "" && !strings.Contains(strings.ToLower(s.DisplayName), strings.ToLower(f.Text)):
		return false
	}
	if f.Entity == "" {
		return true
	}
	if r, ok := ParseRef(f.Entity); ok {
		return slices.Contains(e.refs, r)
	}
	q := strings.ToLower(f.Entity)
	return slices.ContainsFunc(e.refs, func(r Ref) bool { return strings.Contains(strings.ToLower(r.ID), q) })
}

type keyedItem[T any] struct {
	key, id string
	v       T
}

// paginate sorts items (key descending, then id ascending; reversed when
// asc) and returns the page after the cursor and the next page's cursor.
func paginate[T any](items []keyedItem[T], asc bool, p Page) ([]T, string, error) {
	less := func(a, b keyedItem[T]) bool {
		if asc {
			a, b = b, a
		}
		if a.key != b.key {
			return a.key > b.key
		}
		return a.id < b.id
	}
	sort.Slice(items, func(i, j int) bool { return less(items[i], items[j]) })
	start := 0
	if p.Cursor != "" {
		raw, err := base64.RawURLEncoding.DecodeString(p.Cursor)
		if err != nil {
			return nil, "", ErrBadCursor
		}
		key, id, ok := strings.Cut(string(raw), "\x00")
		if !ok {
			return nil, "", ErrBadCursor
		}
		after := keyedItem[T]{key: key, id: id}
		start = sort.Search(len(items), func(i int) bool { return less(after, items[i]) })
	}
	end := min(len(items), start+p.Limit)
	out := make([]T, 0, end-start)
	for _, it := range items[start:end] {
		out = append(out, it.v)
	}
	next := ""
	if end < len(items) && end > start {
		last := items[end-1]
		next = base64.RawURLEncoding.EncodeToString([]byte(last.key + "\x00" + last.id))
	}
	return out, next, nil
}

// Detail is an incident with everything its page shows.
type Detail struct {
	Incident Incident        `json:"incident"`
	Actions  []ActionView    `json:"actions"`
	Links    []Link          `json:"links"`
	Graph    Graph           `json:"graph"`
	Timeline []TimelineEntry `json:"timeline"`
	History  []Change        `json:"history"`
}

// Link is a correlation link: why two alerts are one incident.
type Link struct {
	Entity string    `json:"entity"`
	Type   string    `json:"type"`
	ID     string    `json:"id"`
	Alerts [2]string `json:"alerts"`
	Merged string    `json:"mergedIncidentId"`
	Reason string    `json:"reason"`
}

// Graph is the alerts and entities of an incident and what joins them.
type Graph struct {
	Nodes []Node `json:"nodes"`
	Edges []Edge `json:"edges"`
}

// Node is an alert or an entity.
type Node struct {
	ID       string `json:"id"`
	Kind     string `json:"kind"` // alert, or an entity type
	Label    string `json:"label"`
	Severity string `json:"severity,omitempty"`
}

// Edge is an alert's evidence (alert → entity) or a correlation link
// (alert → alert, with its reason).
type Edge struct {
	From   string `json:"from"`
	To     string `json:"to"`
	Kind   string `json:"kind"` // evidence or link
	Reason string `json:"reason,omitempty"`
}

// TimelineEntry is an alert in the order the attack happened.
type TimelineEntry struct {
	Time     time.Time `json:"time"`
	AlertID  string    `json:"alertId"`
	Title    string    `json:"title"`
	Severity string    `json:"severity"`
	Category string    `json:"category"`
}

// ActionView is an action with its description for people.
type ActionView struct {
	respond.Action
	Description string `json:"description"`
}

func actionView(a *respond.Action) ActionView {
	v := ActionView{Action: *a, Description: respond.Describe(a.Type, a.Target)}
	if v.Approvals == nil {
		v.Approvals = []respond.Approval{}
	}
	return v
}

// Incident is the merged incident of an id in scope, and the analysts'
// latest revision of it (nil: none yet).
func (x *Index) Incident(s Scope, id string) (Incident, *Update, bool) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	e := x.incidents[id]
	if e == nil || !e.visible(s) {
		return Incident{}, nil, false
	}
	return e.merged, e.upd, true
}

// Detail is the page of an incident in scope.
func (x *Index) Detail(s Scope, id string) (*Detail, bool) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	e := x.incidents[id]
	if e == nil || !e.visible(s) {
		return nil, false
	}
	d := &Detail{Incident: e.merged, Actions: []ActionView{}, Links: []Link{}, Timeline: []TimelineEntry{},
		History: e.historyWithLog(), Graph: Graph{Nodes: []Node{}, Edges: []Edge{}}}
	for _, a := range x.actions {
		if a.IncidentID == id && x.actionVisible(a, s) {
			d.Actions = append(d.Actions, actionView(a))
		}
	}
	sort.Slice(d.Actions, func(i, j int) bool { return d.Actions[i].CreatedDateTime.Before(d.Actions[j].CreatedDateTime) })
	seen := map[string]bool{}
	node := func(n Node) {
		if !seen[n.ID] {
			seen[n.ID] = true
			d.Graph.Nodes = append(d.Graph.Nodes, n)
		}
	}
	for _, a := range e.inc.Alerts {
		d.Timeline = append(d.Timeline, TimelineEntry{Time: a.FirstActivityDateTime, AlertID: a.ID, Title: a.Title, Severity: a.Severity, Category: a.Category})
		node(Node{ID: "alert:" + a.ID, Kind: "alert", Label: a.Title, Severity: a.Severity})
		edges := map[string]bool{}
		for _, ev := range a.Evidence {
			for _, r := range evidenceRefs(ev) {
				node(Node{ID: r.Key(), Kind: r.Type, Label: r.ID})
				if !edges[r.Key()] {
					edges[r.Key()] = true
					d.Graph.Edges = append(d.Graph.Edges, Edge{From: "alert:" + a.ID, To: r.Key(), Kind: "evidence"})
				}
			}
		}
	}
	sort.SliceStable(d.Timeline, func(i, j int) bool { return d.Timeline[i].Time.Before(d.Timeline[j].Time) })
	for _, cr := range e.inc.CorrelationReasons {
		l := Link{Entity: cr.Entity, Alerts: cr.Alerts, Merged: cr.Merged}
		what := cr.Entity
		if r, ok := refOfKey(cr.Entity); ok {
			l.Type, l.ID = r.Type, r.ID
			what = r.Type + " " + r.ID
		}
		l.Reason = fmt.Sprintf("%s and %s share %s", cr.Alerts[0], cr.Alerts[1], what)
		if cr.Merged != "" {
			l.Reason += " (merged incident " + cr.Merged + ")"
		}
		d.Links = append(d.Links, l)
		d.Graph.Edges = append(d.Graph.Edges, Edge{From: "alert:" + cr.Alerts[0], To: "alert:" + cr.Alerts[1], Kind: "link", Reason: "share " + what})
	}
	return d, true
}

// ActionFilter selects actions.
type ActionFilter struct {
	Statuses []string
	Tenants  []string
	Incident string
	Types    []string
}

// Actions is a page of actions.
type Actions struct {
	Actions    []ActionView `json:"actions"`
	Total      int          `json:"total"`
	NextCursor string       `json:"nextCursor"`
	Seq        int64        `json:"seq"`
}

// ListActions is the page of the actions in scope that match f, the most
// recently changed first.
func (x *Index) ListActions(s Scope, f ActionFilter, p Page) (*Actions, error) {
	in := func(l []string, v string) bool { return len(l) == 0 || slices.Contains(l, v) }
	x.mu.RLock()
	out := &Actions{Actions: []ActionView{}, Seq: x.seq}
	var keyed []keyedItem[ActionView]
	for _, a := range x.actions {
		if !in(f.Statuses, a.Status) || !in(f.Tenants, a.TenantID) || !in(f.Types, a.Type) ||
			f.Incident != "" && a.IncidentID != f.Incident || !x.actionVisible(a, s) {
			continue
		}
		keyed = append(keyed, keyedItem[ActionView]{key: a.LastUpdateDateTime.UTC().Format("2006-01-02T15:04:05.000000000"), id: a.ID, v: actionView(a)})
	}
	x.mu.RUnlock()
	out.Total = len(keyed)
	items, next, err := paginate(keyed, false, p)
	if err != nil {
		return nil, err
	}
	out.Actions = append(out.Actions, items...)
	out.NextCursor = next
	return out, nil
}

// Action is an action in scope.
func (x *Index) Action(s Scope, id string) (ActionView, bool) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	a := x.actions[id]
	if a == nil || !x.actionVisible(a, s) {
		return ActionView{}, false
	}
	return actionView(a), true
}

// Counts are the sizes of the view (for /status and tests).
func (x *Index) Counts() (incidents, actions, entities int) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return len(x.incidents), len(x.actions), len(x.entities)
}

// historyWithLog is the correlator's versions and the analysts' revisions
// (the update's log), in time order.
func (e *entry) historyWithLog() []Change {
	h := slices.Clone(e.history)
	if e.upd != nil {
		h = append(h, e.upd.Log...)
	}
	sort.SliceStable(h, func(i, j int) bool { return h[i].Time.Before(h[j].Time) })
	if h == nil {
		h = []Change{}
	}
	return h
}
