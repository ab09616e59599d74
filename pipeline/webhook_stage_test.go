package pipeline

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/stitch-xdr/stitch/connectors/kafka"
	"github.com/stitch-xdr/stitch/connectors/webhook"
	"github.com/stitch-xdr/stitch/operators/correlate"
	"github.com/stitch-xdr/stitch/operators/respond"
)

// With respond.webhook_url set, the execute-webhook stage posts each
// approved action (signed, with its idempotency key) and its outcome comes
// back through actions.results: the action on the actions topic ends
// succeeded. A pending action is never posted.
func TestWebhookExecutorCarriesApprovedActionsOut(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the pipeline")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
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
	b, err := kafka.StartBroker(kafka.DefaultPartitions(2))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	cfg := Default()
	cfg.Hunting.Enabled = false
	cfg.Topics.Partitions = 2
	cfg.Kafka.CommitInterval = Duration(100 * time.Millisecond)
	cfg.State.Dir = t.TempDir()
	cfg.Respond.WebhookURL, cfg.Respond.WebhookSecret = srv.URL, "s3cret"
	p, err := New(cfg, WithBrokers(b.Addrs()), WithInstance("webhook-test"))
	if err != nil {
		t.Fatal(err)
	}
	if err := p.EnsureTopics(ctx); err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- p.Run(runCtx) }()
	defer func() {
		stop()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()

	// An endpoint alert naming a file and its device: BlockIndicator and
	// StopAndQuarantineFile are approved at once (files and indicators are
	// fully automated), IsolateDevice waits for an analyst.
	at := time.Date(2024, 1, 2, 10, 4, 0, 0, time.UTC)
	inc := correlate.Incident{ID: "inc-1", TenantID: "t1", Status: correlate.StatusActive, Severity: "high", Version: 1,
		Alerts: []correlate.Alert{{ID: "da1", Severity: "High", ServiceSource: "Microsoft Defender for Endpoint", CreatedDateTime: at,
			Evidence: []correlate.Evidence{
				{ODataType: correlate.GraphEvidenceType("File"), MdeDeviceID: "dev1", FileDetails: &correlate.FileDetails{SHA256: "aaaa"}},
				{ODataType: correlate.GraphEvidenceType("Machine"), MdeDeviceID: "dev1", DeviceDNSName: "ws1"}}}}}
	v, _ := json.Marshal(&inc)
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.Addrs()...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: cfg.Topics.Incidents, Key: []byte(inc.ID), Value: v}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	for {
		latest := map[string]respond.Action{}
		if _, err := kafka.Drain(ctx, kafka.ClientConfig{Brokers: b.Addrs()}, cfg.Topics.Actions, 200*time.Millisecond, func(r *kgo.Record) error {
			var a respond.Action
			if err := json.Unmarshal(r.Value, &a); err != nil {
				return err
			}
			if a.Version >= latest[a.ID].Version {
				latest[a.ID] = a
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		status := map[string]string{}
		for _, a := range latest {
			status[a.Type] = a.Status
		}
		if status[respond.BlockIndicator] == respond.StatusSucceeded && status[respond.StopAndQuarantineFile] == respond.StatusSucceeded {
			if status[respond.IsolateDevice] != respond.StatusPending {
				t.Fatalf("IsolateDevice %s, want pending", status[respond.IsolateDevice])
			}
			mu.Lock()
			defer mu.Unlock()
			for _, a := range latest {
				if n := posted[a.IdempotencyKey]; (a.Status == respond.StatusSucceeded) != (n >= 1) {
					t.Errorf("%s (%s) posted %d times", a.Type, a.Status, n)
				}
			}
			return
		}
		if ctx.Err() != nil {
			t.Fatalf("actions never carried out: %v (posted %v)", status, posted)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
