package httpapi

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/stitch-xdr/stitch/internal/auth"
	"github.com/stitch-xdr/stitch/internal/view"
	"github.com/stitch-xdr/stitch/operators/correlate"
	"github.com/stitch-xdr/stitch/operators/respond"
	"github.com/stitch-xdr/stitch/pipeline"
)

// One pipeline serves every check of the API: starting one is most of the
// cost.
func TestPaneAPI(t *testing.T) {
	p := startPane(t)
	t.Run("RoleByEndpoint", func(t *testing.T) { p.t = t; roleByEndpoint(p) })
	t.Run("CrossTenant", func(t *testing.T) { p.t = t; crossTenant(p) })
	t.Run("DeviceGroups", func(t *testing.T) { p.t = t; deviceGroups(p) })
	t.Run("PatchKeepsAnalystFields", func(t *testing.T) { p.t = t; patchKeepsAnalystFields(p) })
	t.Run("ConcurrentEditsDoNotOverwrite", func(t *testing.T) { p.t = t; concurrentEdits(p) })
	t.Run("GarbageIfMatchChangesNothing", func(t *testing.T) { p.t = t; garbageIfMatch(p) })
	t.Run("DecisionsReachTheActions", func(t *testing.T) { p.t = t; decisionsReachTheActions(p) })
	t.Run("Validation", func(t *testing.T) { p.t = t; validation(p) })
}

// roleByEndpoint tries every role (and no token, and a token the config
// does not have) against every route: a role answers with the route's
// success status exactly when it has the route's permission, 403 when it
// has not, and no token is 401. Every route of the API is in the table.
func roleByEndpoint(p *pane) {
	t := p.t
	roles := []string{auth.Viewer, auth.Analyst, auth.Responder, auth.Admin}
	// Each role that may decide gets its own pending actions, so that one
	// decision does not turn the next into a conflict.
	deciders := map[string][2]string{
		auth.Responder: {p.pending[p.t1[0]], p.pending[p.t1[1]]},
		auth.Admin:     {p.pending[p.t1[2]], p.pending[p.t1[3]]},
	}
	type call struct {
		route, path, body string
		ok                int
	}
	calls := func(role string) []call {
		acts, ok := deciders[role]
		if !ok {
			acts = [2]string{p.pending[p.t1[0]], p.pending[p.t1[0]]}
		}
		return []call{
			{"GET /api/me", "/api/me", "", 200},
			{"GET /api/incidents", "/api/incidents?status=active&sort=-created&limit=2", "", 200},
			{"GET /api/incidents/{id}", "/api/incidents/" + p.t1[0], "", 200},
			{"PATCH /api/incidents/{id}", "/api/incidents/" + p.t1[0], `{"comment":"seen by ` + role + `"}`, 200},
			{"GET /api/actions", "/api/actions?status=pending", "", 200},
			{"GET /api/actions/{id}", "/api/actions/" + p.pending[p.t1[0]], "", 200},
			{"POST /api/actions/{id}/approve", "/api/actions/" + acts[0] + "/approve", `{"comment":"go"}`, 202},
			{"POST /api/actions/{id}/reject", "/api/actions/" + acts[1] + "/reject", "", 202},
			{"GET /api/entities/search", "/api/entities/search?q=ws", "", 200},
			{"GET /api/entities/{type}/{id...}", "/api/entities/device/ws-1", "", 200},
			{"POST /api/hunt", "/api/hunt", `{"query":"SELECT count(*) AS n FROM DeviceProcessEvents"}`, 200},
			{"GET /api/openapi.json", "/api/openapi.json", "", 200},
		}
	}
	covered := map[string]bool{}
	for _, c := range calls(auth.Viewer) {
		covered[c.route] = true
	}
	for _, rt := range routes {
		if !covered[rt.method+" "+rt.path] {
			t.Errorf("route %s %s is not tried by every role", rt.method, rt.path)
		}
	}
	for _, role := range append(roles, "", "stx_not-a-token") {
		for _, c := range calls(role) {
			method, _, _ := strings.Cut(c.route, " ")
			rt := routes[slices.IndexFunc(routes, func(r route) bool { return r.method+" "+r.path == c.route })]
			want := c.ok
			switch {
			case rt.perm == "":
			case role == "" || strings.HasPrefix(role, "stx_"):
				want = http.StatusUnauthorized
			case !(&auth.Principal{Role: role}).Can(rt.perm):
				want = http.StatusForbidden
			}
			if status, body := p.do(role, method, c.path, c.body); status != want {
				t.Errorf("%s as %q: %d, want %d: %s", c.route, role, status, want, body)
			}
		}
	}
}

