package correlate

import (
	"slices"
	"time"
)

// An analyst's change to an incident (the API's PATCH /api/incidents/{id},
// recorded on incidents.updates) reaches the correlator as facts of the
// incident's tenant, re-keyed by the pipeline, and becomes a new version
// of the incident on the incidents topic, so that every consumer of that
// topic (SIEMs, stitch incidents) sees it. The correlator keeps it: the
// fields an analyst set are part of the incident's state, which later
// alerts add to without resetting them, so a new alert does not undo a
// classification. An update applies once (its revision is kept), and to
// the incident an incident was merged into when it was.

// AnalystUpdate is the analysts' whole state of an incident at one
// revision: status, classification, determination, assignee, tags and
// comments.
type AnalystUpdate struct {
	IncidentID     string    `json:"incidentId"`
	Revision       int64     `json:"revision"`
	Status         string    `json:"status,omitempty"`
	Classification string    `json:"classification,omitempty"`
	Determination  string    `json:"determination,omitempty"`
	AssignedTo     *string   `json:"assignedTo,omitempty"`
	Tags           []string  `json:"tags,omitempty"`
	Comments       []Comment `json:"comments,omitempty"`
	By             string    `json:"by"`
	Time           time.Time `json:"time"`
}

// Comment is an analyst's note on an incident.
type Comment struct {
	By   string    `json:"by"`
	Time time.Time `json:"time"`
	Text string    `json:"text"`
}

// MaxIncidentComments bounds the comments an incident version carries:
// the latest ones (the API keeps more in incidents.updates), so that a
// long discussion cannot grow a version past what a record may be.
const MaxIncidentComments = 50

// Statuses an analyst may set (Microsoft 365 Defender's).
var analystStatuses = []string{StatusActive, StatusInProgress, StatusResolved}

// analyst applies an update to the incident it names (or to the one that
// incident was merged into): a new version, unless the incident is gone
// (closed and aged out of state) or already has this revision.
func (t *tx) analyst(u AnalystUpdate) error {
	s, err := t.incident(u.IncidentID)
	for hops := 0; err == nil && s != nil && s.Inc.Status == StatusRedirected && s.Inc.RedirectIncidentID != nil && hops < 16; hops++ {
		s, err = t.incident(*s.Inc.RedirectIncidentID)
	}
	if err != nil || s == nil || s.Inc.Status == StatusRedirected || u.Revision <= s.Rev {
		return err
	}
	s.Rev = u.Revision
	if slices.Contains(analystStatuses, u.Status) {
		s.Inc.Status = u.Status
	}
	if u.Classification != "" {
		s.Inc.Classification = u.Classification
	}
	if u.Determination != "" {
		s.Inc.Determination = u.Determination
	}
	if u.AssignedTo != nil {
		s.Inc.AssignedTo = u.AssignedTo
		if *u.AssignedTo == "" {
			s.Inc.AssignedTo = nil
		}
	}
	if u.Tags != nil {
		s.Inc.Tags = slices.Clone(u.Tags)
	}
	if u.Comments != nil {
		s.Inc.Comments = slices.Clone(u.Comments[max(0, len(u.Comments)-MaxIncidentComments):])
	}
	if u.Time.After(s.Inc.LastUpdateDateTime) {
		s.Inc.LastUpdateDateTime = u.Time
	}
	t.touch(s)
	return nil
}
