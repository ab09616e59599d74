package webhook

import (
	"context"
	"encoding/json"
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

// receiver is a SOAR-like endpoint: it checks the signature, acts once per
// idempotency key, and fails the first `fail` requests with `code`.
type receiver struct {
	mu       sync.Mutex
	secret   []byte
	fail     int
	code     int
	requests int
	acted    map[string]int
	bad      []string
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.requests++
	if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" || !Verify(rc.secret, r, body) {
		rc.bad = append(rc.bad, r.Method+" "+r.Header.Get(SignatureHeader))
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return
	}
	var a respond.Action
	if err := json.Unmarshal(body, &a); err != nil || a.ID == "" {
		http.Error(w, "not an action", http.StatusBadRequest)
		return
	}
	if rc.fail > 0 {
		rc.fail--
		http.Error(w, "busy", rc.code)
		return
	}
	rc.acted[r.Header.Get(IdempotencyHeader)]++
	w.WriteHeader(http.StatusAccepted)
}

func action() *respond.Action {
	return &respond.Action{ID: "act-1", TenantID: "t1", Type: respond.IsolateDevice, Target: respond.Target{DeviceID: "dev1"},
		Status: respond.StatusApproved, IdempotencyKey: "act-1", Version: 2}
}

func executor(url string, secret []byte) (*Executor, *[]time.Duration) {
	var waits []time.Duration
	return &Executor{URL: url, Secret: secret, Retry: execute.Retry{Attempts: 4, Backoff: 100 * time.Millisecond,
		Sleep: func(_ context.Context, d time.Duration) error { waits = append(waits, d); return nil }}}, &waits
}

// Retries with doubling backoff on 5xx and 429, every attempt signed and
// carrying the same idempotency key; the receiver acts once even when the
// action is executed again (a redelivery after a crash).
func TestRetriesThenSucceedsOnce(t *testing.T) {
	rc := &receiver{secret: []byte("s3cret"), fail: 2, code: http.StatusServiceUnavailable, acted: map[string]int{}}
	srv := httptest.NewServer(rc)
	defer srv.Close()
	e, waits := executor(srv.URL, rc.secret)
	out, err := e.Execute(context.Background(), action())
	if err != nil {
		t.Fatal(err)
	}
	if out.Status != respond.StatusSucceeded || out.ActionID != "act-1" || out.TenantID != "t1" || out.Executor != "webhook" {
		t.Fatalf("outcome %+v", out)
	}
	if rc.requests != 3 || len(*waits) != 2 || (*waits)[0] != 100*time.Millisecond || (*waits)[1] != 200*time.Millisecond {
		t.Fatalf("%d requests, waits %v: want 3 and 100ms, 200ms", rc.requests, *waits)
	}
	if _, err := e.Execute(context.Background(), action()); err != nil {
		t.Fatal(err)
	}
	if len(rc.bad) > 0 || rc.acted["act-1"] != 2 {
		t.Fatalf("bad requests %v, acted %v", rc.bad, rc.acted)
	}
}

// A 4xx answer fails at once with the reason; exhausted retries fail with
// the last; a wrong secret is refused by the receiver and reported.
func TestFailures(t *testing.T) {
	for name, c := range map[string]struct {
		fail, code int
		secret     string
		requests   int
		want       string
	}{
		"client error": {fail: 1, code: http.StatusForbidden, secret: "s", requests: 1, want: "HTTP 403: busy"},
		"exhausted":    {fail: 9, code: http.StatusBadGateway, secret: "s", requests: 4, want: "4 attempts failed; the last: HTTP 502: busy"},
		"bad secret":   {secret: "wrong", requests: 1, want: "HTTP 401: bad signature"},
	} {
		t.Run(name, func(t *testing.T) {
			rc := &receiver{secret: []byte("s"), fail: c.fail, code: c.code, acted: map[string]int{}}
			srv := httptest.NewServer(rc)
			defer srv.Close()
			e, _ := executor(srv.URL, []byte(c.secret))
			out, err := e.Execute(context.Background(), action())
			if err != nil {
				t.Fatal(err)
			}
			if out.Status != respond.StatusFailed || out.Error != c.want || rc.requests != c.requests || len(rc.acted) != 0 {
				t.Fatalf("outcome %+v after %d requests: want failed %q after %d", out, rc.requests, c.want, c.requests)
			}
		})
	}
}

// Only approved actions are executed; a stop reports nothing (the action is
// tried again later under the same key).
func TestRefusesAndStops(t *testing.T) {
	a := action()
	a.Status = respond.StatusPending
	e, _ := executor("http://127.0.0.1:1", nil)
	if _, err := e.Execute(context.Background(), a); err == nil || !strings.Contains(err.Error(), "not approved") {
		t.Fatalf("pending action executed: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := e.Execute(ctx, action()); err == nil {
		t.Fatal("a stopped executor reported an outcome")
	}
}
