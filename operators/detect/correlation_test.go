package detect

import (
	"encoding/json"
	"fmt"
	"slices"
	"testing"
	"time"
)

const correlationRules = `title: Brute force then success
id: corr-1
correlation:
  type: temporal_ordered
  rules: [many_failed, success]
  group-by: [TargetUserName]
  timespan: 10m
level: high
---
title: Many failed logons
id: corr-0
name: many_failed
correlation:
  type: event_count
  rules: [failed_login]
  group-by: [TargetUserName]
  timespan: 10m
  condition: {gte: 3}
---
title: Password spray
id: corr-2
correlation:
  type: value_count
  rules: [failed_login]
  group-by: [IpAddress]
  timespan: 1h
  condition: {field: TargetUserName, gte: 3}
---
title: Failed and successful, any order
id: corr-3
correlation:
  type: temporal
  rules: [failed_login, success]
  group-by: [src]
  aliases:
    src: {failed_login: IpAddress, success: IpAddress}
  timespan: 5m
---
title: Failed logon
id: r-f
name: failed_login
logsource: {product: windows, service: security}
detection:
  sel:
    EventID: 4625
  condition: sel
---
title: Successful logon
id: r-s
name: success
logsource: {product: windows, service: security}
detection:
  sel:
    EventID: 4624
  condition: sel
`

func logon(min int, action, user, ip string) []byte {
	ts := time.Date(2026, 1, 2, 3, 0, 0, 0, time.UTC).Add(time.Duration(min) * time.Minute).Format(time.RFC3339)
	b, _ := json.Marshal(map[string]any{"time": ts, "tenantId": "t1", "category": "AdvancedHunting-DeviceLogonEvents",
		"properties": map[string]any{"Timestamp": ts, "DeviceName": "dc1", "ActionType": action, "AccountName": user, "RemoteIP": ip}})
	return b
}

func TestCorrelationRules(t *testing.T) {
	s := NewSet()
	s.Add("corr.yml", []byte(correlationRules))
	if len(s.Problems) > 0 || len(s.Rules) != 2 || len(s.Correlations) != 4 {
		t.Fatalf("rules %d, correlations %d, problems %v", len(s.Rules), len(s.Correlations), s.Problems)
	}
	tester := NewTester(s)
	defer tester.Close()
	if len(tester.Problems) > 0 {
		t.Fatal(tester.Problems)
	}
	var fired []string
	tester.OnCorrelation = func(m CorrelationMatch) {
		fired = append(fired, fmt.Sprintf("%s %v %d", m.Rule.ID, m.Group, m.Events))
	}
	for _, r := range [][]byte{
		logon(0, "LogonFailed", "bob", "10.0.0.9"),
		logon(1, "LogonFailed", "bob", "10.0.0.9"),
		logon(2, "LogonFailed", "alice", "10.0.0.9"),
		logon(3, "LogonFailed", "bob", "10.0.0.9"),   // third of bob's: many_failed
		logon(4, "LogonFailed", "carol", "10.0.0.9"), // third user from the address: spray
		logon(5, "LogonSuccess", "bob", "10.0.0.8"),  // after many_failed: brute force then success
		logon(6, "LogonSuccess", "alice", "10.0.0.7"),
		logon(30, "LogonFailed", "dave", "10.0.0.7"), // alice's success was 24 minutes before: too far for corr-3
	} {
		tester.Add(r)
	}
	tester.Flush()
	want := []string{
		"corr-0 map[TargetUserName:bob] 3",
		"corr-2 map[IpAddress:10.0.0.9] 5",
		"corr-1 map[TargetUserName:bob] 2",
	}
	if !slices.Equal(fired, want) {
		t.Errorf("fired:\n%v\nwant:\n%v", fired, want)
	}
}

func TestCorrelationProblems(t *testing.T) {
	s := NewSet()
	s.Add("c.yml", []byte("title: c\nid: c1\ncorrelation:\n  type: event_count\n  rules: [nope]\n  group-by: [User]\n  timespan: 5m\n  condition: {gte: 2}\n"))
	s.Add("d.yml", []byte("title: d\ncorrelation:\n  type: event_count\n  rules: [x]\n  timespan: 5 minutes\n  condition: {gte: 2}\n"))
	tester := NewTester(s)
	defer tester.Close()
	if len(s.Problems) != 1 || len(tester.Problems) != 1 {
		t.Fatalf("problems %v, %v", s.Problems, tester.Problems)
	}
	t.Log(s.Problems[0], tester.Problems[0])
}
