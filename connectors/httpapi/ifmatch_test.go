package httpapi

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stitch-xdr/stitch/internal/auth"
	"github.com/stitch-xdr/stitch/internal/view"
)

// garbageIfMatch: a PATCH whose If-Match is not a list of entity tags is a
// 400 that says what to send, and changes nothing; one that is well formed
// but names no revision of the incident is the 412 of a stale save.
func garbageIfMatch(p *pane) {
	t := p.t
	id := p.t1[3]
	var before view.Detail
	p.get(auth.Viewer, "/api/incidents/"+id, &before)
	for _, h := range []string{
		"garbage",
		`"3`,
		"3",
		`"a"b"`,
		"W/",
		`"0", junk`,
		`*, "0"x`,
		`"` + strings.Repeat("9", 10000),
		"\"\xff\xfe",
	} {
		status, body, _ := p.doWith(auth.Analyst, "PATCH", "/api/incidents/"+id, `{"assignedTo":"mallory"}`, map[string]string{"If-Match": h})
		if status != http.StatusBadRequest || !strings.Contains(string(body), "not a list of entity tags") || strings.Contains(string(body), auth.Analyst+" changed") {
			t.Errorf("If-Match %.20q: %d %.200s; want 400 saying what to send", h, status, body)
		}
	}
	for _, h := range []string{`"abc"`, `"-1"`, `W/"999999"`, `"999998", "999999"`} {
		status, body, _ := p.doWith(auth.Analyst, "PATCH", "/api/incidents/"+id, `{"assignedTo":"mallory"}`, map[string]string{"If-Match": h})
		if status != http.StatusPreconditionFailed {
			t.Errorf("If-Match %q (no revision of the incident): %d %s; want 412", h, status, body)
		}
	}
	var after view.Detail
	p.get(auth.Viewer, "/api/incidents/"+id, &after)
	if after.Incident.Revision != before.Incident.Revision || after.Incident.AssignedTo != nil && *after.Incident.AssignedTo == "mallory" {
		t.Errorf("refused saves changed the incident: revision %d -> %d, assignedTo %v", before.Incident.Revision, after.Incident.Revision, after.Incident.AssignedTo)
	}
}

// The If-Match header's forms, without a pipeline: absent, *, the current
// revision (weak or strong, in a list) pass; a stale tag is 412; what is
// not an entity tag is 400.
func TestIfMatchForms(t *testing.T) {
	for h, want := range map[string]int{
		"":                     0,
		"*":                    0,
		`"4"`:                  0,
		`W/"4"`:                0,
		` "1" , "4" `:          0,
		`"3"`:                  http.StatusPreconditionFailed,
		`"four"`:               http.StatusPreconditionFailed,
		`""`:                   http.StatusPreconditionFailed,
		"4":                    http.StatusBadRequest,
		`"4`:                   http.StatusBadRequest,
		`"4"x`:                 http.StatusBadRequest,
		`"4",`:                 http.StatusBadRequest,
		`w/"4"`:                http.StatusBadRequest,
		"\"4\x7f\"":            http.StatusBadRequest,
		`"a b"`:                http.StatusBadRequest,
		`"1", "2", zzz"`:       http.StatusBadRequest,
		"\"\xff\"":             http.StatusPreconditionFailed, // obs-text is allowed in a tag
		strings.Repeat(`"`, 3): http.StatusBadRequest,
	} {
		r := httptest.NewRequest("PATCH", "/api/incidents/x", nil)
		r.Header.Set("If-Match", h)
		err := checkIfMatch(r, 4, nil)
		got := 0
		if e, ok := err.(*apiError); ok {
			got = e.status
		} else if err != nil {
			t.Fatalf("If-Match %q: %v", h, err)
		}
		if got != want {
			t.Errorf("If-Match %q: %d (%v), want %d", h, got, err, want)
		}
	}
}