// crossTenant: a token of tenant t1 sees nothing of t2 anywhere (the queue
// and its counts, an incident, actions, search, entity pages, hunting),
// and cannot act on it; the same the other way round.
func crossTenant(p *pane) {
	t := p.t
	var list view.Incidents
	p.get(auth.Analyst, "/api/incidents?limit=500", &list)
	if list.Total != len(p.t1) || list.Counts["status"][correlate.StatusActive] != len(p.t1) {
		t.Errorf("t1 analyst: total %d, counts %v, want %d t1 incidents", list.Total, list.Counts, len(p.t1))
	}
	for _, s := range list.Incidents {
		if s.TenantID != tenant1 {
			t.Errorf("t1 analyst sees incident %s of %s", s.ID, s.TenantID)
		}
	}
	p.get(auth.Analyst, "/api/incidents?tenant="+tenant2, &list)
	if list.Total != 0 {
		t.Errorf("t1 analyst filtering on t2 sees %d incidents", list.Total)
	}
	var list2 view.Incidents
	p.get("analyst-t2", "/api/incidents", &list2)
	if list2.Total != 1 || list2.Incidents[0].ID != p.t2[0] {
		t.Errorf("t2 analyst sees %+v", list2.Incidents)
	}
	if status, _ := p.do(auth.Analyst, "GET", "/api/incidents/"+p.t2[0], ""); status != http.StatusNotFound {
		t.Errorf("t1 analyst GET of a t2 incident: %d", status)
	}
	if status, _ := p.do(auth.Analyst, "PATCH", "/api/incidents/"+p.t2[0], `{"status":"resolved"}`); status != http.StatusNotFound {
		t.Errorf("t1 analyst PATCH of a t2 incident: %d", status)
	}
	var acts view.Actions
	p.get(auth.Responder, "/api/actions", &acts)
	for _, a := range acts.Actions {
		if a.TenantID != tenant1 {
			t.Errorf("t1 responder sees action %s of %s", a.ID, a.TenantID)
		}
	}
	t2act := p.pending[p.t2[0]]
	if status, _ := p.do(auth.Responder, "POST", "/api/actions/"+t2act+"/approve", ""); status != http.StatusNotFound {
		t.Errorf("t1 responder approving a t2 action: %d", status)
	}
	if status, _ := p.do(auth.Responder, "GET", "/api/actions/"+t2act, ""); status != http.StatusNotFound {
		t.Errorf("t1 responder GET of a t2 action: %d", status)
	}
	var found view.SearchResult
	p.get(auth.Analyst, "/api/entities/search?q=ws-9", &found)
	if len(found.Results) != 0 || found.Exact != nil {
		t.Errorf("t1 analyst finds t2's device: %+v", found)
	}
	p.get("analyst-t2", "/api/entities/search?q=ws-9", &found)
	if len(found.Results) != 1 || found.Exact == nil || found.Exact.ID != "ws-9" {
		t.Errorf("t2 analyst does not find its device: %+v", found)
	}
	if status, _ := p.do(auth.Analyst, "GET", "/api/entities/device/ws-9", ""); status != http.StatusNotFound {
		t.Errorf("t1 analyst GET of t2's device page: %d", status)
	}
	var page entityPageJSON
	p.get("analyst-t2", "/api/entities/device/ws-9", &page)
	if len(page.Incidents) != 1 || len(page.Alerts) != 1 || len(page.Actions) == 0 || page.Telemetry == nil || len(page.Telemetry.Rows) != 1 {
		t.Errorf("t2's device page: %d incidents, %d alerts, %d actions, telemetry %+v (%s)", len(page.Incidents), len(page.Alerts), len(page.Actions), page.Telemetry, page.TelemetryError)
	}
	// Hunting: the t1 analyst's tables hold t1's rows only, and t2 is
	// refused by name.
	var res struct {
		Rows [][]any `json:"rows"`
	}
	status, body := p.do(auth.Analyst, "POST", "/api/hunt", `{"query":"DeviceProcessEvents | project DeviceName","language":"kql"}`)
	if status != 200 || json.Unmarshal(body, &res) != nil || len(res.Rows) != 1 || res.Rows[0][0] != "ws-1.contoso.local" {
		t.Errorf("t1 analyst's hunt: %d %s", status, body)
	}
	if status, _ := p.do(auth.Analyst, "POST", "/api/hunt", `{"query":"SELECT 1","tenant":"t2"}`); status != http.StatusForbidden {
		t.Errorf("t1 analyst hunting in t2: %d", status)
	}
	status, body = p.do(auth.Admin, "POST", "/api/hunt", `{"query":"SELECT DeviceName FROM DeviceProcessEvents ORDER BY 1"}`)
	if status != 200 || json.Unmarshal(body, &res) != nil || len(res.Rows) != 2 {
		t.Errorf("admin of every tenant hunts both: %d %s", status, body)
	}
}

