package pipeline_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/stitch-xdr/stitch/connectors/kafka"
	"github.com/stitch-xdr/stitch/internal/view"
	"github.com/stitch-xdr/stitch/operators/correlate"
	"github.com/stitch-xdr/stitch/pipeline"
	"github.com/stitch-xdr/stitch/pipeline/pipelinetest"
)

// An analyst's change recorded on incidents.updates (as the API's PATCH
// records it) comes out of the correlator as a new version of the incident
// on the incidents topic, which every consumer reads (a SIEM, stitch
// incidents); a later alert joining the incident keeps the classification.
func TestAnalystChangeIsAnIncidentVersion(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the pipeline")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	run := pipelinetest.Start(t, ctx, "updates-test", func(c *pipeline.Config) { c.Respond.Enabled = false })
	alert := func(id, at string) []*kgo.Record {
		info := `{"time":"` + at + `","tenantId":"t1","category":"AdvancedHunting-AlertInfo","properties":{"Timestamp":"` + at + `","AlertId":"` + id +
			`","Title":"Credential dumping","Category":"CredentialAccess","Severity":"High","ServiceSource":"Microsoft Defender for Endpoint","DetectionSource":"EDR"}}`
		ev := `{"time":"` + at + `","tenantId":"t1","category":"AdvancedHunting-AlertEvidence","properties":{"Timestamp":"` + at + `","AlertId":"` + id +
			`","EntityType":"Machine","EvidenceRole":"Impacted","DeviceName":"ALPHA"}}`
		topic := run.Config.Topics.Inputs[0]
		return []*kgo.Record{{Topic: topic, Value: []byte(info)}, {Topic: topic, Value: []byte(ev)}}
	}
	// until reads incidents until ok accepts the latest version of one.
	until := func(what string, ok func(correlate.Incident) bool) correlate.Incident {
		t.Helper()
		for {
			var found *correlate.Incident
			if _, err := kafka.Drain(ctx, kafka.ClientConfig{Brokers: run.Brokers}, run.Config.Topics.Incidents, 200*time.Millisecond, func(r *kgo.Record) error {
				var inc correlate.Incident
				if err := json.Unmarshal(r.Value, &inc); err != nil {
					return err
				}
				if ok(inc) {
					found = &inc
				}
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			if found != nil {
				return *found
			}
			if ctx.Err() != nil {
				t.Fatalf("never: %s", what)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	run.Produce(t, ctx, alert("up-1", "2024-05-04T08:00:00Z")...)
	inc := until("the alert's incident", func(i correlate.Incident) bool { return len(i.Alerts) == 1 })

	alice := "alice"
	u := view.Update{AnalystUpdate: correlate.AnalystUpdate{IncidentID: inc.ID, Revision: 1, Status: correlate.StatusInProgress,
		Classification: "truePositive", Determination: "malware", AssignedTo: &alice, Tags: []string{"vip"},
		By: "alice", Time: time.Now().UTC()}, TenantID: "t1", Change: "classified",
		Comments: []view.Comment{{By: "alice", Time: time.Now().UTC(), Text: "isolating the host"}}}
	v, _ := json.Marshal(&u)
	run.Produce(t, ctx, &kgo.Record{Topic: pipeline.UpdatesTopic(run.Config), Key: []byte(inc.ID), Value: v},
		&kgo.Record{Topic: pipeline.UpdatesTopic(run.Config), Key: []byte("x"), Value: []byte(`{"incidentId":"x"}`)})
	until("the analyst's version", func(i correlate.Incident) bool {
		return i.ID == inc.ID && i.Version > inc.Version && i.Classification == "truePositive" &&
			i.Status == correlate.StatusInProgress && i.AssignedTo != nil && *i.AssignedTo == "alice" &&
			len(i.Comments) == 1 && i.Comments[0].Text == "isolating the host"
	})

	run.Produce(t, ctx, alert("up-2", "2024-05-04T08:30:00Z")...)
	later := until("the second alert joined", func(i correlate.Incident) bool { return i.ID == inc.ID && len(i.Alerts) == 2 })
	if later.Classification != "truePositive" || later.Status != correlate.StatusInProgress || len(later.Tags) != 1 {
		t.Errorf("a later alert undid the analyst's change: %s %s %v", later.Status, later.Classification, later.Tags)
	}
	// The update without a tenant is a dead letter with its reason.
	var reasons []string
	if _, err := kafka.Drain(ctx, kafka.ClientConfig{Brokers: run.Brokers}, run.Config.Topics.DeadLetter, 200*time.Millisecond, func(r *kgo.Record) error {
		var d struct{ Reason string }
		json.Unmarshal(r.Value, &d)
		reasons = append(reasons, d.Reason)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(reasons) != 1 || reasons[0] != "bad_incident_update" {
		t.Errorf("dead letters %v, want one bad_incident_update", reasons)
	}
}
