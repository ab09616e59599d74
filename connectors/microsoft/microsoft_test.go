package microsoft

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stitch-xdr/stitch/connectors/execute"
	"github.com/stitch-xdr/stitch/operators/respond"
)

// cloud stands in for the identity platform, Defender for Endpoint and
// Graph on one local server: it checks what the public API references
// require of each request (the token grant's form, a bearer token of the
// right audience, the path, the method, the JSON body) and records what
// it was asked. Machine actions behave as Defender's: a POST creates one
// (201, Pending, the Comment as requestorComment), GET
// /api/machineactions?$filter= lists them by machine and type, and GET
// /api/machineactions/{id} answers the statuses of progress in turn.
type cloud struct {
	t *testing.T

	mu      sync.Mutex
	apps    map[string][2]string // directory -> client id, secret
	tokens  int                  // token grants issued
	calls   []string             // "METHOD path" of every API call
	bodies  []map[string]any     // their JSON bodies (nil when none)
	dirs    []string             // the directory of each call's token
	answer  func(n int) (int, string)
	issued  map[string][2]string // token -> scope, directory
	reqIDs  []string
	queries []string // the $filter of each call

	machine  []*machineAction // by creation
	looks    map[string]int   // GETs of each machine action
	progress []string         // statuses a machine action answers, one per GET; the last stays
}

func newCloud(t *testing.T) (*cloud, *httptest.Server) {
	c := &cloud{t: t, issued: map[string][2]string{}, apps: map[string][2]string{"dir-1": {"app-1", "s3cret"}},
		looks: map[string]int{}, progress: []string{MachineSucceeded}}
	srv := httptest.NewServer(c)
	t.Cleanup(srv.Close)
	return c, srv
}

var (
	machinePath = regexp.MustCompile(`^/api/machines/([^/]+)/([A-Za-z]+)$`)
	machineList = regexp.MustCompile(`^machineId eq '([^']*)' and type eq '([A-Za-z]+)'$`)
	verbType    = map[string]string{"isolate": "Isolate", "unisolate": "Unisolate", "collectInvestigationPackage": "CollectInvestigationPackage",
		"runAntiVirusScan": "RunAntiVirusScan", "restrictCodeExecution": "RestrictCodeExecution",
		"unrestrictCodeExecution": "UnrestrictCodeExecution", "StopAndQuarantineFile": "StopAndQuarantineFile"}
)

func (c *cloud) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if dir, ok := strings.CutSuffix(strings.TrimPrefix(r.URL.Path, "/"), "/oauth2/v2.0/token"); ok {
		app, known := c.apps[dir]
		if !known || r.Header.Get("Content-Type") != "application/x-www-form-urlencoded" {
			c.t.Errorf("token request %s with %s", r.URL.Path, r.Header.Get("Content-Type"))
		}
		r.ParseForm()
		if r.PostForm.Get("client_secret") != app[1] {
			w.WriteHeader(http.StatusUnauthorized)
			io.WriteString(w, `{"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret provided."}`)
			return
		}
		if r.PostForm.Get("grant_type") != "client_credentials" || r.PostForm.Get("client_id") != app[0] {
			c.t.Errorf("token form %v", r.PostForm)
		}
		c.tokens++
		tok := fmt.Sprintf("tok-%d", c.tokens)
		c.issued[tok] = [2]string{r.PostForm.Get("scope"), dir}
		fmt.Fprintf(w, `{"token_type":"Bearer","expires_in":3599,"access_token":%q}`, tok)
		return
	}
	want := graphScope
	if strings.HasPrefix(r.URL.Path, "/api/") {
		want = defenderScope
	}
	got := c.issued[strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")]
	if got[0] != want {
		c.t.Errorf("%s %s with a token for %q, want one for %q", r.Method, r.URL.Path, got[0], want)
	}
	c.calls = append(c.calls, r.Method+" "+r.URL.EscapedPath())
	c.dirs = append(c.dirs, got[1])
	c.queries = append(c.queries, r.URL.Query().Get("$filter"))
	c.reqIDs = append(c.reqIDs, r.Header.Get("client-request-id"))
	var body map[string]any
	if b, _ := io.ReadAll(r.Body); len(b) > 0 {
		if r.Header.Get("Content-Type") != "application/json" {
			c.t.Errorf("%s %s: body without Content-Type application/json", r.Method, r.URL.Path)
		}
		if err := json.Unmarshal(b, &body); err != nil {
			c.t.Errorf("%s %s: body is not a JSON object: %v", r.Method, r.URL.Path, err)
		}
	}
	if r.Method == http.MethodGet && body != nil {
		c.t.Errorf("GET %s with a body", r.URL.Path)
	}
	c.bodies = append(c.bodies, body)
	status, msg := 0, ""
	if c.answer != nil {
		status, msg = c.answer(len(c.calls))
	}
	if status == 0 {
		status, msg = c.defender(r, body)
	}
	w.WriteHeader(status)
	io.WriteString(w, msg)
}