type entityPageJSON struct {
	Incidents      []json.RawMessage `json:"incidents"`
	Alerts         []json.RawMessage `json:"alerts"`
	Actions        []json.RawMessage `json:"actions"`
	Telemetry      *telemetry        `json:"telemetry"`
	TelemetryError string            `json:"telemetryError"`
}

// deviceGroups: a token limited to the workstations group sees only the
// incidents and actions on ws-* devices, and cannot hunt.
func deviceGroups(p *pane) {
	t := p.t
	var list view.Incidents
	p.get("viewer-ws", "/api/incidents", &list)
	var ids []string
	for _, s := range list.Incidents {
		ids = append(ids, s.ID)
	}
	slices.Sort(ids)
	if want := []string{p.t1[0], p.t1[1]}; !slices.Equal(ids, want) || list.Total != 2 {
		t.Errorf("workstations viewer sees %v (total %d), want %v", ids, list.Total, want)
	}
	if status, _ := p.do("viewer-ws", "GET", "/api/incidents/"+p.t1[2], ""); status != http.StatusNotFound {
		t.Errorf("workstations viewer GET of a server's incident: %d", status)
	}
	var acts view.Actions
	p.get("viewer-ws", "/api/actions?type=IsolateDevice", &acts)
	for _, a := range acts.Actions {
		if !strings.HasPrefix(a.Target.DeviceName, "ws-") {
			t.Errorf("workstations viewer sees action on %q", a.Target.DeviceName)
		}
	}
	var found view.SearchResult
	p.get("viewer-ws", "/api/entities/search?q=srv", &found)
	if len(found.Results) != 0 {
		t.Errorf("workstations viewer finds servers: %+v", found.Results)
	}
}

// patchKeepsAnalystFields: an analyst's change is answered at once,
// recorded on incidents.updates (read back by the view), in the history,
// and laid over a later correlator version, so a new alert does not undo a
// classification.
func patchKeepsAnalystFields(p *pane) {
	t := p.t
	id := p.t1[3]
	status, body := p.do(auth.Analyst, "PATCH", "/api/incidents/"+id,
		`{"status":"inProgress","classification":"truePositive","determination":"malware","assignedTo":"alice","tags":["ransomware"],"comment":"isolating"}`)
	var got struct{ Incident view.Incident }
	if status != 200 || json.Unmarshal(body, &got) != nil {
		t.Fatalf("PATCH: %d %s", status, body)
	}
	in := got.Incident
	if in.Status != "inProgress" || in.Classification != "truePositive" || in.AssignedTo == nil || *in.AssignedTo != "alice" ||
		!slices.Contains(in.Tags, "ransomware") || len(in.Comments) != 1 || in.Comments[0].By != auth.Analyst || in.Revision == 0 {
		t.Fatalf("patched incident %+v", in)
	}
	// A new alert: the correlator publishes version 2 with its own fields.
	inc := storyIncident(tenant1, "srv-4", 3, time.Now().UTC())
	inc.Version = 2
	inc.Alerts = append(inc.Alerts, correlate.Alert{ID: "da-later", Title: "Later alert", Severity: "medium", CreatedDateTime: inc.CreatedDateTime,
		FirstActivityDateTime: inc.CreatedDateTime.Add(time.Minute), LastActivityDateTime: inc.CreatedDateTime.Add(time.Minute)})
	inc.CorrelationReasons = []correlate.CorrelationReason{{Entity: "device:name:srv-4", Alerts: [2]string{"da3", "da-later"}}}
	v, _ := json.Marshal(&inc)
	p.run.Produce(t, p.ctx, &kgo.Record{Topic: p.run.Config.Topics.Incidents, Key: []byte(id), Value: v})
	var d view.Detail
	waitFor(t, p.ctx, "version 2 in the view", func() bool {
		p.get(auth.Viewer, "/api/incidents/"+id, &d)
		return d.Incident.Version == 2
	})
	if d.Incident.Classification != "truePositive" || d.Incident.Status != "inProgress" || len(d.Incident.Alerts) != 2 {
		t.Errorf("a later version undid the analyst's fields: %+v", d.Incident)
	}
	var sources []string
	for _, h := range d.History {
		sources = append(sources, h.Source)
	}
	if !slices.Contains(sources, view.SourceAnalyst) || !slices.Contains(sources, view.SourceCorrelate) {
		t.Errorf("history %+v", d.History)
	}
	if len(d.Links) != 1 || !strings.Contains(d.Links[0].Reason, "share device srv-4") || len(d.Timeline) != 2 || len(d.Graph.Nodes) < 3 {
		t.Errorf("links %+v, timeline %d, graph %+v", d.Links, len(d.Timeline), d.Graph)
	}
	if len(d.Actions) == 0 {
		t.Errorf("no actions on the incident's page")
	}
	// The change is on the topic for every other process.
	waitFor(t, p.ctx, "the update on "+pipeline.UpdatesTopic(p.run.Config), func() bool {
		return p.run.Pipeline.Totals().Stages["view"].RecordsIn[pipeline.UpdatesTopic(p.run.Config)] > 0
	})
}

