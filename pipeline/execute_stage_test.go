package pipeline_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
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

// defender stands in for the identity platform and Defender for Endpoint
// of two customers, each its own directory (dir-1, dir-2) with one
// application and its own machines: a machine action is created by a POST
// (201, Pending), listed by machine and type, and answers its status at
// each GET (an isolation: status; the others: Succeeded). A call about a
// machine of the other directory finds nothing.
type defender struct {
	t  *testing.T
	mu sync.Mutex
	// status is what GET /api/machineactions/{id} of an isolation answers.
	status  string
	posts   []string // "path directory" of every POST
	looks   int      // GETs of an isolation
	actions map[string][]map[string]any
}

var verbTypes = map[string]string{"isolate": "Isolate", "runAntiVirusScan": "RunAntiVirusScan", "collectInvestigationPackage": "CollectInvestigationPackage",
	"restrictCodeExecution": "RestrictCodeExecution", "StopAndQuarantineFile": "StopAndQuarantineFile", "unisolate": "Unisolate"}

func (d *defender) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	d.mu.Lock()
	defer d.mu.Unlock()
	secrets := map[string][2]string{"dir-1": {"app-1", "secret-one"}, "dir-2": {"app-2", "secret-two"}}
	if dir, ok := strings.CutSuffix(strings.TrimPrefix(r.URL.Path, "/"), "/oauth2/v2.0/token"); ok {
		r.ParseForm()
		if app, known := secrets[dir]; !known || r.PostForm.Get("client_id") != app[0] || r.PostForm.Get("client_secret") != app[1] {
			w.WriteHeader(http.StatusUnauthorized)
			io.WriteString(w, `{"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret provided."}`)
			return
		}
		fmt.Fprintf(w, `{"token_type":"Bearer","expires_in":3599,"access_token":"tok-%s"}`, dir)
		return
	}
	dir := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer tok-")
	if _, ok := secrets[dir]; !ok {
		http.Error(w, `{"error":{"code":"Unauthorized"}}`, http.StatusUnauthorized)
		return
	}
	var body map[string]any
	json.NewDecoder(r.Body).Decode(&body)
	verb := r.URL.Path[strings.LastIndex(r.URL.Path, "/")+1:]
	switch {
	case r.Method == http.MethodPost && strings.HasPrefix(r.URL.Path, "/api/machines/"):
		d.posts = append(d.posts, r.URL.Path+" "+dir)
		if verbTypes[verb] == "" || body["Comment"] == nil {
			d.t.Errorf("POST %s with body %v", r.URL.Path, body)
		}
		ma := map[string]any{"id": fmt.Sprintf("ma-%s-%d", dir, len(d.actions[dir])+1), "type": verbTypes[verb], "status": "Pending",
			"machineId": strings.Split(r.URL.Path, "/")[3], "requestorComment": body["Comment"], "creationDateTimeUtc": time.Now().UTC().Format(time.RFC3339Nano)}
		d.actions[dir] = append(d.actions[dir], ma)
		w.WriteHeader(http.StatusCreated)
		json.NewEncoder(w).Encode(ma)
	case r.Method == http.MethodPost:
		d.posts = append(d.posts, r.URL.Path+" "+dir)
		io.WriteString(w, `{}`)
	case r.Method == http.MethodGet && r.URL.Path == "/api/machineactions":
		var machine, typ string
		if _, err := fmt.Sscanf(strings.NewReplacer("'", " ").Replace(r.URL.Query().Get("$filter")), "machineId eq %s and type eq %s", &machine, &typ); err != nil {
			d.t.Errorf("machine actions listed by %q: %v", r.URL.Query().Get("$filter"), err)
		}
		list := []map[string]any{}
		for _, ma := range d.actions[dir] {
			if ma["machineId"] == machine && ma["type"] == typ {
				list = append(list, ma)
			}
		}
		json.NewEncoder(w).Encode(map[string]any{"value": list})
	case r.Method == http.MethodGet && strings.HasPrefix(r.URL.Path, "/api/machineactions/"):
		for _, ma := range d.actions[dir] {
			if ma["id"] == verb {
				ma = maps.Clone(ma)
				ma["status"] = "Succeeded"
				if ma["type"] == "Isolate" {
					d.looks++
					ma["status"] = d.status
				}
				json.NewEncoder(w).Encode(ma)
				return
			}
		}
		http.Error(w, `{"error":{"code":"ResourceNotFound"}}`, http.StatusNotFound)
	default:
		d.t.Errorf("unexpected %s %s", r.Method, r.URL.Path)
		http.Error(w, "{}", http.StatusNotFound)
	}
}

