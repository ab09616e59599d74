// Package view is the incident view the API serves: the latest version of
// every incident and action, the analysts' changes laid over the
// incidents, the versions each incident went through, and an index of the
// entities they touch. It has no Kafka in it: the pipeline's view stage
// (pipeline/view_stage.go) feeds it every record of the incidents, actions
// and incidents.updates topics, and any reader queries it within a scope
// (a token's tenants and device groups).
package view

import (
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/stitch-xdr/stitch/internal/english"
	"github.com/stitch-xdr/stitch/operators/correlate"
	"github.com/stitch-xdr/stitch/operators/respond"
)

// Scope is what a reader may see: auth.Principal is one.
type Scope interface {
	SeesTenant(tenant string) bool
	// SeesAnyDevice is true when the reader is not limited to device
	// groups, or one of devices is in its groups.
	SeesAnyDevice(devices []string) bool
	SeesDevice(device string) bool
}

// Everything is the scope of the pipeline itself (tests, tools).
var Everything Scope = everything{}

type everything struct{}

func (everything) SeesTenant(string) bool      { return true }
func (everything) SeesAnyDevice([]string) bool { return true }
func (everything) SeesDevice(string) bool      { return true }

// maxHistory bounds the versions kept per incident: an incident that
// lives for months keeps its latest changes.
const maxHistory = 200

// Index is the view. Its methods are safe for concurrent use.
type Index struct {
	mu        sync.RWMutex
	incidents map[string]*entry
	actions   map[string]*respond.Action
	// entities: each entity → the incidents and actions that touch it.
	entities map[Ref]*touches
	seq      int64
	ready    bool
}

type touches struct {
	incidents map[string]bool
	actions   map[string]bool
}

type entry struct {
	inc     correlate.Incident // the correlator's latest version
	upd     *Update            // the analysts' latest revision
	history []Change
	refs    []Ref
	merged  Incident // inc with upd laid over it
	sum     Summary
	keys    []string // sortKey by each of Sorts
}

// New makes an empty view.
func New() *Index {
	return &Index{incidents: map[string]*entry{}, actions: map[string]*respond.Action{}, entities: map[Ref]*touches{}}
}

// Seq grows with every change of the view: a reader that polls redraws
// when it moved.
func (x *Index) Seq() int64 {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return x.seq
}

// SetReady marks the view caught up with the topics' ends at start.
func (x *Index) SetReady() {
	x.mu.Lock()
	x.ready = true
	x.mu.Unlock()
}

// Ready says whether the view has read the topics to where they ended when
// it started.
func (x *Index) Ready() bool {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return x.ready
}

