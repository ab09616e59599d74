package httpapi

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/stitch-xdr/stitch/internal/auth"
	"github.com/stitch-xdr/stitch/internal/view"
	"github.com/stitch-xdr/stitch/operators/correlate"
	"github.com/stitch-xdr/stitch/operators/respond"
	"github.com/stitch-xdr/stitch/pipeline"
	"github.com/stitch-xdr/stitch/pipeline/pipelinetest"
)

// pane is a running pipeline with incidents and actions of two tenants,
// hunting partitions of both, and the API served over it with a token per
// role.
type pane struct {
	t      *testing.T
	ctx    context.Context
	run    *pipelinetest.Running
	url    string
	tokens map[string]string // token name → the token
	// t1 and t2 are the incidents of each tenant; pending the pending
	// IsolateDevice action of each t1 incident, by incident.
	t1, t2  []string
	pending map[string]string
	huntDir string
}

const (
	tenant1 = "t1"
	tenant2 = "t2"
)

// startPane runs it. The incidents are produced as the correlator would;
// the respond stage decides their actions, the view stage reads both, and
// the hunting sink writes a process event of each tenant.
func startPane(t *testing.T) *pane {
	t.Helper()
	if testing.Short() {
		t.Skip("runs the pipeline")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	huntDir := t.TempDir()
	run := pipelinetest.Start(t, ctx, "api-test", func(c *pipeline.Config) {
		c.Hunting.Enabled = true
		c.Hunting.Dir = huntDir
		c.Hunting.RollAge = pipeline.Duration(200 * time.Millisecond)
	})
	p := &pane{t: t, ctx: ctx, run: run, tokens: map[string]string{}, pending: map[string]string{}, huntDir: huntDir}

	now := time.Now().UTC().Truncate(time.Second)
	var recs []*kgo.Record
	for i, spec := range []struct{ tenant, device string }{
		{tenant1, "ws-1"}, {tenant1, "ws-2"}, {tenant1, "srv-3"}, {tenant1, "srv-4"}, {tenant2, "ws-9"},
	} {
		inc := storyIncident(spec.tenant, spec.device, i, now)
		if spec.tenant == tenant1 {
			p.t1 = append(p.t1, inc.ID)
		} else {
			p.t2 = append(p.t2, inc.ID)
		}
		v, _ := json.Marshal(&inc)
		recs = append(recs, &kgo.Record{Topic: run.Config.Topics.Incidents, Key: []byte(inc.ID), Value: v})
	}
	for _, s := range []struct{ tenant, device string }{{tenant1, "ws-1.contoso.local"}, {tenant2, "ws-9.fabrikam.local"}} {
		sig := fmt.Sprintf(`{"time":%q,"tenantId":%q,"category":"AdvancedHunting-DeviceProcessEvents","properties":{"Timestamp":%q,"DeviceId":"d-%s","DeviceName":%q,"ActionType":"ProcessCreated","FileName":"cmd.exe","ProcessCommandLine":"cmd /c whoami","ReportId":1}}`,
			now.Format(time.RFC3339), s.tenant, now.Format(time.RFC3339), s.tenant, s.device)
		recs = append(recs, &kgo.Record{Topic: run.Config.Topics.Inputs[0], Key: []byte(s.tenant), Value: []byte(sig)})
	}
	run.Produce(t, ctx, recs...)

	v := run.Pipeline.View()
	waitFor(t, ctx, "the view to hold the incidents and their pending actions, and the hunting partitions of both tenants", func() bool {
		acts, _ := v.ListActions(view.Everything, view.ActionFilter{Statuses: []string{respond.StatusPending}, Types: []string{respond.IsolateDevice}}, view.Page{Limit: 100})
		incs, _ := v.ListIncidents(view.Everything, view.Filter{}, view.Page{Limit: 100})
		return acts.Total == 5 && incs.Total == 5 && hasPartition(huntDir, tenant1) && hasPartition(huntDir, tenant2)
	})
	acts, _ := v.ListActions(view.Everything, view.ActionFilter{Statuses: []string{respond.StatusPending}, Types: []string{respond.IsolateDevice}}, view.Page{Limit: 100})
	for _, a := range acts.Actions {
		p.pending[a.IncidentID] = a.ID
	}

	var entries []auth.Token
	for _, tk := range []struct {
		name, role string
		tenants    []string
		groups     []string
	}{
		{auth.Viewer, auth.Viewer, []string{tenant1}, nil},
		{auth.Analyst, auth.Analyst, []string{tenant1}, nil},
		{auth.Responder, auth.Responder, []string{tenant1}, nil},
		{auth.Admin, auth.Admin, []string{auth.AllTenants}, nil},
		{"analyst-t2", auth.Analyst, []string{tenant2}, nil},
		{"responder-t2", auth.Responder, []string{tenant2}, nil},
		{"viewer-ws", auth.Viewer, []string{tenant1}, []string{"workstations"}},
	} {
		secret, entry, err := auth.NewToken(tk.name, tk.role, tk.tenants, tk.groups)
		if err != nil {
			t.Fatal(err)
		}
		p.tokens[tk.name] = secret
		entries = append(entries, entry)
	}
	tokens, err := auth.NewTokens(entries, []auth.DeviceGroup{{Name: "workstations", Devices: []string{"ws-*"}}})
	if err != nil {
		t.Fatal(err)
	}
	api := &API{View: v, Tokens: tokens, Approvals: run.Config.Respond.Approvals, Updates: pipeline.UpdatesTopic(run.Config),
		HuntingDir: huntDir, Record: func(ctx context.Context, topic, key string, v any) error {
			b, err := json.Marshal(v)
			if err != nil {
				return err
			}
			return run.Client.ProduceSync(ctx, &kgo.Record{Topic: topic, Key: []byte(key), Value: b}).FirstErr()
		}}
	srv, err := Listen("127.0.0.1:0", prometheus.NewRegistry(), WithAPI(api))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	p.url = "http://" + srv.Addr()
	return p
}

// storyIncident is an endpoint incident on device as the correlator
// publishes it: an alert with the device and a file as evidence, so that
// the default playbooks ask to isolate the device (pending an analyst).
func storyIncident(tenant, device string, i int, at time.Time) correlate.Incident {
	sha := fmt.Sprintf("%064x", 0xabc0+i)
	alert := correlate.Alert{ID: fmt.Sprintf("da%d", i), Title: "Suspicious process on " + device, Severity: "High", Status: "new",
		ServiceSource: "Microsoft Defender for Endpoint", DetectionSource: "EDR", Category: "Execution", CreatedDateTime: at,
		FirstActivityDateTime: at, LastActivityDateTime: at,
		Evidence: []correlate.Evidence{
			{ODataType: correlate.GraphEvidenceType("File"), MdeDeviceID: fmt.Sprintf("dev%d", i), FileDetails: &correlate.FileDetails{SHA256: sha}},
			{ODataType: correlate.GraphEvidenceType("Machine"), MdeDeviceID: fmt.Sprintf("dev%d", i), DeviceDNSName: device}}}
	return correlate.Incident{ID: fmt.Sprintf("inc-%s-%d", tenant, i), TenantID: tenant, DisplayName: "Execution incident on " + device,
		Status: correlate.StatusActive, Severity: "high", Version: 1, CreatedDateTime: at, LastUpdateDateTime: at,
		Alerts: []correlate.Alert{alert}, ImpactedAssets: correlate.ImpactedAssets{Devices: []string{device}, Files: []string{sha}}}
}

func hasPartition(dir, tenant string) bool {
	m, _ := filepath.Glob(filepath.Join(dir, "DeviceProcessEvents", "tenant="+tenant, "*", "*.parquet"))
	if len(m) == 0 {
		m, _ = filepath.Glob(filepath.Join(dir, "DeviceProcessEvents", "tenant="+tenant, "*", "*", "*.parquet"))
	}
	return len(m) > 0
}

func waitFor(t *testing.T, ctx context.Context, what string, ok func() bool) {
	t.Helper()
	for !ok() {
		if ctx.Err() != nil {
			t.Fatalf("waited in vain for %s", what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// do sends a request as the named token ("" sends none) and returns the
// status and the body.
func (p *pane) do(token, method, path, body string) (int, []byte) {
	p.t.Helper()
	status, b, _ := p.doWith(token, method, path, body, nil)
	return status, b
}

// doWith is do with request headers, returning the answer's headers too.
func (p *pane) doWith(token, method, path, body string, hdr map[string]string) (int, []byte, http.Header) {
	p.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(p.ctx, method, p.url+path, rd)
	if err != nil {
		p.t.Fatal(err)
	}
	if token != "" {
		secret, ok := p.tokens[token]
		if !ok {
			secret = token // a token the config does not have
		}
		req.Header.Set("Authorization", "Bearer "+secret)
	}
	if method != "GET" {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		p.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode >= 400 {
		var e struct{ Error, Reason string }
		if err := json.Unmarshal(b, &e); err != nil || e.Error == "" || e.Reason == "" {
			p.t.Errorf("%s %s: error %d is not JSON with a reason: %s", method, path, resp.StatusCode, b)
		}
	}
	return resp.StatusCode, b, resp.Header
}

// get decodes a 200 answer into v.
func (p *pane) get(token, path string, v any) {
	p.t.Helper()
	status, b := p.do(token, "GET", path, "")
	if status != http.StatusOK {
		p.t.Fatalf("GET %s as %s: %d %s", path, token, status, b)
	}
	if err := json.Unmarshal(b, v); err != nil {
		p.t.Fatalf("GET %s: %v\n%s", path, err, b)
	}
}