func (d *defender) counts() (posts []string, looks int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.posts), d.looks
}

// The Microsoft executor follows a machine action to its end, across a
// restart, acting once, for each tenant with its own credentials: tenant
// t1 (its secret in an environment variable) has IsolateDevice approved
// by an analyst; Defender takes it on (Pending) and the action is sent,
// with the machine action's id on actions.results. The pipeline stops
// while it is still Pending and starts again with an empty state
// directory (so the executor's store comes back from its changelog): it
// polls the same machine action, never posts again, and the action ends
// succeeded once Defender says Succeeded. Tenant t2's BlockIndicator
// goes out with t2's own token (its secret in a file).
func TestMicrosoftExecutorFollowsMachineActionsAcrossARestart(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the pipeline twice")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	d := &defender{t: t, status: microsoft.MachinePending, actions: map[string][]map[string]any{}}
	srv := httptest.NewServer(d)
	defer srv.Close()
	t.Setenv(microsoft.EnvTenantID, "")
	t.Setenv(microsoft.EnvClientID, "")
	t.Setenv(microsoft.EnvClientSecret, "")
	t.Setenv("STITCH_TEST_T1_SECRET", "secret-one")
	secretFile := filepath.Join(t.TempDir(), "t2-secret")
	if err := os.WriteFile(secretFile, []byte("secret-two\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	b, err := kafka.StartBroker(kafka.DefaultPartitions(2))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	cfg := pipeline.Default()
	cfg.Hunting.Enabled = false
	cfg.Topics.Partitions = 2
	cfg.Kafka.CommitInterval = pipeline.Duration(100 * time.Millisecond)
	r := &cfg.Respond
	r.Microsoft = true
	r.MicrosoftDefenderURL, r.MicrosoftGraphURL, r.MicrosoftLoginURL = srv.URL, srv.URL, srv.URL
	r.MicrosoftPollInterval, r.MicrosoftPollMax = pipeline.Duration(50*time.Millisecond), pipeline.Duration(200*time.Millisecond)
	r.MicrosoftTenants = []pipeline.MicrosoftTenant{
		{Tenant: "t1", AzureTenantID: "dir-1", ClientID: "app-1", ClientSecretEnv: "STITCH_TEST_T1_SECRET"},
		{Tenant: "t2", AzureTenantID: "dir-2", ClientID: "app-2", ClientSecretFile: secretFile},
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	start := func(instance string) (stop func()) {
		c := cfg
		c.State.Dir = t.TempDir() // nothing local: the stores restore from their changelogs
		p, err := pipeline.New(c, pipeline.WithBrokers(b.Addrs()), pipeline.WithInstance(instance))
		if err != nil {
			t.Fatal(err)
		}
		if err := p.EnsureTopics(ctx); err != nil {
			t.Fatal(err)
		}
		runCtx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- p.Run(runCtx) }()
		return func() {
			cancel()
			if err := <-done; err != nil {
				t.Error(err)
			}
		}
	}
	client := kafka.ClientConfig{Brokers: b.Addrs()}
	actions := func() map[string]respond.Action { // the latest version of each, by tenant/type
		latest := map[string]respond.Action{}
		if _, err := kafka.Drain(ctx, client, cfg.Topics.Actions, 200*time.Millisecond, func(r *kgo.Record) error {
			var a respond.Action
			if json.Unmarshal(r.Value, &a) == nil && a.Version >= latest[a.TenantID+"/"+a.Type].Version {
				latest[a.TenantID+"/"+a.Type] = a
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		return latest
	}
	waitFor := func(what string, ok func(map[string]respond.Action) bool) map[string]respond.Action {
		t.Helper()
		for {
			latest := actions()
			if ok(latest) {
				return latest
			}
			if ctx.Err() != nil {
				t.Fatalf("%s: never; actions %+v", what, latest)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}

	stop := start("executor-1")
	at := time.Date(2024, 1, 2, 10, 4, 0, 0, time.UTC)
	incident := func(tenant, id, device string) *kgo.Record {
		inc := correlate.Incident{ID: id, TenantID: tenant, Status: correlate.StatusActive, Severity: "high", Version: 1,
			Alerts: []correlate.Alert{{ID: "da-" + tenant, Severity: "High", ServiceSource: "Microsoft Defender for Endpoint", CreatedDateTime: at,
				Evidence: []correlate.Evidence{
					{ODataType: correlate.GraphEvidenceType("File"), MdeDeviceID: device, FileDetails: &correlate.FileDetails{SHA256: "aaaa" + tenant}},
					{ODataType: correlate.GraphEvidenceType("Machine"), MdeDeviceID: device, DeviceDNSName: "ws-" + tenant}}}}}
		v, _ := json.Marshal(&inc)
		return &kgo.Record{Topic: cfg.Topics.Incidents, Key: []byte(id), Value: v}
	}
	produce := func(recs ...*kgo.Record) {
		cl, err := client.NewClient()
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	produce(incident("t1", "inc-1", "dev1"), incident("t2", "inc-2", "dev2"))
	isolate := waitFor("IsolateDevice proposed", func(l map[string]respond.Action) bool {
		return l["t1/"+respond.IsolateDevice].Status == respond.StatusPending
	})["t1/"+respond.IsolateDevice]
	v, _ := json.Marshal(respond.Decision{TenantID: "t1", ActionID: isolate.ID, Decision: respond.StatusApproved, By: "alice", Comment: "contain it", Time: at.Add(time.Minute)})
	produce(&kgo.Record{Topic: cfg.Respond.Approvals, Key: []byte("t1"), Value: v})

	// Sent, and polled while Pending; then the pipeline stops.
	waitFor("IsolateDevice sent", func(l map[string]respond.Action) bool {
		return l["t1/"+respond.IsolateDevice].Status == respond.StatusSent
	})
	for _, looks := d.counts(); looks == 0; _, looks = d.counts() {
		if ctx.Err() != nil {
			t.Fatal("the machine action was never polled")
		}
		time.Sleep(20 * time.Millisecond)
	}
	stop()
	_, looksBefore := d.counts()

	d.mu.Lock()
	d.status = microsoft.MachineInProgress
	d.mu.Unlock()
	stop = start("executor-1") // the same process (its static group membership), its local state gone
	defer stop()
	for _, looks := d.counts(); looks <= looksBefore; _, looks = d.counts() {
		if ctx.Err() != nil {
			t.Fatal("the restarted executor never polled the machine action")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if s := actions()["t1/"+respond.IsolateDevice].Status; s != respond.StatusSent {
		t.Fatalf("IsolateDevice %s while Defender says InProgress, want sent", s)
	}
	d.mu.Lock()
	d.status = microsoft.MachineSucceeded
	d.mu.Unlock()
	latest := waitFor("IsolateDevice succeeded and t2 blocked", func(l map[string]respond.Action) bool {
		return l["t1/"+respond.IsolateDevice].Status == respond.StatusSucceeded && l["t2/"+respond.BlockIndicator].Status == respond.StatusSucceeded
	})
	if e := latest["t1/"+respond.IsolateDevice].Error; e != "" {
		t.Errorf("succeeded with error %q", e)
	}
	posts, _ := d.counts()
	byDir := map[string]int{}
	for _, p := range posts {
		byDir[p]++
	}
	// Each tenant's calls with its own token, each once (the scans of both
	// devices are approved at once, as the defaults automate them fully).
	want := "map[/api/indicators dir-1:1 /api/indicators dir-2:1 /api/machines/dev1/isolate dir-1:1 /api/machines/dev1/runAntiVirusScan dir-1:1 /api/machines/dev2/runAntiVirusScan dir-2:1]"
	if fmt.Sprint(byDir) != want {
		t.Errorf("posts %v, want %s", byDir, want)
	}
	// The sent outcome names the machine action.
	var sent []string
	if _, err := kafka.Drain(ctx, client, cfg.Topics.ActionResults, 200*time.Millisecond, func(r *kgo.Record) error {
		var rep struct {
			ActionID, Status, ExternalID string
		}
		if err := json.Unmarshal(r.Value, &rep); err != nil {
			return err
		}
		if rep.ActionID == isolate.ID {
			sent = append(sent, rep.Status+" "+rep.ExternalID)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if strings.Join(sent, ",") != "sent ma-dir-1-2,succeeded ma-dir-1-2" && strings.Join(sent, ",") != "sent ma-dir-1-1,succeeded ma-dir-1-1" {
		t.Errorf("outcomes of IsolateDevice %q, want sent then succeeded, naming its machine action", sent)
	}
}
