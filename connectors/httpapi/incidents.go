package httpapi

import (
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/stitch-xdr/stitch/internal/auth"
	"github.com/stitch-xdr/stitch/internal/view"
	"github.com/stitch-xdr/stitch/operators/correlate"
)

// Values an analyst may set (Graph's security incident enums).
var (
	statuses        = []string{correlate.StatusActive, correlate.StatusInProgress, correlate.StatusResolved}
	classifications = []string{"unknown", "falsePositive", "truePositive", "informationalExpectedActivity"}
	determinations  = []string{"unknown", "apt", "malware", "securityPersonnel", "securityTesting", "unwantedSoftware", "other",
		"multiStagedAttack", "compromisedAccount", "phishing", "maliciousUserActivity", "notMalicious", "notEnoughDataToValidate",
		"confirmedUserActivity", "lineOfBusinessApplication"}
	severities = []string{"informational", "low", "medium", "high", "unknown"}
)

func (a *API) me(w http.ResponseWriter, _ *http.Request, p *auth.Principal) error {
	groups := p.DeviceGroups
	if groups == nil {
		groups = []string{}
	}
	return writeJSON(w, http.StatusOK, map[string]any{"name": p.Name, "role": p.Role, "tenants": p.Tenants,
		"deviceGroups": groups, "permissions": p.Permissions()})
}

func (a *API) listIncidents(w http.ResponseWriter, r *http.Request, p *auth.Principal) error {
	var f view.Filter
	var err error
	q := r.URL.Query()
	for _, l := range []struct {
		name    string
		allowed []string
		dst     *[]string
	}{
		{"status", append(slices.Clone(statuses), correlate.StatusRedirected), &f.Statuses},
		{"severity", severities, &f.Severities},
		{"tenant", nil, &f.Tenants},
		{"serviceSource", nil, &f.ServiceSources},
		{"detectionSource", nil, &f.DetectionSources},
	} {
		if *l.dst, err = list(r, l.name, l.allowed); err != nil {
			return err
		}
	}
	for _, t := range []struct {
		name string
		dst  *time.Time
	}{{"from", &f.From}, {"to", &f.To}} {
		if s := q.Get(t.name); s != "" {
			if *t.dst, err = time.Parse(time.RFC3339, s); err != nil {
				return errBadRequest("%s %q is not an RFC 3339 time (2024-01-02T15:04:05Z)", t.name, truncate(s, 40))
			}
		}
	}
	f.Entity, f.AssignedTo, f.Text = q.Get("entity"), q.Get("assignedTo"), q.Get("q")
	for name, v := range map[string]string{"entity": f.Entity, "assignedTo": f.AssignedTo, "q": f.Text} {
		if len(v) > maxQuery || !utf8.ValidString(v) {
			return errBadRequest("%s is longer than %d bytes or not UTF-8", name, maxQuery)
		}
	}
	pg, err := page(r, 50)
	if err != nil {
		return err
	}
	res, err := a.View.ListIncidents(p, f, pg)
	if err != nil {
		return errBadRequest("%v", err)
	}
	return writeJSON(w, http.StatusOK, res)
}

func (a *API) getIncident(w http.ResponseWriter, r *http.Request, p *auth.Principal) error {
	id := r.PathValue("id")
	if err := checkID("incident id", id); err != nil {
		return err
	}
	d, ok := a.View.Detail(p, id)
	if !ok {
		return errNotFound("no incident %s in your tenants", id)
	}
	w.Header().Set("ETag", revisionTag(d.Incident.Revision))
	return writeJSON(w, http.StatusOK, d)
}

// revisionTag is an incident's ETag: the revision of the analysts'
// changes it shows. A PATCH with If-Match applies only to that revision,
// so two analysts editing one incident cannot overwrite each other
// unknowingly.
func revisionTag(rev int64) string { return `"` + strconv.FormatInt(rev, 10) + `"` }

// checkIfMatch enforces If-Match on a PATCH: absent, the change applies to
// whatever the incident is now (last write wins); present, it must name
// the current revision ("*" names any). A header that is not a list of
// entity tags is a 400 that says what to send, not a 412 that would name
// an analyst as if a change had come between.
func checkIfMatch(r *http.Request, rev int64, prev *view.Update) error {
	h := strings.TrimSpace(r.Header.Get("If-Match"))
	if h == "" || h == "*" {
		return nil
	}
	tags := strings.Split(h, ",")
	for _, tag := range tags {
		if !entityTag(strings.TrimSpace(tag)) {
			return errBadRequest("If-Match %q is not a list of entity tags: send the ETag a GET of the incident answered (as %s), or *",
				truncate(strings.ToValidUTF8(h, "?"), 40), revisionTag(rev))
		}
	}
	for _, tag := range tags {
		if strings.TrimPrefix(strings.TrimSpace(tag), "W/") == revisionTag(rev) {
			return nil
		}
	}
	reason := fmt.Sprintf("the incident is at revision %d, not %s", rev, truncate(h, 40))
	if prev != nil {
		reason = fmt.Sprintf("%s changed the incident at %s (revision %d, you sent If-Match %s): reload it and apply your change again",
			prev.By, prev.Time.Format(time.RFC3339), rev, truncate(h, 40))
	}
	return &apiError{http.StatusPreconditionFailed, "precondition_failed", reason}
}