// defender answers as Defender does about machine actions, {} to the rest.
func (c *cloud) defender(r *http.Request, body map[string]any) (int, string) {
	switch m := machinePath.FindStringSubmatch(r.URL.Path); {
	case r.Method == http.MethodPost && m != nil:
		comment, _ := body["Comment"].(string)
		if comment == "" {
			return http.StatusBadRequest, `{"error":{"code":"InvalidRequestBody","message":"Comment is required"}}`
		}
		ma := &machineAction{ID: fmt.Sprintf("ma-%d", len(c.machine)+1), Type: verbType[m[2]], Status: MachinePending, MachineID: m[1],
			Requestor: "app-1", RequestorComment: comment, Created: fmt.Sprintf("2024-01-02T10:%02d:00.1234567Z", len(c.machine))}
		if sha1, ok := body["Sha1"].(string); ok {
			ma.RelatedFileInfo = &struct {
				FileIdentifier     string `json:"fileIdentifier"`
				FileIdentifierType string `json:"fileIdentifierType"`
			}{sha1, "Sha1"}
		}
		c.machine = append(c.machine, ma)
		return http.StatusCreated, mustJSON(ma)
	case r.Method == http.MethodGet && r.URL.Path == "/api/machineactions":
		f := machineList.FindStringSubmatch(r.URL.Query().Get("$filter"))
		if f == nil {
			c.t.Errorf("machine actions listed with $filter %q", r.URL.Query().Get("$filter"))
			return http.StatusBadRequest, `{}`
		}
		list := []*machineAction{}
		for _, ma := range c.machine {
			if ma.MachineID == f[1] && ma.Type == f[2] {
				list = append(list, ma)
			}
		}
		return http.StatusOK, mustJSON(map[string]any{"@odata.context": "https://api.securitycenter.microsoft.com/api/$metadata#MachineActions", "value": list})
	case r.Method == http.MethodGet && strings.HasPrefix(r.URL.Path, "/api/machineactions/"):
		id := strings.TrimPrefix(r.URL.Path, "/api/machineactions/")
		for _, ma := range c.machine {
			if ma.ID == id {
				n := c.looks[id]
				c.looks[id]++
				ma.Status = c.progress[min(n, len(c.progress)-1)]
				return http.StatusOK, mustJSON(ma)
			}
		}
		return http.StatusNotFound, `{"error":{"code":"ResourceNotFound","message":"MachineAction was not found"}}`
	}
	return http.StatusOK, `{}`
}

// count is how many calls were "METHOD path-prefix".
func (c *cloud) count(prefix string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, call := range c.calls {
		if strings.HasPrefix(call, prefix) {
			n++
		}
	}
	return n
}

func executor(srv *httptest.Server) *Executor {
	return &Executor{
		Credentials: Credentials{TenantID: "dir-1", ClientID: "app-1", ClientSecret: "s3cret"},
		DefenderURL: srv.URL, GraphURL: srv.URL, LoginURL: srv.URL,
		Retry:  execute.Retry{Attempts: 3, Backoff: time.Millisecond},
		Follow: execute.Follow{Interval: time.Millisecond, MaxInterval: 4 * time.Millisecond},
	}
}

func approved(typ string, t respond.Target) *respond.Action {
	return &respond.Action{ID: "act-1", TenantID: "t1", Type: typ, Target: t, IncidentID: "inc-1",
		Reason: "malicious file", Status: respond.StatusApproved, IdempotencyKey: "idem-1", Version: 2}
}

