package pipeline

import (
	"context"
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
	return writeRuleFile(t, dir, "mr_brute_force.yml", bruteForceRules)
}

// writeRuleFile writes one rule file in dir/rules and returns that
// directory.
func writeRuleFile(t *testing.T, dir, name, body string) string {
	t.Helper()
	p := filepath.Join(dir, "rules")
	if err := os.MkdirAll(p, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(p, name), []byte(body), 0o644); err != nil {
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
		return runCorrelationRules(t, ctx, cfg, addrs, stateDir, events...)
	}
	first := run(filepath.Join(dir, "a"), logonEvent(0, 4625, "dc1", "bob"), logonEvent(1, 4625, "dc1", "bob"))
	st := first.Stages["detect-correlate"]
	if n := st.Sum(CountCorrelations); n != 0 || st.RecordsOut[DetectCorrelateChangelog] == 0 {
		t.Fatalf("first run: %d correlations, %d changelog records: want none fired and the window logged", n, st.RecordsOut[DetectCorrelateChangelog])
	}
	second := run(filepath.Join(dir, "b"), logonEvent(2, 4625, "dc1", "bob"), logonEvent(3, 4624, "dc1", "bob"))
	if got := second.Stages["detect-correlate"].Counters[CountCorrelations]; got["Many failed logons"] != 1 || got["Brute force then success"] != 1 {
		t.Fatalf("second run fired %v: want the restored window to fire the chain", got)
	}
	alerts := correlationAlerts(t, ctx, cfg, addrs)
	if !slices.Equal(alerts, []string{"Brute force then success", "Many failed logons"}) {
		t.Fatalf("correlation alerts on the facts topic: %v, want each of the chain's once", alerts)
	}
}

// runCorrelationRules produces events to the input topic and runs a
// pipeline on stateDir until it is idle; every run is the same instance.
func runCorrelationRules(t *testing.T, ctx context.Context, cfg Config, addrs []string, stateDir string, events ...string) Snapshot {
	t.Helper()
	cfg.State.Dir = stateDir
	p := newTestPipeline(t, ctx, cfg, addrs, "corr-test")
	for _, e := range events {
		p.produce(ctx, &kgo.Record{Topic: cfg.Topics.Inputs[0], Value: []byte(e)})
	}
	return p.runUntilIdle(ctx)
}

// correlationAlerts are the titles of the correlation alerts on the facts
// topic, sorted.
func correlationAlerts(t *testing.T, ctx context.Context, cfg Config, addrs []string) []string {
	t.Helper()
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
	return alerts
}

// shareRead is a Windows Security share access (5145) in the OTRF flat
// form, with the bytes read as the event's own field.
func shareRead(min int, host, user, bytes string) string {
	ts := time.Date(2026, 1, 2, 3, 0, 0, 0, time.UTC).Add(time.Duration(min) * time.Minute).Format("2006-01-02 15:04:05")
	b, _ := json.Marshal(map[string]any{"EventID": 5145, "Channel": "Security", "Hostname": host, "TimeCreated": ts,
		"SubjectUserName": user, "ShareName": `\\*\C$`, "ReadBytes": bytes})
	return string(b)
}

const shareReadRules = `title: Much read from admin shares
id: 9a1c7f10-0000-4000-8000-00000000c0r3
level: high
correlation:
  type: value_sum
  rules: [share_read]
  group-by: [Computer, SubjectUserName]
  timespan: 1h
  condition: {field: ReadBytes, gt: 1000000}
---
title: Admin share read
id: 9a1c7f10-0000-4000-8000-0000000000b3
name: share_read
logsource: {product: windows, service: security}
detection:
  sel:
    EventID: 5145
    ShareName|endswith: 'C$'
  condition: sel
`

// TestDetectCorrelateMetricRestart: a value_sum window half filled by one
// run (and a value that is not a number, counted) is restored from the
// stage's changelog by a run on a new state directory: the sum crosses
// there, once, and another user's bytes and bytes more than the timespan
// apart never add up.
func TestDetectCorrelateMetricRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the pipeline twice")
	}
	ctx, addrs, cfg := countingSetup(t, 3)
	dir := t.TempDir()
	cfg.Correlate.Enabled = true
	cfg.Respond.Enabled = false
	cfg.Detect.Rules = []string{writeRuleFile(t, dir, "mr_share_reads.yml", shareReadRules)}
	first := runCorrelationRules(t, ctx, cfg, addrs, filepath.Join(dir, "a"),
		shareRead(0, "fs1", "bob", "600000"), shareRead(1, "fs1", "bob", "n/a"),
		shareRead(2, "fs1", "eve", "900000"), shareRead(3, "fs2", "bob", "300000"))
	st := first.Stages["detect-correlate"]
	if n := st.Sum(CountCorrelations); n != 0 || st.RecordsOut[DetectCorrelateChangelog] == 0 {
		t.Fatalf("first run: %d correlations, %d changelog records: want none fired and the windows logged", n, st.RecordsOut[DetectCorrelateChangelog])
	}
	if got := st.Counters[CountNotNumbers]; got["Much read from admin shares"] != 1 {
		t.Errorf("first run counted %v values not numbers, want 1", got)
	}
	second := runCorrelationRules(t, ctx, cfg, addrs, filepath.Join(dir, "b"),
		shareRead(30, "fs1", "bob", "400001"), // 1,000,001 with the restored 600,000
		shareRead(40, "fs1", "eve", "50000"),
		shareRead(100, "fs2", "bob", "800000")) // fs2's 300,000 is 97 minutes old
	if got := second.Stages["detect-correlate"].Counters[CountCorrelations]; got["Much read from admin shares"] != 1 || len(got) != 1 {
		t.Fatalf("second run fired %v: want bob's sum on fs1 once", got)
	}
	if alerts := correlationAlerts(t, ctx, cfg, addrs); !slices.Equal(alerts, []string{"Much read from admin shares"}) {
		t.Fatalf("correlation alerts on the facts topic: %v, want one", alerts)
	}
}