// entityTag says whether s is one entity tag (RFC 9110): [W/] and a
// quoted string of visible characters other than the quote.
func entityTag(s string) bool {
	s = strings.TrimPrefix(s, "W/")
	if len(s) < 2 || s[0] != '"' || s[len(s)-1] != '"' {
		return false
	}
	for i := 1; i < len(s)-1; i++ {
		if c := s[i]; c == '"' || c < 0x21 || c == 0x7f {
			return false
		}
	}
	return true
}

// incidentPatch is the body of PATCH /api/incidents/{id}: every key is
// optional.
type incidentPatch struct {
	Status         *string   `json:"status"`
	Classification *string   `json:"classification"`
	Determination  *string   `json:"determination"`
	AssignedTo     *string   `json:"assignedTo"`
	Tags           *[]string `json:"tags"`
	Comment        *string   `json:"comment"`
}

func (ip *incidentPatch) validate() error {
	for _, e := range []struct {
		name    string
		v       *string
		allowed []string
	}{{"status", ip.Status, statuses}, {"classification", ip.Classification, classifications}, {"determination", ip.Determination, determinations}} {
		if e.v != nil && !slices.Contains(e.allowed, *e.v) {
			return errBadRequest("%s %q is not one of %s", e.name, truncate(*e.v, 40), strings.Join(e.allowed, ", "))
		}
	}
	if ip.AssignedTo != nil && (len(*ip.AssignedTo) > 256 || !utf8.ValidString(*ip.AssignedTo)) {
		return errBadRequest("assignedTo is longer than 256 bytes or not UTF-8")
	}
	if ip.Tags != nil {
		if len(*ip.Tags) > 50 {
			return errBadRequest("more than 50 tags")
		}
		for _, t := range *ip.Tags {
			if t == "" || len(t) > 64 || !utf8.ValidString(t) {
				return errBadRequest("tag %q is empty, longer than 64 bytes or not UTF-8", truncate(t, 70))
			}
		}
	}
	if ip.Comment != nil && (strings.TrimSpace(*ip.Comment) == "" || len(*ip.Comment) > maxComment || !utf8.ValidString(*ip.Comment)) {
		return errBadRequest("comment is empty, longer than %d bytes or not UTF-8", maxComment)
	}
	if *ip == (incidentPatch{}) {
		return errBadRequest("nothing to change: send status, classification, determination, assignedTo, tags or comment")
	}
	return nil
}

// maxComments bounds the comments an incident keeps in its update record.
const maxComments = 500

func (a *API) patchIncident(w http.ResponseWriter, r *http.Request, p *auth.Principal) error {
	id := r.PathValue("id")
	if err := checkID("incident id", id); err != nil {
		return err
	}
	var body incidentPatch
	if err := decodeBody(r, &body, false); err != nil {
		return err
	}
	if err := body.validate(); err != nil {
		return err
	}
	a.patching.Lock()
	defer a.patching.Unlock()
	inc, prev, ok := a.View.Incident(p, id)
	if !ok {
		return errNotFound("no incident %s in your tenants", id)
	}
	var rev int64
	if prev != nil {
		rev = prev.Revision
	}
	if err := checkIfMatch(r, rev, prev); err != nil {
		return err
	}
	u := view.Update{AnalystUpdate: correlate.AnalystUpdate{IncidentID: id}, TenantID: inc.TenantID}
	if prev != nil {
		u = *prev
		u.Tags = slices.Clone(prev.Tags)
		u.Comments = slices.Clone(prev.Comments)
		u.Log = slices.Clone(prev.Log)
	}
	u.Revision++
	u.By, u.Time = p.Name, time.Now().UTC()
	var changes []string
	set := func(name string, dst *string, v *string) {
		if v != nil {
			*dst = *v
			changes = append(changes, fmt.Sprintf("%s %s", name, *v))
		}
	}
	set("status", &u.Status, body.Status)
	set("classification", &u.Classification, body.Classification)
	set("determination", &u.Determination, body.Determination)
	if body.AssignedTo != nil {
		v := *body.AssignedTo
		u.AssignedTo = &v
		changes = append(changes, fmt.Sprintf("assignedTo %q", v))
	}
	if body.Tags != nil {
		u.Tags = slices.Clone(*body.Tags)
		changes = append(changes, "tags "+strings.Join(u.Tags, ","))
	}
	if body.Comment != nil {
		u.Comments = append(u.Comments, view.Comment{By: p.Name, Time: u.Time, Text: *body.Comment})
		if len(u.Comments) > maxComments {
			u.Comments = u.Comments[len(u.Comments)-maxComments:]
		}
		changes = append(changes, "comment")
	}
	u.Change = strings.Join(changes, "; ")
	u.Log = append(u.Log, view.Change{Version: inc.Version, Revision: u.Revision, Source: view.SourceAnalyst, Time: u.Time, By: u.By, Change: u.Change})
	if len(u.Log) > maxComments {
		u.Log = u.Log[len(u.Log)-maxComments:]
	}
	if err := a.Record(r.Context(), a.Updates, id, &u); err != nil {
		return &apiError{http.StatusServiceUnavailable, "unavailable", fmt.Sprintf("record the change on %s: %v", a.Updates, err)}
	}
	// The view would read it back from the topic; laying it over now lets
	// the answer (and the next request) show it.
	a.View.PutUpdate(u)
	a.Log.Info("audit: incident changed", "incident", id, "tenant", inc.TenantID, "by", p.Name, "revision", u.Revision, "change", u.Change)
	merged, _, _ := a.View.Incident(p, id)
	w.Header().Set("ETag", revisionTag(u.Revision))
	return writeJSON(w, http.StatusOK, map[string]any{"incident": merged})
}