// Every action type becomes the documented call, with the documented body.
func TestEveryActionTypeIsItsDocumentedCall(t *testing.T) {
	dev := respond.Target{DeviceID: "1e5bc9d7e413ddd7902c2932e418702b84d0cc07", DeviceName: "ws1"}
	user := respond.Target{AccountObjectID: "6c0e6d3f-0000-4e3b-8f7a-000000000001", UPN: "pgustavo@contoso.com"}
	for _, tc := range []struct {
		typ    string
		target respond.Target
		call   string
		body   map[string]any // fields that must be present with these values
	}{
		{respond.IsolateDevice, dev, "POST /api/machines/" + dev.DeviceID + "/isolate", map[string]any{"IsolationType": "Full"}},
		{respond.ReleaseDevice, dev, "POST /api/machines/" + dev.DeviceID + "/unisolate", nil},
		{respond.CollectInvestigationPackage, dev, "POST /api/machines/" + dev.DeviceID + "/collectInvestigationPackage", nil},
		{respond.RunAntivirusScan, dev, "POST /api/machines/" + dev.DeviceID + "/runAntiVirusScan", map[string]any{"ScanType": "Quick"}},
		{respond.RestrictAppExecution, dev, "POST /api/machines/" + dev.DeviceID + "/restrictCodeExecution", nil},
		{respond.StopAndQuarantineFile, respond.Target{DeviceID: dev.DeviceID, SHA1: "8d3d9e0f7c1fa4e5e1e4f2b35a0d6a1f0e4b2c11"},
			"POST /api/machines/" + dev.DeviceID + "/StopAndQuarantineFile", map[string]any{"Sha1": "8d3d9e0f7c1fa4e5e1e4f2b35a0d6a1f0e4b2c11"}},
		{respond.BlockIndicator, respond.Target{Indicator: "ab12", IndicatorType: respond.IndicatorSHA256}, "POST /api/indicators",
			map[string]any{"indicatorValue": "ab12", "indicatorType": "FileSha256", "action": "BlockAndRemediate"}},
		{respond.BlockIndicator, respond.Target{Indicator: "1.2.3.4", IndicatorType: respond.IndicatorIP}, "POST /api/indicators",
			map[string]any{"indicatorValue": "1.2.3.4", "indicatorType": "IpAddress", "action": "Block"}},
		{respond.RemoveAppRestriction, dev, "POST /api/machines/" + dev.DeviceID + "/unrestrictCodeExecution", nil},
		{respond.DisableUser, user, "PATCH /v1.0/users/" + user.AccountObjectID, map[string]any{"accountEnabled": false}},
		{respond.DisableUser, respond.Target{UPN: "a b@contoso.com"}, "PATCH /v1.0/users/a%20b@contoso.com", map[string]any{"accountEnabled": false}},
		{respond.ForcePasswordReset, user, "PATCH /v1.0/users/" + user.AccountObjectID,
			map[string]any{"passwordProfile": map[string]any{"forceChangePasswordNextSignIn": true}}},
		{respond.RevokeSessions, user, "POST /v1.0/users/" + user.AccountObjectID + "/revokeSignInSessions", nil},
		{respond.MarkUserCompromised, user, "POST /v1.0/identityProtection/riskyUsers/confirmCompromised",
			map[string]any{"userIds": []any{user.AccountObjectID}}},
		{respond.SoftDeleteEmail, respond.Target{NetworkMessageID: "5a1c0b6e-0000-4d3b-9c8e-0000000000aa", Recipient: "bob@contoso.com"},
			"POST /v1.0/security/collaboration/analyzedEmails/remediate", map[string]any{"action": "softDelete",
				"analyzedEmails": []any{map[string]any{"networkMessageId": "5a1c0b6e-0000-4d3b-9c8e-0000000000aa", "recipientEmailAddress": "bob@contoso.com"}}}},
	} {
		t.Run(tc.typ, func(t *testing.T) {
			c, srv := newCloud(t)
			out, err := executor(srv).Execute(context.Background(), approved(tc.typ, tc.target))
			if err != nil || out.Status != respond.StatusSucceeded || out.Executor != "microsoft" {
				t.Fatalf("outcome %+v, %v", out, err)
			}
			want := []string{tc.call}
			if strings.HasPrefix(tc.call, "POST /api/machines/") {
				// A machine action: looked for first (none of this
				// action yet), posted, then followed until it ended.
				want = []string{"GET /api/machineactions", tc.call, "GET /api/machineactions/ma-1"}
				if mt := verbType[tc.call[strings.LastIndex(tc.call, "/")+1:]]; c.queries[0] != "machineId eq '"+tc.target.DeviceID+"' and type eq '"+mt+"'" {
					t.Errorf("machine actions listed with $filter %q", c.queries[0])
				}
			}
			if strings.Join(c.calls, ",") != strings.Join(want, ",") {
				t.Fatalf("calls %v, want %v", c.calls, want)
			}
			at := len(want) / 2 // the call of the action
			for i, id := range c.reqIDs {
				if id != "idem-1" {
					t.Errorf("call %d: client-request-id %q, want the idempotency key", i, id)
				}
			}
			for k, v := range tc.body {
				if got, _ := json.Marshal(c.bodies[at][k]); string(got) != mustJSON(v) {
					t.Errorf("body %s = %s, want %s", k, got, mustJSON(v))
				}
			}
			if strings.HasPrefix(tc.call, "POST /api/machines/") {
				if cm, _ := c.bodies[at]["Comment"].(string); !strings.HasPrefix(cm, "stitch act-1: ") {
					t.Errorf("machine action without the required Comment naming the action: %v", c.bodies[at])
				}
			}
		})
	}
}

