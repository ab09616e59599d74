package pipeline_test

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

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/stitch-xdr/stitch/connectors/kafka"
	"github.com/stitch-xdr/stitch/connectors/microsoft"
	"github.com/stitch-xdr/stitch/connectors/webhook"
	"github.com/stitch-xdr/stitch/operators/correlate"
	"github.com/stitch-xdr/stitch/operators/respond"
	"github.com/stitch-xdr/stitch/pipeline"
	"github.com/stitch-xdr/stitch/pipeline/pipelinetest"
)

// With respond.webhook_url set, the execute-webhook stage posts each
// approved action (signed, with its idempotency key) and its outcome comes
// back through actions.results: the action on the actions topic ends
// succeeded. A pending action is never posted.
func TestWebhookExecutorCarriesApprovedActionsOut(t *testing.T) {
	var mu sync.Mutex
	posted := map[string]int{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if !webhook.Verify([]byte("s3cret"), r, body) {
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
		mu.Lock()
		posted[r.Header.Get(webhook.IdempotencyHeader)]++
		mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	latest := executorStory(t, func(c *pipeline.Config) { c.Respond.WebhookURL, c.Respond.WebhookSecret = srv.URL, "s3cret" },
		func(byType map[string]respond.Action) bool {
			return byType[respond.BlockIndicator].Status == respond.StatusSucceeded && byType[respond.StopAndQuarantineFile].Status == respond.StatusSucceeded
		})
	mu.Lock()
	defer mu.Unlock()
	for _, a := range latest {
		if n := posted[a.IdempotencyKey]; (a.Status == respond.StatusSucceeded) != (n >= 1) {
			t.Errorf("%s (%s) posted %d times", a.Type, a.Status, n)
		}
	}
}

// With respond.microsoft on, the execute-microsoft stage calls Defender for
// Endpoint (a local stand-in that checks the token and the path): the hash
// is blocked through the indicators API and the action ends succeeded
// (once: the call is not repeated);
// StopAndQuarantineFile, whose target has no SHA-1 (which Defender
// requires), ends failed with that reason instead of a call.
func TestMicrosoftExecutorCarriesApprovedActionsOut(t *testing.T) {
	var mu sync.Mutex
	var calls []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/dir-1/oauth2/v2.0/token" {
			io.WriteString(w, `{"token_type":"Bearer","expires_in":3599,"access_token":"tok"}`)
			return
		}
		if r.Header.Get("Authorization") != "Bearer tok" {
			http.Error(w, "no token", http.StatusUnauthorized)
			return
		}
		mu.Lock()
		calls = append(calls, r.Method+" "+r.URL.Path)
		mu.Unlock()
		io.WriteString(w, `{}`)
	}))
	defer srv.Close()
	t.Setenv(microsoft.EnvTenantID, "dir-1")
	t.Setenv(microsoft.EnvClientID, "app-1")
	t.Setenv(microsoft.EnvClientSecret, "s3cret")
	byType := map[string]respond.Action{}
	executorStory(t, func(c *pipeline.Config) {
		c.Respond.Microsoft = true
		c.Respond.MicrosoftDefenderURL, c.Respond.MicrosoftGraphURL, c.Respond.MicrosoftLoginURL = srv.URL, srv.URL, srv.URL
	}, func(latest map[string]respond.Action) bool {
		byType = latest
		return latest[respond.BlockIndicator].Status == respond.StatusSucceeded && latest[respond.StopAndQuarantineFile].Status == respond.StatusFailed
	})
	if r := byType[respond.StopAndQuarantineFile].Reason + byType[respond.StopAndQuarantineFile].Error; !strings.Contains(r, "SHA-1") {
		t.Errorf("StopAndQuarantineFile failed without saying why: %+v", byType[respond.StopAndQuarantineFile])
	}
	mu.Lock()
	defer mu.Unlock()
	blocked := 0
	for _, c := range calls {
		switch {
		case c == "POST /api/indicators":
			blocked++
		case strings.Contains(c, "/isolate"), strings.Contains(c, "/StopAndQuarantineFile"):
			t.Errorf("called %s: the action is pending or cannot be addressed", c)
		}
	}
	if blocked != 1 {
		t.Errorf("calls %v, want one POST /api/indicators", calls)
	}
}

// executorStory runs the pipeline configured by configure, produces an
// endpoint alert's incident naming a file and its device (BlockIndicator
// and StopAndQuarantineFile are approved at once, as files and indicators
// are fully automated; IsolateDevice waits for an analyst), and waits
// until done says the actions (latest version by type) are where the test
// wants them. IsolateDevice must still be pending: no executor acts on a
// pending action.
func executorStory(t *testing.T, configure func(*pipeline.Config), done func(map[string]respond.Action) bool) map[string]respond.Action {
	t.Helper()
	if testing.Short() {
		t.Skip("runs the pipeline")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	run := pipelinetest.Start(t, ctx, "executor-test", configure)
	at := time.Date(2024, 1, 2, 10, 4, 0, 0, time.UTC)
	inc := correlate.Incident{ID: "inc-1", TenantID: "t1", Status: correlate.StatusActive, Severity: "high", Version: 1,
		Alerts: []correlate.Alert{{ID: "da1", Severity: "High", ServiceSource: "Microsoft Defender for Endpoint", CreatedDateTime: at,
			Evidence: []correlate.Evidence{
				{ODataType: correlate.GraphEvidenceType("File"), MdeDeviceID: "dev1", FileDetails: &correlate.FileDetails{SHA256: "aaaa"}},
				{ODataType: correlate.GraphEvidenceType("Machine"), MdeDeviceID: "dev1", DeviceDNSName: "ws1"}}}}}
	v, _ := json.Marshal(&inc)
	run.Produce(t, ctx, &kgo.Record{Topic: run.Config.Topics.Incidents, Key: []byte(inc.ID), Value: v},
		// A record on the actions topic that is not an action: the
		// executor dead-letters it and carries on.
		&kgo.Record{Topic: run.Config.Topics.Actions, Key: []byte("junk"), Value: []byte(`{"id": "act-x", "status": `)})
	for {
		latest := map[string]respond.Action{}
		if _, err := kafka.Drain(ctx, kafka.ClientConfig{Brokers: run.Brokers}, run.Config.Topics.Actions, 200*time.Millisecond, func(r *kgo.Record) error {
			var a respond.Action
			if err := json.Unmarshal(r.Value, &a); err != nil {
				return nil // the junk record
			}
			if a.Version >= latest[a.Type].Version {
				latest[a.Type] = a
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if done(latest) {
			if s := latest[respond.IsolateDevice].Status; s != respond.StatusPending {
				t.Fatalf("IsolateDevice %s, want pending", s)
			}
			var dead []string
			if _, err := kafka.Drain(ctx, kafka.ClientConfig{Brokers: run.Brokers}, run.Config.Topics.DeadLetter, 200*time.Millisecond, func(r *kgo.Record) error {
				var d struct{ Reason, Value string }
				if err := json.Unmarshal(r.Value, &d); err != nil {
					return err
				}
				dead = append(dead, d.Reason+" "+d.Value)
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			if len(dead) != 1 || dead[0] != `bad_action_record {"id": "act-x", "status": ` {
				t.Errorf("dead letters %q, want the junk action record once with its bytes", dead)
			}
			return latest
		}
		if ctx.Err() != nil {
			t.Fatalf("actions never carried out: %+v", latest)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