// PutIncident records a version of an incident; an older version than the
// one held is ignored (the topic may be read again from its start).
func (x *Index) PutIncident(inc correlate.Incident) {
	if inc.ID == "" {
		return
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	e := x.incidents[inc.ID]
	if e == nil {
		e = &entry{}
		x.incidents[inc.ID] = e
	} else if inc.Version <= e.inc.Version {
		return
	}
	what := versionChange(e.inc, inc)
	e.inc = inc
	e.history = appendHistory(e.history, Change{Version: inc.Version, Revision: e.revision(), Source: SourceCorrelate,
		Time: inc.LastUpdateDateTime, Status: inc.Status, Severity: inc.Severity, AlertCount: len(inc.Alerts), Change: what})
	x.refresh(e)
}

// versionChange says in words what a correlator version changed from the
// one before it (the first: what it began with).
func versionChange(prev, inc correlate.Incident) string {
	if prev.Version == 0 {
		return "created with " + english.Count(len(inc.Alerts), "alert")
	}
	var parts []string
	if n := len(inc.Alerts) - len(prev.Alerts); n > 0 {
		parts = append(parts, "+"+english.Count(n, "alert"))
	}
	if inc.Severity != prev.Severity {
		parts = append(parts, "severity "+prev.Severity+" → "+inc.Severity)
	}
	if inc.Status != prev.Status {
		parts = append(parts, "status "+prev.Status+" → "+inc.Status)
	}
	if inc.RedirectIncidentID != nil && (prev.RedirectIncidentID == nil || *prev.RedirectIncidentID != *inc.RedirectIncidentID) {
		parts = append(parts, "merged into "+*inc.RedirectIncidentID)
	}
	if n := len(inc.CorrelationReasons) - len(prev.CorrelationReasons); n > 0 {
		parts = append(parts, "+"+english.Count(n, "link"))
	}
	if len(parts) == 0 {
		return "updated"
	}
	return strings.Join(parts, "; ")
}

// PutUpdate records an analysts' revision of an incident; an older one than
// held is ignored. An update of an incident the view has not seen yet is
// kept and laid over it when it comes.
func (x *Index) PutUpdate(u Update) {
	if u.IncidentID == "" {
		return
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	e := x.incidents[u.IncidentID]
	if e == nil {
		e = &entry{inc: correlate.Incident{ID: u.IncidentID, TenantID: u.TenantID}}
		x.incidents[u.IncidentID] = e
	} else if e.upd != nil && u.Revision <= e.upd.Revision {
		return
	}
	e.upd = &u // its Log is the analysts' part of the history
	x.refresh(e)
}

// PutAction records a version of an action; an older one is ignored.
func (x *Index) PutAction(a respond.Action) {
	if a.ID == "" {
		return
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	if prev := x.actions[a.ID]; prev != nil {
		if a.Version <= prev.Version {
			return
		}
		for _, r := range actionRefs(prev) {
			if t := x.entities[r]; t != nil {
				delete(t.actions, prev.ID)
			}
		}
	}
	x.actions[a.ID] = &a
	for _, r := range actionRefs(&a) {
		x.touch(r).actions[a.ID] = true
	}
	x.seq++
}

func (x *Index) touch(r Ref) *touches {
	t := x.entities[r]
	if t == nil {
		t = &touches{incidents: map[string]bool{}, actions: map[string]bool{}}
		x.entities[r] = t
	}
	return t
}

// refresh recomputes what derives from an entry: the merged incident, its
// summary and its place in the entity index.
func (x *Index) refresh(e *entry) {
	for _, r := range e.refs {
		if t := x.entities[r]; t != nil {
			delete(t.incidents, e.inc.ID)
		}
	}
	e.merged = merge(e.inc, e.upd)
	e.sum = summarize(&e.merged)
	e.keys = e.keys[:0]
	for _, by := range Sorts {
		e.keys = append(e.keys, sortKey(&e.sum, by))
	}
	e.refs = incidentRefs(&e.inc)
	for _, r := range e.refs {
		x.touch(r).incidents[e.inc.ID] = true
	}
	x.seq++
}

func (e *entry) revision() int64 {
	if e.upd == nil {
		return 0
	}
	return e.upd.Revision
}

// visible says whether an incident is in a scope: its tenant, and one of
// its devices when the scope is limited to device groups. An incident the
// correlator has not published yet (only an update came) is nobody's.
func (e *entry) visible(s Scope) bool {
	return e.inc.Version > 0 && s.SeesTenant(e.inc.TenantID) && s.SeesAnyDevice(e.inc.ImpactedAssets.Devices)
}

// actionVisible says whether an action is in a scope: its tenant, and for
// a scope limited to device groups its device, or (an action on no device)
// its incident.
func (x *Index) actionVisible(a *respond.Action, s Scope) bool {
	if !s.SeesTenant(a.TenantID) {
		return false
	}
	if s.SeesAnyDevice(nil) {
		return true // not limited to device groups
	}
	if a.Target.DeviceName != "" || a.Target.DeviceID != "" {
		return s.SeesDevice(a.Target.DeviceName) || s.SeesDevice(a.Target.DeviceID)
	}
	e := x.incidents[a.IncidentID]
	return e != nil && e.visible(s)
}

func appendHistory(h []Change, c Change) []Change {
	h = append(h, c)
	if len(h) > maxHistory {
		h = slices.Delete(h, 0, len(h)-maxHistory)
	}
	return h
}

// Incident is the correlator's incident with the analysts' fields laid
// over it.
type Incident struct {
	correlate.Incident
	Comments []Comment `json:"comments"`
	// Revision counts the analysts' changes (0: none).
	Revision int64 `json:"revision"`
}

// Comment is an analyst's note on an incident.
type Comment = correlate.Comment

// Update is the analysts' whole state of an incident, as the
// incidents.updates topic carries it (keyed by incident id, compacted): a
// consumer keeps the highest revision. Log is the audit trail of the
// revisions, so that compaction keeps it.
type Update struct {
	// The fields the correlator keeps on the incident's versions: the
	// incident, the revision, status, classification, determination,
	// assignee, tags, and who made this revision when.
	correlate.AnalystUpdate
	TenantID string    `json:"tenantId"`
	Comments []Comment `json:"comments,omitempty"`
	// Change says what this revision changed.
	Change string   `json:"change"`
	Log    []Change `json:"log,omitempty"`
}

// Change is one version of an incident: a correlator's or an analysts'.
type Change struct {
	Version    int64     `json:"version"`
	Revision   int64     `json:"revision"`
	Source     string    `json:"source"`
	Time       time.Time `json:"time"`
	By         string    `json:"by,omitempty"`
	Change     string    `json:"change,omitempty"`
	Status     string    `json:"status,omitempty"`
	Severity   string    `json:"severity,omitempty"`
	AlertCount int       `json:"alertCount"`
}

// Sources of a change.
const (
	SourceCorrelate = "correlate"
	SourceAnalyst   = "analyst"
)

// merge lays the analysts' fields over the correlator's incident. A
// correlator's redirect (the incident was merged into another) wins over an
// analyst's status; everything else the analysts set wins.
func merge(inc correlate.Incident, u *Update) Incident {
	out := Incident{Incident: inc}
	out.Alerts = slices.Clone(inc.Alerts)
	out.Tags = slices.Clone(inc.Tags)
	if out.Tags == nil {
		out.Tags = []string{}
	}
	if u == nil {
		out.Comments = []Comment{}
		return out
	}
	out.Revision = u.Revision
	if u.Status != "" && inc.Status != correlate.StatusRedirected {
		out.Status = u.Status
	}
	if u.Classification != "" {
		out.Classification = u.Classification
	}
	if u.Determination != "" {
		out.Determination = u.Determination
	}
	if u.AssignedTo != nil {
		out.AssignedTo = u.AssignedTo
		if *u.AssignedTo == "" {
			out.AssignedTo = nil
		}
	}
	for _, t := range u.Tags {
		if !slices.Contains(out.Tags, t) {
			out.Tags = append(out.Tags, t)
		}
	}
	out.Comments = slices.Clone(u.Comments)
	if out.Comments == nil {
		out.Comments = []Comment{}
	}
	return out
}