// Unblocking lists the indicators of the value and deletes each by id, as
// the API deletes by id only; with none left, there is nothing to do.
func TestUnblockDeletesTheIndicatorsOfTheValue(t *testing.T) {
	c, srv := newCloud(t)
	c.answer = func(n int) (int, string) {
		if n == 1 {
			return http.StatusOK, `{"value":[{"id":"995"},{"id":996}]}`
		}
		return http.StatusNoContent, ``
	}
	a := approved(respond.UnblockIndicator, respond.Target{Indicator: "1.2.3.4", IndicatorType: respond.IndicatorIP})
	out, err := executor(srv).Execute(context.Background(), a)
	if err != nil || out.Status != respond.StatusSucceeded {
		t.Fatalf("outcome %+v, %v", out, err)
	}
	want := []string{"GET /api/indicators", "DELETE /api/indicators/995", "DELETE /api/indicators/996"}
	if strings.Join(c.calls, ",") != strings.Join(want, ",") {
		t.Fatalf("calls %v, want %v", c.calls, want)
	}
	if c.queries[0] != "indicatorValue eq '1.2.3.4'" {
		t.Errorf("filter %q", c.queries[0])
	}
}

func mustJSON(v any) string { b, _ := json.Marshal(v); return string(b) }

// One token per API, reused across actions; a 401 (revoked token) fetches
// a new one and the call is tried again.
func TestTokensAreCachedAndRenewedAfter401(t *testing.T) {
	c, srv := newCloud(t)
	e := executor(srv)
	c.answer = func(n int) (int, string) {
		if n == 3 {
			return http.StatusUnauthorized, `{"error":{"code":"InvalidAuthenticationToken"}}`
		}
		return http.StatusOK, `{}`
	}
	user := respond.Target{AccountObjectID: "u1"}
	for i := 0; i < 3; i++ {
		if out, _ := e.Execute(context.Background(), approved(respond.DisableUser, user)); out.Status != respond.StatusSucceeded {
			t.Fatalf("action %d: %+v", i, out)
		}
	}
	if c.tokens != 2 || len(c.calls) != 4 {
		t.Fatalf("%d tokens for %d calls, want 2 for 4 (one renewed after the 401)", c.tokens, len(c.calls))
	}
}

// Defender's ActiveRequestAlreadyExists (the same kind of action is
// already under way on the device, started by someone else) is not a
// failure to retry: that machine action is followed in this one's place.
func TestMicrosoftAlreadyUnderWayIsFollowed(t *testing.T) {
	c, srv := newCloud(t)
	c.machine = []*machineAction{{ID: "theirs", Type: "Isolate", Status: MachineInProgress, MachineID: "d1",
		Requestor: "analyst@contoso.com", RequestorComment: "isolating by hand", Created: "2024-01-02T09:00:00Z"}}
	c.answer = func(n int) (int, string) {
		if n == 2 {
			return http.StatusBadRequest, `{"error":{"code":"ActiveRequestAlreadyExists","message":"Action is already in progress"}}`
		}
		return 0, ""
	}
	out, err := executor(srv).Execute(context.Background(), approved(respond.IsolateDevice, respond.Target{DeviceID: "d1"}))
	want := "GET /api/machineactions,POST /api/machines/d1/isolate,GET /api/machineactions,GET /api/machineactions/theirs"
	if err != nil || out.Status != respond.StatusSucceeded || strings.Join(c.calls, ",") != want {
		t.Fatalf("outcome %+v, %v after %v; want succeeded after %s", out, err, c.calls, want)
	}
}

