package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const testRule = `title: Gpresult
id: e56d3073-0000-0000-0000-000000000001
level: medium
logsource: {product: windows, category: process_creation}
detection:
  sel:
    Image|endswith: '\gpresult.exe'
    CommandLine|contains: ['/z', '/v']
  condition: sel
`

const sysmonEvent = `{"Event": {"System": {"Provider": {"#attributes": {"Name": "Microsoft-Windows-Sysmon"}},
  "EventID": 1, "Channel": "Microsoft-Windows-Sysmon/Operational", "Computer": "dc1.corp.local",
  "TimeCreated": {"#attributes": {"SystemTime": "2025-10-27T00:09:41.570583Z"}}},
 "EventData": {"Image": "C:\\Windows\\System32\\gpresult.exe", "CommandLine": "gpresult  /z", "User": "CORP\\admin"}}}
{"Event": {"System": {"Provider": {"#attributes": {"Name": "Microsoft-Windows-Sysmon"}},
  "EventID": 1, "Channel": "Microsoft-Windows-Sysmon/Operational", "Computer": "dc1.corp.local",
  "TimeCreated": {"#attributes": {"SystemTime": "2025-10-27T00:09:42Z"}}},
 "EventData": {"Image": "C:\\Windows\\System32\\gpresult.exe", "CommandLine": "gpresult /r"}}}
`

func TestRulesCheckAndTest(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("good.yml", testRule+"name: gpresult\n---\ntitle: Gpresult twice\nid: c-1\ncorrelation:\n  type: event_count\n  rules: [gpresult]\n  group-by: [Computer]\n  timespan: 5m\n  condition: {gte: 1}\n")
	bad := write("bad.yml", strings.Replace(testRule, "endswith", "endswiht", 1))
	in := write("events.json", sysmonEvent)

	var out bytes.Buffer
	if err := rulesCheck([]string{good}, &out); err != nil {
		t.Errorf("check of a good rule: %v\n%s", err, out.String())
	}
	out.Reset()
	err := rulesCheck([]string{good, bad}, &out)
	if err == nil || !strings.Contains(out.String(), bad+":7: error: ") || !strings.Contains(out.String(), "1 rule and 1 correlation rule loaded, 1 invalid") {
		t.Errorf("check of a bad rule: %v\n%s", err, out.String())
	}

	out.Reset()
	var errw bytes.Buffer
	if err := rulesTest(context.Background(), []string{"--rules", good, "--rules", bad, "--in", in}, &out, &errw); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 4 {
		t.Fatalf("output:\n%s", out.String())
	}
	var m struct {
		RuleID, Title, Table string
		Fields               map[string]any
	}
	if err := json.Unmarshal([]byte(lines[0]), &m); err != nil {
		t.Fatal(err)
	}
	if m.Table != "DeviceProcessEvents" || m.Title != "Gpresult" || m.Fields["ProcessCommandLine"] != "gpresult  /z" || m.Fields["DeviceName"] != "dc1.corp.local" {
		t.Errorf("match %s", lines[0])
	}
	if !strings.Contains(lines[1], `"correlation":"event_count"`) || !strings.Contains(lines[1], `"group":{"Computer":"dc1.corp.local"}`) {
		t.Errorf("correlation line %s", lines[1])
	}
	if !strings.Contains(lines[2], `"count":1`) || !strings.Contains(lines[3], `"rule_id":"c-1"`) {
		t.Errorf("count lines %s", lines[2:])
	}
	if !strings.Contains(errw.String(), "2 records read") || !strings.Contains(errw.String(), "bad.yml:7") {
		t.Errorf("stderr:\n%s", errw.String())
	}
}

// TestRulesTestImport: with --import, rows of an advanced-hunting export
// (no category, no tenant) are rules test input too, beside Windows events;
// without it they are counted as not normalized, with the reason.
func TestRulesTestImport(t *testing.T) {
	dir := t.TempDir()
	rule := filepath.Join(dir, "r.yml")
	if err := os.WriteFile(rule, []byte(testRule), 0o644); err != nil {
		t.Fatal(err)
	}
	in := filepath.Join(dir, "export.json")
	row := `{"Timestamp":"2025-10-27T00:09:41Z","DeviceName":"dc1","ActionType":"ProcessCreated","FolderPath":"C:\\Windows\\System32\\gpresult.exe","FileName":"gpresult.exe","ProcessCommandLine":"gpresult /z","InitiatingProcessFileName":"cmd.exe"}`
	if err := os.WriteFile(in, []byte(row+"\n"+sysmonEvent), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		args    []string
		matches string
		stderr  string
	}{
		{nil, `"count":1`, "1 not normalized (missing_category 1)"},
		{[]string{"--import"}, `"count":2`, "3 records read, 0 not normalized"},
		{[]string{"--table", "DeviceProcessEvents"}, `"count":2`, "0 not normalized"},
	} {
		var out, errw bytes.Buffer
		if err := rulesTest(context.Background(), append([]string{"--rules", rule, "--in", in}, c.args...), &out, &errw); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(out.String(), c.matches) || !strings.Contains(errw.String(), c.stderr) {
			t.Errorf("%v: out\n%s\nstderr\n%s", c.args, out.String(), errw.String())
		}
	}
}