// decisionsReachTheActions: an approval through the API is applied by the
// respond stage: the action becomes approved, by the token's name.
func decisionsReachTheActions(p *pane) {
	t := p.t
	id := p.pending[p.t2[0]]
	if status, body := p.do("responder-t2", "POST", "/api/actions/"+id+"/approve", `{"comment":"confirmed"}`); status != http.StatusAccepted {
		t.Fatalf("approve: %d %s", status, body)
	}
	var got struct{ Action view.ActionView }
	waitFor(t, p.ctx, "the action approved", func() bool {
		p.get("responder-t2", "/api/actions/"+id, &got)
		return got.Action.Status == respond.StatusApproved
	})
	if a := got.Action.Approvals; len(a) != 1 || a[0].By != "responder-t2" || a[0].Comment != "confirmed" {
		t.Errorf("approvals %+v", a)
	}
	if status, _ := p.do("responder-t2", "POST", "/api/actions/"+id+"/approve", ""); status != http.StatusConflict {
		t.Errorf("approving an approved action: %d, want 409", status)
	}
}

// validation: ids, sizes, enums, unknown keys and routes are refused with
// a JSON reason.
func validation(p *pane) {
	t := p.t
	for _, c := range []struct {
		method, path, body string
		want               int
	}{
		{"GET", "/api/incidents/inc%20bad", "", 400},
		{"GET", "/api/incidents/" + strings.Repeat("a", 200), "", 400},
		{"GET", "/api/incidents?limit=0", "", 400},
		{"GET", "/api/incidents?limit=99999", "", 400},
		{"GET", "/api/incidents?status=open", "", 400},
		{"GET", "/api/incidents?sort=title", "", 400},
		{"GET", "/api/incidents?cursor=!!", "", 400},
		{"GET", "/api/incidents?from=yesterday", "", 400},
		{"GET", "/api/incidents/inc-none", "", 404},
		{"PATCH", "/api/incidents/" + p.t1[0], `{"status":"done"}`, 400},
		{"PATCH", "/api/incidents/" + p.t1[0], `{"owner":"bob"}`, 400},
		{"PATCH", "/api/incidents/" + p.t1[0], `{}`, 400},
		{"PATCH", "/api/incidents/" + p.t1[0], `{"comment":"` + strings.Repeat("x", 70<<10) + `"}`, 413},
		{"PATCH", "/api/incidents/" + p.t1[0], `not json`, 400},
		{"GET", "/api/entities/search?q=", "", 400},
		{"GET", "/api/entities/planet/mars", "", 400},
		{"POST", "/api/hunt", `{"query":""}`, 400},
		{"POST", "/api/hunt", `{"query":"SELECT 1","language":"cobol"}`, 400},
		{"POST", "/api/hunt", `{"query":"DROP TABLE x"}`, 400},
		{"GET", "/api/nothing", "", 404},
	} {
		if status, body := p.do(auth.Admin, c.method, c.path, c.body); status != c.want {
			t.Errorf("%s %s: %d, want %d: %s", c.method, c.path, status, c.want, body)
		}
	}
	// A page of another site cannot send JSON without a preflight, which
	// the API does not answer: a change without it is refused.
	req, _ := http.NewRequestWithContext(p.ctx, "POST", p.url+"/api/actions/"+p.pending[p.t1[0]]+"/approve", strings.NewReader(`{}`))
	req.Header.Set("Authorization", "Bearer "+p.tokens[auth.Admin])
	req.Header.Set("Content-Type", "text/plain")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnsupportedMediaType {
		t.Errorf("a text/plain approval: %s", resp.Status)
	}
	// Paging: two pages of two and a last of one, in order, no repeats.
	var seen []string
	cursor := ""
	for range 4 {
		var pg view.Incidents
		p.get(auth.Admin, "/api/incidents?limit=2&sort=-created&cursor="+cursor, &pg)
		for _, s := range pg.Incidents {
			seen = append(seen, s.ID)
		}
		if cursor = pg.NextCursor; cursor == "" {
			break
		}
	}
	if len(seen) != 5 || len(slices.Compact(slices.Sorted(slices.Values(seen)))) != 5 {
		t.Errorf("paging saw %v", seen)
	}
	// With no tokens configured, only loopback is served.
	api := &API{View: view.New(), Tokens: nil}
	h := api.handler(routes[0])
	for from, want := range map[[2]string]int{
		{"127.0.0.1:5000", "127.0.0.1:8080"}: 200, {"[::1]:5000", "localhost:8080"}: 200, {"10.1.2.3:5000", "127.0.0.1:8080"}: 403,
		{"127.0.0.1:5000", "evil.example:8080"}: 403, // DNS rebinding
	} {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest("GET", "/api/me", nil)
		remote := from[0]
		req.RemoteAddr, req.Host = remote, from[1]
		h.ServeHTTP(rec, req)
		if rec.Code != want {
			t.Errorf("no tokens, from %s: %d, want %d", remote, rec.Code, want)
		}
	}
}