// What fails says why, and what cannot succeed is not retried.
func TestFailures(t *testing.T) {
	for _, tc := range []struct {
		name   string
		action *respond.Action
		secret string
		answer func(int) (int, string)
		calls  int
		reason string
	}{
		{"no SHA-1 for Defender", approved(respond.StopAndQuarantineFile, respond.Target{DeviceID: "d1", SHA256: "ab"}), "s3cret", nil, 0, "needs the file's SHA-1"},
		{"no machine id", approved(respond.IsolateDevice, respond.Target{DeviceName: "ws1"}), "s3cret", nil, 0, `device "ws1" has none`},
		{"SID only", approved(respond.DisableUser, respond.Target{SID: "S-1-5-21-1"}), "s3cret", nil, 0, "Graph does not take a SID"},
		{"bad credentials", approved(respond.IsolateDevice, respond.Target{DeviceID: "d1"}), "wrong", nil, 0, "Invalid client secret"},
		{"not found", approved(respond.IsolateDevice, respond.Target{DeviceID: "d1"}), "s3cret",
			func(int) (int, string) { return http.StatusNotFound, `{"error":{"code":"ResourceNotFound"}}` }, 1, "HTTP 404"},
		{"throttled every time", approved(respond.IsolateDevice, respond.Target{DeviceID: "d1"}), "s3cret",
			func(int) (int, string) { return http.StatusTooManyRequests, `{"error":{"code":"TooManyRequests"}}` }, 3, "3 attempts failed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, srv := newCloud(t)
			c.answer = tc.answer
			e := executor(srv)
			e.Credentials.ClientSecret = tc.secret
			out, err := e.Execute(context.Background(), tc.action)
			if err != nil || out.Status != respond.StatusFailed || !strings.Contains(out.Error, tc.reason) {
				t.Fatalf("outcome %+v, %v; want failed with %q", out, err, tc.reason)
			}
			if len(c.calls) != tc.calls {
				t.Fatalf("%d API calls, want %d", len(c.calls), tc.calls)
			}
		})
	}
}

func TestCredentialsFromEnvNamesWhatIsMissing(t *testing.T) {
	t.Setenv(EnvTenantID, "dir-1")
	t.Setenv(EnvClientID, "")
	t.Setenv(EnvClientSecret, "")
	if _, err := CredentialsFromEnv(); err == nil || !strings.Contains(err.Error(), EnvClientID+", "+EnvClientSecret) {
		t.Fatalf("err %v", err)
	}
}

// recorder is a Retry clock that only records the waits asked of it.
type recorder struct {
	mu    sync.Mutex
	waits []time.Duration
}

func (r *recorder) sleep(_ context.Context, d time.Duration) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.waits = append(r.waits, d)
	return nil
}