const metricRules = `title: Much read from a share
id: c-sum
correlation:
  type: value_sum
  rules: [share_read]
  group-by: [Computer]
  timespan: 1h
  condition: {field: ReadBytes, gt: 1000000}
---
title: Large reads
id: c-avg
correlation:
  type: value_avg
  rules: [share_read]
  group-by: [Computer]
  timespan: 1h
  condition: {field: ReadBytes, gte: 600000.5}
---
title: Rare share reader
id: c-rare
correlation:
  type: value_percentile
  rules: [share_read]
  group-by: [Computer]
  timespan: 1h
  condition: {field: SubjectUserName, lte: 50}
---
title: Share read
id: r-s
name: share_read
logsource: {product: windows, service: security}
detection:
  sel:
    EventID: 5145
  condition: sel
`

// TestRulesMetricCorrelations: rules check lists value_sum, value_avg and
// value_percentile as supported (pySigma's condition.percentile, which the
// specification lacks, as unsupported); rules test prints what they
// compared over Windows events, and counts the values that are not
// numbers.
func TestRulesMetricCorrelations(t *testing.T) {
	dir := t.TempDir()
	rules := filepath.Join(dir, "mr_metric.yml")
	ext := filepath.Join(dir, "mr_pysigma.yml")
	in := filepath.Join(dir, "events.json")
	event := func(min int, user, bytes string) string {
		return fmt.Sprintf(`{"Hostname":"fs1.corp.local","Channel":"Security","EventID":5145,"TimeCreated":"2026-01-02 03:%02d:00","SubjectUserName":%q,"ShareName":"\\\\*\\C$","ReadBytes":%q}`, min, user, bytes)
	}
	for p, body := range map[string]string{
		rules: metricRules,
		ext:   "title: p95\ncorrelation:\n  type: value_percentile\n  rules: [share_read]\n  timespan: 1h\n  condition: {field: ReadBytes, percentile: 95, gt: 10}\n",
		in:    strings.Join([]string{event(0, "bob", "400000"), event(1, "bob", "n/a"), event(2, "bob", "0x AB"), event(3, "bob", "700000"), event(4, "eve", "1")}, "\n"),
	} {
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var out bytes.Buffer
	if err := rulesCheck([]string{rules, ext}, &out); err != nil {
		t.Fatalf("check: %v\n%s", err, out.String())
	}
	for _, want := range []string{"1 rule and 3 correlation rules loaded, 0 invalid, 1 unsupported",
		"supported correlation rules: value_avg 1, value_percentile 1, value_sum 1", "mr_pysigma.yml:1: unsupported: condition.percentile"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("check output lacks %q:\n%s", want, out.String())
		}
	}

	out.Reset()
	var errw bytes.Buffer
	if err := rulesTest(context.Background(), []string{"--rules", rules, "--in", in}, &out, &errw); err != nil {
		t.Fatal(err)
	}
	var fired []string
	for _, line := range strings.Split(out.String(), "\n") {
		var c struct {
			RuleID      string   `json:"rule_id"`
			Correlation string   `json:"correlation"`
			Value       string   `json:"value"`
			Metric      *float64 `json:"metric"`
			Events      int      `json:"events"`
		}
		if json.Unmarshal([]byte(line), &c) == nil && c.Metric != nil {
			fired = append(fired, fmt.Sprintf("%s %s %g %s %d", c.RuleID, c.Correlation, *c.Metric, c.Value, c.Events))
		}
	}
	// bob is 100% of the readers, eve 1 of 5 (20%); 400000 and 700000
	// (n/a and "0x AB" skipped) sum to 1.1 MB and average 550000, then
	// 366667 with eve's 1.
	want := []string{"c-sum value_sum 1.1e+06  2", "c-rare value_percentile 20 eve 5"}
	if strings.Join(fired, "|") != strings.Join(want, "|") {
		t.Errorf("fired %q, want %q\n%s", fired, want, out.String())
	}
	if !strings.Contains(errw.String(), "correlation values skipped as not numbers (Large reads 2, Much read from a share 2)") {
		t.Errorf("stderr:\n%s", errw.String())
	}
}
