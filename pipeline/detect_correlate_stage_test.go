package pipeline

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/stitch-xdr/stitch/connectors/kafka"
	"github.com/stitch-xdr/stitch/operators/correlate"
)

// The example of the Sigma correlation specification: many failed logons
// of a user (a correlation of its own), then a success of that user. The
// rules the outer correlation refers to are alerts of their own too
// (generate: the successes, and the intermediate correlation); the
// failures are not.
const bruteForceRules = `title: Brute force then success
id: 9a1c7f10-0000-4000-8000-00000000c0r1
level: high
tags: [attack.credential-access, attack.t1110]
correlation:
  type: temporal_ordered
  generate: true
  rules: [many_failed, successful_login]
  group-by: [TargetUserName]
  timespan: 10m
---
title: Many failed logons
id: 9a1c7f10-0000-4000-8000-00000000c0r2
name: many_failed
level: medium
correlation:
  type: event_count
  rules: [failed_login]
  group-by: [TargetUserName]
  timespan: 10m
  condition: {gte: 3}
---
title: Failed logon
id: 9a1c7f10-0000-4000-8000-0000000000b1
name: failed_login
level: low
logsource: {product: windows, service: security}
detection:
  sel:
    EventID: 4625
  condition: sel
---
title: Successful logon
id: 9a1c7f10-0000-4000-8000-0000000000b2
name: successful_login
level: informational
logsource: {product: windows, service: security}
detection:
  sel:
    EventID: 4624
  condition: sel
`

// logonEvent is a Windows Security logon in the OTRF flat form.
func logonEvent(min int, id int, host, user string) string {
	ts := time.Date(2026, 1, 2, 3, 0, 0, 0, time.UTC).Add(time.Duration(min) * time.Minute).Format("2006-01-02 15:04:05")
	b, _ := json.Marshal(map[string]any{"EventID": id, "Channel": "Security", "Hostname": host, "TimeCreated": ts,
		"TargetUserName": user, "TargetDomainName": "CORP", "LogonType": "3", "IpAddress": "10.0.0." + host[len(host)-1:]})
	return string(b)
}