// A machine action is sent, not succeeded, when Defender accepts it: it is
// followed through GET /api/machineactions/{id}, with backoff, until
// Defender says it ended. Pending, InProgress, Succeeded ends succeeded.
func TestMicrosoftMachineActionFollowedUntilSucceeded(t *testing.T) {
	c, srv := newCloud(t)
	c.progress = []string{MachinePending, MachineInProgress, MachineSucceeded}
	e := executor(srv)
	rec := &recorder{}
	e.Retry.Sleep = rec.sleep
	e.Follow = execute.Follow{Interval: time.Second, MaxInterval: 3 * time.Second}
	a := approved(respond.IsolateDevice, respond.Target{DeviceID: "d1"})

	rep, err := e.Start(context.Background(), a)
	if err != nil || rep.Status != respond.StatusSent || rep.ExternalID != "ma-1" || rep.Error != "" {
		t.Fatalf("start: %+v, %v; want sent with the machine action id", rep, err)
	}
	p := execute.PendingOf(a, rep)
	var seen []string
	for i := 0; i < 3; i++ {
		rep, err = e.Poll(context.Background(), &p, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		seen = append(seen, rep.Status+"/"+p.Status)
	}
	if want := "sent/Pending,sent/InProgress,succeeded/Succeeded"; strings.Join(seen, ",") != want {
		t.Fatalf("polls %v, want %s", seen, want)
	}
	want := "GET /api/machineactions,POST /api/machines/d1/isolate,GET /api/machineactions/ma-1,GET /api/machineactions/ma-1,GET /api/machineactions/ma-1"
	if strings.Join(c.calls, ",") != want {
		t.Fatalf("calls %v, want %s", c.calls, want)
	}
	for i, b := range c.bodies {
		if strings.HasPrefix(c.calls[i], "GET") && b != nil {
			t.Errorf("%s with a body", c.calls[i])
		}
	}

	// Execute does the same in one call, waiting Interval, then twice as
	// long each time, up to MaxInterval.
	c2, srv2 := newCloud(t)
	c2.progress = []string{MachinePending, MachinePending, MachineInProgress, MachineSucceeded}
	e2 := executor(srv2)
	e2.Retry.Sleep = rec.sleep
	e2.Follow = e.Follow
	rec.waits = nil
	out, err := e2.Execute(context.Background(), a)
	if err != nil || out.Status != respond.StatusSucceeded {
		t.Fatalf("execute: %+v, %v", out, err)
	}
	if got := fmt.Sprint(rec.waits); got != "[1s 2s 3s 3s]" {
		t.Errorf("waits %s, want [1s 2s 3s 3s]", got)
	}
	if n := c2.count("POST "); n != 1 {
		t.Errorf("%d posts", n)
	}
}

// A machine action that ends Failed, TimeOut or Cancelled ends the action
// failed with Defender's word for it (and who cancelled it and why); one
// that stays unfinished past the follow timeout fails too, saying so; one
// Defender does not know fails at once.
func TestMicrosoftMachineActionFailures(t *testing.T) {
	for _, tc := range []struct {
		name     string
		progress []string
		after    time.Duration // when the last poll is, after the start
		cancel   [2]string
		reason   string
	}{
		{"failed", []string{MachinePending, MachineFailed}, 0, [2]string{}, "Defender machine action ma-1 (Isolate) ended Failed"},
		{"timed out", []string{MachineInProgress, MachineTimeOut}, 0, [2]string{}, "ended TimeOut"},
		{"cancelled", []string{MachinePending, MachineCancelled}, 0, [2]string{"analyst@contoso.com", "the device is a server"},
			"Defender machine action ma-1 (Isolate) was cancelled by analyst@contoso.com: the device is a server"},
		{"never ends", []string{MachinePending}, 25 * time.Hour, [2]string{}, "still Pending 24h0m0s after it was sent"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, srv := newCloud(t)
			c.progress = tc.progress
			e := executor(srv)
			e.Follow.Timeout = 24 * time.Hour
			a := approved(respond.IsolateDevice, respond.Target{DeviceID: "d1"})
			rep, err := e.Start(context.Background(), a)
			if err != nil || rep.Status != respond.StatusSent {
				t.Fatalf("start: %+v, %v", rep, err)
			}
			c.machine[0].CancellationRequestor, c.machine[0].CancellationComment = tc.cancel[0], tc.cancel[1]
			p := execute.PendingOf(a, rep)
			if rep, err = e.Poll(context.Background(), &p, p.Sent.Add(time.Minute)); rep.Status != respond.StatusSent {
				t.Fatalf("first poll: %+v, %v", rep, err)
			}
			rep, err = e.Poll(context.Background(), &p, p.Sent.Add(time.Minute+tc.after))
			if err != nil || rep.Status != respond.StatusFailed || !strings.Contains(rep.Error, tc.reason) || rep.ActionID != "act-1" || rep.TenantID != "t1" {
				t.Fatalf("outcome %+v, %v; want failed with %q", rep, err, tc.reason)
			}
		})
	}
	c, srv := newCloud(t)
	p := execute.Pending{TenantID: "t1", ActionID: "act-1", Type: respond.IsolateDevice, ExternalID: "gone", Sent: time.Now()}
	if rep, err := executor(srv).Poll(context.Background(), &p, time.Now()); err != nil || rep.Status != respond.StatusFailed || !strings.Contains(rep.Error, "no such machine action") {
		t.Fatalf("unknown machine action: %+v, %v", rep, err)
	}
	// A look that fails for a while (throttled) is not an outcome: the
	// action stays sent, and is looked at again.
	c.answer = func(int) (int, string) { return http.StatusTooManyRequests, `{"error":{"code":"TooManyRequests"}}` }
	p.ExternalID = "ma-1"
	if rep, err := executor(srv).Poll(context.Background(), &p, time.Now()); err != nil || rep.Status != respond.StatusSent {
		t.Fatalf("throttled look: %+v, %v; want still sent", rep, err)
	}
}