// concurrentEdits: two analysts open one incident (its ETag is the
// revision they saw); the first saves, the second's save with If-Match of
// the old revision is refused with 412 naming who changed it, and
// succeeds once made against the new revision. Without If-Match the last
// write wins, as before.
func concurrentEdits(p *pane) {
	t := p.t
	id := p.t1[2]
	status, _, h := p.doWith(auth.Viewer, "GET", "/api/incidents/"+id, "", nil)
	seen := h.Get("ETag")
	if status != 200 || seen == "" {
		t.Fatalf("GET: %d, ETag %q", status, seen)
	}
	status, body, h := p.doWith(auth.Analyst, "PATCH", "/api/incidents/"+id, `{"assignedTo":"alice"}`, map[string]string{"If-Match": seen})
	if status != 200 || h.Get("ETag") == seen || h.Get("ETag") == "" {
		t.Fatalf("first save: %d %s, ETag %q after %q", status, body, h.Get("ETag"), seen)
	}
	now := h.Get("ETag")
	status, body, _ = p.doWith(auth.Admin, "PATCH", "/api/incidents/"+id, `{"assignedTo":"bob"}`, map[string]string{"If-Match": seen})
	if status != http.StatusPreconditionFailed || !strings.Contains(string(body), auth.Analyst) {
		t.Fatalf("a save against the revision before the first: %d %s; want 412 naming %s", status, body, auth.Analyst)
	}
	var d view.Detail
	p.get(auth.Viewer, "/api/incidents/"+id, &d)
	if d.Incident.AssignedTo == nil || *d.Incident.AssignedTo != "alice" {
		t.Fatalf("the refused save changed the incident: assignedTo %v", d.Incident.AssignedTo)
	}
	if status, body, _ = p.doWith(auth.Admin, "PATCH", "/api/incidents/"+id, `{"assignedTo":"bob"}`, map[string]string{"If-Match": now}); status != 200 {
		t.Fatalf("a save against the current revision: %d %s", status, body)
	}
	if status, body = p.do(auth.Analyst, "PATCH", "/api/incidents/"+id, `{"assignedTo":"carol"}`); status != 200 {
		t.Fatalf("a save without If-Match: %d %s", status, body)
	}
}
