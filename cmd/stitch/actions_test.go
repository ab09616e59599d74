package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/stitch-xdr/stitch/operators/correlate"
	"github.com/stitch-xdr/stitch/operators/respond"
	"github.com/stitch-xdr/stitch/pipeline/pipelinetest"
)

// The action center against a running pipeline: an incident naming a
// compromised account becomes two pending actions (users are
// semi-automated by default); `stitch actions approve` records a decision
// on the approvals topic, and the pipeline publishes the action approved,
// with the decision in its approvals, as a new version.
func TestActionsApproveThroughThePipeline(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the pipeline")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	run := pipelinetest.Start(t, ctx, "actions-test", nil)
	at := time.Date(2024, 1, 2, 10, 4, 0, 0, time.UTC)
	inc := correlate.Incident{ID: "inc-1", TenantID: "t1", Status: correlate.StatusActive, Severity: "high", Version: 1,
		Alerts: []correlate.Alert{{ID: "ed1", Severity: "High", Category: "CredentialAccess", ServiceSource: "Microsoft Defender XDR", CreatedDateTime: at,
			Evidence: []correlate.Evidence{{ODataType: correlate.GraphEvidenceType("User"),
				UserAccount: &correlate.UserAccount{AzureAdUserID: "o-erin", UserPrincipalName: "erin@contoso.com"}}}}}}
	v, _ := json.Marshal(&inc)
	run.Produce(t, ctx, &kgo.Record{Topic: run.Config.Topics.Incidents, Key: []byte(inc.ID), Value: v})

	brokers := "--brokers=" + strings.Join(run.Brokers, ",")
	// until lists the actions as JSON until ok accepts them.
	until := func(what string, ok func([]respond.Action) bool) []respond.Action {
		t.Helper()
		for {
			var out bytes.Buffer
			if err := actionsCmd(ctx, []string{"list", brokers, "--format", "json"}, &out); err != nil {
				t.Fatal(err)
			}
			var acts []respond.Action
			for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
				var a respond.Action
				if line != "" && json.Unmarshal([]byte(line), &a) == nil {
					acts = append(acts, a)
				}
			}
			if ok(acts) {
				return acts
			}
			if ctx.Err() != nil {
				t.Fatalf("%s: never; last list %+v", what, acts)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	acts := until("two pending actions", func(a []respond.Action) bool { return len(a) == 2 && a[0].Status == respond.StatusPending })
	var disable respond.Action
	for _, a := range acts {
		if a.Type == respond.DisableUser {
			disable = a
		}
	}
	if disable.ID == "" || disable.Target.AccountObjectID != "o-erin" || disable.IncidentID != "inc-1" {
		t.Fatalf("actions %+v: want DisableUser of o-erin for inc-1", acts)
	}
	if err := actionsCmd(ctx, []string{"approve", disable.ID, brokers}, &bytes.Buffer{}); err == nil {
		t.Fatal("approve without --by accepted")
	}
	var out bytes.Buffer
	if err := actionsCmd(ctx, []string{"approve", disable.ID, brokers, "--by", "alice", "--comment", "confirmed"}, &out); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(out.String(), "approved "+disable.ID) {
		t.Errorf("approve printed %q", out.String())
	}
	until("DisableUser approved by alice", func(as []respond.Action) bool {
		for _, a := range as {
			if a.ID == disable.ID {
				return a.Status == respond.StatusApproved && a.Version == 2 && len(a.Approvals) == 1 &&
					a.Approvals[0].By == "alice" && a.Approvals[0].Comment == "confirmed"
			}
		}
		return false
	})

	// A custom indicator: listed, and blocked as an action of its own.
	hash := strings.Repeat("ab", 32)
	if err := indicatorsCmd(ctx, []string{"add", brokers, "--tenant", "t1", "--value", hash, "--by", "soc", "--expires", "30d"}, &bytes.Buffer{}); err != nil {
		t.Fatal(err)
	}
	if err := indicatorsCmd(ctx, []string{"add", brokers, "--tenant", "t1", "--value", "xyz", "--by", "soc"}, &bytes.Buffer{}); err == nil {
		t.Error("an indicator that is not a SHA256 was accepted")
	}
	var list bytes.Buffer
	if err := indicatorsCmd(ctx, []string{"list", brokers}, &list); err != nil || !strings.Contains(list.String(), hash) {
		t.Fatalf("indicators list (%v):\n%s", err, list.String())
	}
	var block respond.Action
	until("the indicator blocked", func(as []respond.Action) bool {
		for _, a := range as {
			if a.Type == respond.BlockIndicator && a.Target.Indicator == hash && a.Status == respond.StatusApproved {
				block = a
				return true
			}
		}
		return false
	})

	// Undo: a DisableUser cannot be undone (said before anything is
	// recorded); the block can, and its UnblockIndicator is approved by
	// whoever asked.
	if err := actionsCmd(ctx, []string{"undo", disable.ID, brokers, "--by", "bob"}, &bytes.Buffer{}); err == nil || !strings.Contains(err.Error(), "cannot be undone") {
		t.Errorf("undo of DisableUser: %v", err)
	}
	if err := actionsCmd(ctx, []string{"undo", block.ID, brokers, "--by", "bob", "--comment", "false positive"}, &bytes.Buffer{}); err != nil {
		t.Fatal(err)
	}
	until("the indicator unblocked", func(as []respond.Action) bool {
		undone, unblock := false, false
		for _, a := range as {
			switch {
			case a.ID == block.ID:
				undone = len(a.Approvals) == 1 && a.Approvals[0].Decision == respond.DecisionUndo && a.Approvals[0].By == "bob"
			case a.Type == respond.UnblockIndicator && a.Target.Indicator == hash:
				unblock = a.Status == respond.StatusApproved && a.IncidentID == block.IncidentID &&
					len(a.Approvals) == 1 && a.Approvals[0].By == "bob" && a.Approvals[0].Comment == "false positive"
			}
		}
		return undone && unblock
	})
}