// A restart never acts twice. An executor that stopped after the action
// was sent (its Pending recorded) polls the same machine action; one that
// stopped after the POST but before it recorded anything finds the
// machine action by its Comment and follows it, without a second POST;
// and a sent action whose record was lost is found the same way (Resume).
func TestMicrosoftRestartPollsWithoutPostingAgain(t *testing.T) {
	c, srv := newCloud(t)
	c.progress = []string{MachinePending, MachineInProgress, MachineSucceeded}
	a := approved(respond.IsolateDevice, respond.Target{DeviceID: "d1"})
	rep, err := executor(srv).Start(context.Background(), a)
	if err != nil || rep.Status != respond.StatusSent {
		t.Fatalf("start: %+v, %v", rep, err)
	}
	p := execute.PendingOf(a, rep)
	if rep, _ := executor(srv).Poll(context.Background(), &p, time.Now()); rep.Status != respond.StatusSent || p.Status != MachinePending {
		t.Fatalf("first poll: %+v (%s)", rep, p.Status)
	}

	// The process stops; the record survives (JSON, as the pipeline keeps
	// it); a new process with a new executor (no token yet) goes on.
	b, _ := json.Marshal(&p)
	var back execute.Pending
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	e2 := executor(srv)
	rep, err = e2.Poll(context.Background(), &back, time.Now())
	if err != nil || rep.Status != respond.StatusSent || back.Status != MachineInProgress {
		t.Fatalf("poll after the restart: %+v, %v (%s)", rep, err, back.Status)
	}

	// Stopped before the sent outcome was recorded: the approved action is
	// read again and started again, which finds the machine action.
	rep, err = e2.Start(context.Background(), a)
	if err != nil || rep.Status != respond.StatusSent || rep.ExternalID != "ma-1" {
		t.Fatalf("start again: %+v, %v; want the first machine action, still sent", rep, err)
	}
	if rep, err = e2.Poll(context.Background(), &back, time.Now()); rep.Status != respond.StatusSucceeded {
		t.Fatalf("last poll: %+v, %v", rep, err)
	}
	sent := *a
	sent.Status = respond.StatusSent
	rep, ok, err := executor(srv).Resume(context.Background(), &sent)
	if err != nil || !ok || rep.ExternalID != "ma-1" || rep.Status != respond.StatusSucceeded {
		t.Fatalf("resume: %+v, %v, %v", rep, ok, err)
	}
	if n := c.count("POST "); n != 1 {
		t.Fatalf("%d POSTs, want 1: %v", n, c.calls)
	}
	// A sent action of which Defender lists no machine action is another
	// executor's: not followed, nothing posted.
	other := sent
	other.ID = "act-2"
	if rep, ok, err := executor(srv).Resume(context.Background(), &other); ok || err != nil || rep.Status != "" {
		t.Fatalf("resume of an action without a machine action: %+v, %v, %v", rep, ok, err)
	}
	// A retried POST whose first answer never came: the second attempt
	// looks first and follows what the first one started.
	c2, srv2 := newCloud(t)
	c2.answer = func(n int) (int, string) {
		if n == 2 { // the POST: Defender starts it, the answer is lost
			c2.defender(httptest.NewRequest(http.MethodPost, "/api/machines/d1/isolate", nil), c2.bodies[1])
			return http.StatusGatewayTimeout, `upstream timed out`
		}
		return 0, ""
	}
	out, err := executor(srv2).Execute(context.Background(), a)
	if err != nil || out.Status != respond.StatusSucceeded || c2.count("POST ") != 1 || len(c2.machine) != 1 {
		t.Fatalf("outcome %+v, %v after %v; want one machine action", out, err, c2.calls)
	}
}

