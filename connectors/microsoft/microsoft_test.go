package microsoft

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
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
// it was asked.
type cloud struct {
	t *testing.T

	mu      sync.Mutex
	tokens  int              // token grants issued
	calls   []string         // "METHOD path" of every API call
	bodies  []map[string]any // their JSON bodies (nil when none)
	answer  func(n int) (int, string)
	issued  map[string]string // token -> scope
	reqIDs  []string
	queries []string // the $filter of each call
}

func newCloud(t *testing.T) (*cloud, *httptest.Server) {
	c := &cloud{t: t, issued: map[string]string{}}
	srv := httptest.NewServer(c)
	t.Cleanup(srv.Close)
	return c, srv
}

func (c *cloud) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if strings.HasSuffix(r.URL.Path, "/oauth2/v2.0/token") {
		if r.URL.Path != "/dir-1/oauth2/v2.0/token" || r.Header.Get("Content-Type") != "application/x-www-form-urlencoded" {
			c.t.Errorf("token request %s with %s", r.URL.Path, r.Header.Get("Content-Type"))
		}
		r.ParseForm()
		if r.PostForm.Get("client_secret") != "s3cret" {
			w.WriteHeader(http.StatusUnauthorized)
			io.WriteString(w, `{"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret provided."}`)
			return
		}
		if r.PostForm.Get("grant_type") != "client_credentials" || r.PostForm.Get("client_id") != "app-1" {
			c.t.Errorf("token form %v", r.PostForm)
		}
		c.tokens++
		tok := fmt.Sprintf("tok-%d", c.tokens)
		c.issued[tok] = r.PostForm.Get("scope")
		fmt.Fprintf(w, `{"token_type":"Bearer","expires_in":3599,"access_token":%q}`, tok)
		return
	}
	want := graphScope
	if strings.HasPrefix(r.URL.Path, "/api/") {
		want = defenderScope
	}
	if got := c.issued[strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")]; got != want {
		c.t.Errorf("%s %s with a token for %q, want one for %q", r.Method, r.URL.Path, got, want)
	}
	c.calls = append(c.calls, r.Method+" "+r.URL.EscapedPath())
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
	c.bodies = append(c.bodies, body)
	status, msg := http.StatusOK, `{}`
	if c.answer != nil {
		status, msg = c.answer(len(c.calls))
	}
	w.WriteHeader(status)
	io.WriteString(w, msg)
}

func executor(srv *httptest.Server) *Executor {
	return &Executor{
		Credentials: Credentials{TenantID: "dir-1", ClientID: "app-1", ClientSecret: "s3cret"},
		DefenderURL: srv.URL, GraphURL: srv.URL, LoginURL: srv.URL,
		Retry: execute.Retry{Attempts: 3, Backoff: time.Millisecond},
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
			if len(c.calls) != 1 || c.calls[0] != tc.call {
				t.Fatalf("calls %v, want [%s]", c.calls, tc.call)
			}
			if c.reqIDs[0] != "idem-1" {
				t.Errorf("client-request-id %q, want the idempotency key", c.reqIDs[0])
			}
			for k, v := range tc.body {
				if got, _ := json.Marshal(c.bodies[0][k]); string(got) != mustJSON(v) {
					t.Errorf("body %s = %s, want %s", k, got, mustJSON(v))
				}
			}
			if strings.HasPrefix(tc.call, "POST /api/machines/") && c.bodies[0]["Comment"] == nil {
				t.Errorf("machine action without the required Comment: %v", c.bodies[0])
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
	dev := respond.Target{DeviceID: "d1"}
	for i := 0; i < 3; i++ {
		if out, _ := e.Execute(context.Background(), approved(respond.IsolateDevice, dev)); out.Status != respond.StatusSucceeded {
			t.Fatalf("action %d: %+v", i, out)
		}
	}
	if c.tokens != 2 || len(c.calls) != 4 {
		t.Fatalf("%d tokens for %d calls, want 2 for 4 (one renewed after the 401)", c.tokens, len(c.calls))
	}
}

// Calling again never acts twice: Defender's ActiveRequestAlreadyExists
// (the same machine action is under way) is success, not a failure to retry.
func TestAlreadyUnderWayIsSuccess(t *testing.T) {
	c, srv := newCloud(t)
	c.answer = func(int) (int, string) {
		return http.StatusBadRequest, `{"error":{"code":"ActiveRequestAlreadyExists","message":"Action is already in progress"}}`
	}
	out, _ := executor(srv).Execute(context.Background(), approved(respond.IsolateDevice, respond.Target{DeviceID: "d1"}))
	if out.Status != respond.StatusSucceeded || len(c.calls) != 1 {
		t.Fatalf("outcome %+v after %d calls", out, len(c.calls))
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