func writeRules(t *testing.T, dir string) string {
	t.Helper()
	p := filepath.Join(dir, "rules")
	if err := os.MkdirAll(p, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(p, "mr_brute_force.yml"), []byte(bruteForceRules), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestCorrelationRuleAlertsJoinIncidents: replayed Windows logons go
// through the detection tap to the detect-correlate stage: bob's three
// failures then success fire both correlations (the chain), alice's two
// failures fire none. Both correlation alerts join the incident of bob's
// successful logon on dc1 (an alert of its own: generate); the failures
// raise no alert.
func TestCorrelationRuleAlertsJoinIncidents(t *testing.T) {
	dir := t.TempDir()
	cfg := Default()
	cfg.State.Dir = filepath.Join(dir, "state")
	cfg.Hunting.Enabled = false
	cfg.Detect.Rules = []string{writeRules(t, dir)}
	lines := []string{
		logonEvent(0, 4625, "dc1", "bob"), logonEvent(1, 4625, "dc1", "bob"), logonEvent(2, 4625, "dc1", "bob"),
		logonEvent(3, 4624, "dc1", "bob"),
		logonEvent(0, 4625, "dc2", "alice"), logonEvent(1, 4625, "dc2", "alice"), logonEvent(3, 4624, "dc2", "alice"),
	}
	in := filepath.Join(dir, "in.jsonl")
	if err := os.WriteFile(in, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, out, p := replay(t, cfg, in)
	if _, st, ok := p.Topology().stage("detect-correlate"); !ok || len(st.Stores) != 1 {
		t.Fatalf("no detect-correlate stage with its store in %+v", p.Topology().Stages)
	}
	if !p.Topology().Internal(DetectMatchesTopic) {
		t.Errorf("%s is not an internal topic (normalize's detection tap to detect-correlate)", DetectMatchesTopic)
	}
	fired := p.Totals().Stages["detect-correlate"].Counters[CountCorrelations]
	if fired["Many failed logons"] != 1 || fired["Brute force then success"] != 1 || len(fired) != 2 {
		t.Errorf("correlations fired %v: want each of bob's once", fired)
	}
	var found []correlate.Alert
	for _, inc := range liveIncidents(t, out) {
		for _, a := range inc.Alerts {
			if a.Title == "Failed logon" {
				t.Errorf("alert %q raised: a rule a correlation refers to is no alert without generate", a.Title)
			}
			if !strings.HasPrefix(a.ID, "sigma-corr-") {
				continue
			}
			found = append(found, a)
			if a.DetectionSource != "customDetection" || len(a.Evidence) == 0 {
				t.Errorf("correlation alert %+v: want customDetection, with evidence", a)
			}
			if a.Title == "Brute force then success" && (a.Severity != "high" || a.Category != "CredentialAccess") {
				t.Errorf("correlation alert %+v: want the rule's level and tactic", a)
			}
			var titles []string
			for _, o := range inc.Alerts {
				titles = append(titles, o.Title)
			}
			slices.Sort(titles)
			if !slices.Equal(titles, []string{"Brute force then success", "Many failed logons", "Successful logon"}) {
				t.Errorf("correlation alert's incident has %v: want both correlations with bob's successful logon", titles)
			}
		}
	}
	if len(found) != 2 {
		t.Errorf("%d correlation alerts in incidents, want 2: %+v", len(found), found)
	}
}

// TestCorrelationWindowSurvivesRestart: two of bob's failures are consumed
// by one run, the third and his success by a run on a new state directory:
// the window is restored from the stage's changelog, so the chain fires,
// and its alert is produced once.
func TestCorrelationWindowSurvivesRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the pipeline twice")
	}
	ctx, addrs, cfg := countingSetup(t, 3)
	dir := t.TempDir()
	cfg.Correlate.Enabled = true
	cfg.Respond.Enabled = false
	cfg.Detect.Rules = []string{writeRules(t, dir)}
	run := func(stateDir string, events ...string) Snapshot {
		t.Helper()
		c := cfg
		c.State.Dir = stateDir
		p, err := New(c, WithBrokers(addrs), WithInstance("corr-test"))
		if err != nil {
			t.Fatal(err)
		}
		if err := p.EnsureTopics(ctx); err != nil {
			t.Fatal(err)
		}
		cl, err := kgo.NewClient(kgo.SeedBrokers(addrs...))
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		for _, e := range events {
			if err := cl.ProduceSync(ctx, &kgo.Record{Topic: c.Topics.Inputs[0], Value: []byte(e)}).FirstErr(); err != nil {
				t.Fatal(err)
			}
		}
		return runUntilIdle(t, ctx, p)
	}
	first := run(filepath.Join(dir, "a"), logonEvent(0, 4625, "dc1", "bob"), logonEvent(1, 4625, "dc1", "bob"))
	st := first.Stages["detect-correlate"]
	if n := st.Sum(CountCorrelations); n != 0 || st.RecordsOut[DetectCorrelateLog] == 0 {
		t.Fatalf("first run: %d correlations, %d changelog records: want none fired and the window logged", n, st.RecordsOut[DetectCorrelateLog])
	}
	second := run(filepath.Join(dir, "b"), logonEvent(2, 4625, "dc1", "bob"), logonEvent(3, 4624, "dc1", "bob"))
	if got := second.Stages["detect-correlate"].Counters[CountCorrelations]; got["Many failed logons"] != 1 || got["Brute force then success"] != 1 {
		t.Fatalf("second run fired %v: want the restored window to fire the chain", got)
	}
	var alerts []string
	if _, err := kafka.Drain(ctx, kafka.ClientConfig{Brokers: addrs}, cfg.Topics.Facts, 300*time.Millisecond, func(r *kgo.Record) error {
		f, err := correlate.UnmarshalFacts(r.Value)
		if err != nil {
			return err
		}
		for _, a := range f.Alerts {
			if strings.HasPrefix(a.ID, "sigma-corr-") {
				alerts = append(alerts, a.Title)
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	slices.Sort(alerts)
	if !slices.Equal(alerts, []string{"Brute force then success", "Many failed logons"}) {
		t.Fatalf("correlation alerts on the facts topic: %v, want each of the chain's once", alerts)
	}
}