// Each stitch tenant acts through its own Entra ID application (the
// secret from an environment variable or a file), tokens cached per
// application and API; a tenant not listed falls back to the default set;
// a tenant with neither fails its actions with the reason, without a call.
func TestMicrosoftTenantsUseTheirOwnCredentials(t *testing.T) {
	c, srv := newCloud(t)
	c.apps["dir-2"] = [2]string{"app-2", "other-secret"}
	c.apps["dir-3"] = [2]string{"app-3", "third"}
	t.Setenv("STITCH_TEST_T1_SECRET", "s3cret")
	file := filepath.Join(t.TempDir(), "t2.secret")
	if err := os.WriteFile(file, []byte("other-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	e := executor(srv)
	e.Credentials = Credentials{}
	e.Tenants = map[string]Credentials{
		"t1": {TenantID: "dir-1", ClientID: "app-1", SecretEnv: "STITCH_TEST_T1_SECRET"},
		"t2": {TenantID: "dir-2", ClientID: "app-2", SecretFile: file},
	}
	if errs := e.Check(); len(errs) != 0 {
		t.Fatalf("check: %v", errs)
	}
	act := func(tenant, typ string, target respond.Target) respond.Outcome {
		t.Helper()
		a := approved(typ, target)
		a.TenantID = tenant
		out, err := e.Execute(context.Background(), a)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	for _, tenant := range []string{"t1", "t2", "t1", "t2"} {
		if out := act(tenant, respond.DisableUser, respond.Target{AccountObjectID: "u-" + tenant}); out.Status != respond.StatusSucceeded || out.TenantID != tenant {
			t.Fatalf("%s: %+v", tenant, out)
		}
	}
	if out := act("t2", respond.IsolateDevice, respond.Target{DeviceID: "d2"}); out.Status != respond.StatusSucceeded {
		t.Fatalf("t2 isolate: %+v", out)
	}
	want := "dir-1,dir-2,dir-1,dir-2,dir-2,dir-2,dir-2"
	if strings.Join(c.dirs, ",") != want {
		t.Fatalf("calls %v made with tokens of %v, want %s", c.calls, c.dirs, want)
	}
	if c.tokens != 3 { // t1 Graph, t2 Graph, t2 Defender
		t.Errorf("%d token grants, want 3 (one per application and API)", c.tokens)
	}

	calls := len(c.calls)
	out := act("t3", respond.DisableUser, respond.Target{AccountObjectID: "u3"})
	if out.Status != respond.StatusFailed || !strings.Contains(out.Error, `no Microsoft credentials for stitch tenant "t3"`) || len(c.calls) != calls {
		t.Fatalf("t3 without credentials: %+v after %d calls", out, len(c.calls)-calls)
	}
	// The default set acts for tenants not listed.
	e.Credentials = Credentials{TenantID: "dir-3", ClientID: "app-3", ClientSecret: "third"}
	if out := act("t3", respond.DisableUser, respond.Target{AccountObjectID: "u3"}); out.Status != respond.StatusSucceeded || c.dirs[len(c.dirs)-1] != "dir-3" {
		t.Fatalf("t3 by the default set: %+v (%v)", out, c.dirs)
	}
	// A secret that went missing fails that tenant's actions, saying where
	// it was to be found.
	t.Setenv("STITCH_TEST_T1_SECRET", "")
	if errs := e.Check(); len(errs) != 1 || !strings.Contains(errs[0].Error(), "STITCH_TEST_T1_SECRET") {
		t.Fatalf("check: %v", errs)
	}
	e.tokens = nil
	calls = len(c.calls)
	if out := act("t1", respond.DisableUser, respond.Target{AccountObjectID: "u1"}); out.Status != respond.StatusFailed ||
		!strings.Contains(out.Error, `stitch tenant "t1"`) || !strings.Contains(out.Error, "STITCH_TEST_T1_SECRET") || len(c.calls) != calls {
		t.Fatalf("t1 without its secret: %+v", out)
	}
}

func TestMicrosoftEnvCredentials(t *testing.T) {
	env := map[string]string{}
	get := func(k string) string { return env[k] }
	if _, set, err := EnvCredentials(get); set || err != nil {
		t.Fatalf("none set: %v %v", set, err)
	}
	env[EnvTenantID] = "dir-1"
	if _, set, err := EnvCredentials(get); !set || err == nil || !strings.Contains(err.Error(), EnvClientID+", "+EnvClientSecret) {
		t.Fatalf("half set: %v %v", set, err)
	}
	env[EnvClientID], env[EnvClientSecret] = "app-1", "s"
	if c, set, err := EnvCredentials(get); !set || err != nil || c.ClientSecret != "s" {
		t.Fatalf("all set: %+v %v %v", c, set, err)
	}
}
