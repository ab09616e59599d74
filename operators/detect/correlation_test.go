package detect

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stitch-xdr/stitch/operators/correlate"
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

// fileRow is an advanced-hunting export row of DeviceFileEvents.
func fileRow(min int, device, user string, size any) []byte {
	ts := time.Date(2026, 1, 2, 3, 0, 0, 0, time.UTC).Add(time.Duration(min) * time.Minute).Format(time.RFC3339)
	row := map[string]any{"Timestamp": ts, "DeviceName": device, "ActionType": "FileCreated", "FileName": "f.bin",
		"FolderPath": `E:\f.bin`, "InitiatingProcessAccountName": user}
	if size != nil {
		row["FileSize"] = size
	}
	b, _ := json.Marshal(row)
	return b
}

const metricRules = `title: Exfiltration to removable media
id: corr-sum
correlation:
  type: value_sum
  rules: [removable_write]
  group-by: [DeviceName, InitiatingProcessAccountName]
  timespan: 1h
  condition: {field: FileSize, gt: 1000000}
---
title: Mostly large files
id: corr-avg
correlation:
  type: value_avg
  rules: [removable_write]
  group-by: [DeviceName]
  timespan: 1h
  condition: {field: FileSize, gte: 500000.5}
---
title: A user rare on a device
id: corr-rare
correlation:
  type: value_percentile
  rules: [removable_write]
  group-by: [DeviceName]
  timespan: 1h
  condition: {field: InitiatingProcessAccountName, lt: 20}
---
title: File written to a removable drive
id: r-w
name: removable_write
logsource: {product: m365defender, service: DeviceFileEvents}
detection:
  sel:
    FolderPath|startswith: 'E:\'
  condition: sel
`

// TestMetricCorrelationRules: value_sum, value_avg and value_percentile
// over rows as the normalizer makes them (FileSize an Int64 column, read
// as its decimal string).
func TestMetricCorrelationRules(t *testing.T) {
	s := NewSet()
	s.Add("metric.yml", []byte(metricRules))
	tester := NewTester(s)
	defer tester.Close()
	tester.ImportTable = "DeviceFileEvents"
	if len(s.Problems) > 0 || len(tester.Problems) > 0 || len(s.Correlations) != 3 {
		t.Fatalf("correlations %d, problems %v %v", len(s.Correlations), s.Problems, tester.Problems)
	}
	var fired []string
	tester.OnCorrelation = func(m CorrelationMatch) {
		fired = append(fired, fmt.Sprintf("%s %s %s %.4g %d", m.Rule.ID, group(m.Group), m.Value, m.Metric, m.Events))
	}
	for i := 0; i < 5; i++ {
		tester.Add(fileRow(i, "ws1", "bob", 100000)) // 100 kB each
	}
	tester.Add(fileRow(10, "ws1", "bob", nil))      // no size: no observation
	tester.Add(fileRow(20, "ws1", "bob", 700000))   // bob's sum 1.2 MB
	tester.Add(fileRow(21, "ws1", "eve", 1000))     // eve: 1 of 7 users
	tester.Add(fileRow(90, "ws1", "bob", 900000))   // alone in its hour
	tester.Add(fileRow(91, "ws2", "carol", 500000)) // average 500000, not 500000.5
	tester.Add(fileRow(92, "ws2", "carol", 500001)) // average 500000.5
	tester.Flush()
	want := []string{
		"corr-sum DeviceName=ws1 InitiatingProcessAccountName=bob  1.2e+06 6",
		"corr-rare DeviceName=ws1 eve 12.5 8",
		"corr-avg DeviceName=ws1  9e+05 1",
		"corr-sum DeviceName=ws2 InitiatingProcessAccountName=carol  1e+06 2",
		"corr-avg DeviceName=ws2  5e+05 2",
	}
	if !slices.Equal(fired, want) {
		t.Errorf("fired:\n%v\nwant:\n%v", strings.Join(fired, "\n"), strings.Join(want, "\n"))
	}
}

// TestPercentileAlert: value_percentile's alert carries the entities of
// the event that fired, not the baseline's, and two events of the same
// value fire two alerts.
func TestPercentileAlert(t *testing.T) {
	set, probs := loadWindowRules(`title: Rare
id: corr-rare
correlation:
  type: value_percentile
  rules: [p]
  group-by: [Computer]
  timespan: 1h
  condition: {field: Image, lte: 25}
---
title: p
name: p
logsource: {product: windows, category: process_creation}
detection:
  sel:
    Image|endswith: '.exe'
  condition: sel
`)
	if len(probs) > 0 {
		t.Fatal(probs)
	}
	w := set.NewWindows(memKV{})
	base := time.Date(2026, 1, 2, 3, 0, 0, 0, time.UTC)
	var alerts []Alert
	for i, img := range []string{"a.exe", "a.exe", "a.exe", "a.exe", "a.exe", "a.exe", "x.exe", "a.exe", "x.exe"} {
		e := Event{Name: "p", Time: base.Add(time.Duration(i) * time.Minute), Fields: map[string]string{"Computer": "ws1", "Image": img},
			Evidence: []correlate.EvidenceFact{{Entities: []string{"file:" + img + fmt.Sprint(i)}}}}
		fired, err := w.Observe("t1", e)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range fired {
			alerts = append(alerts, f.Alert)
		}
	}
	// x is 1 of 7 (14%), then 2 of 9 (22%).
	if len(alerts) != 2 || alerts[0].Info.ID == alerts[1].Info.ID {
		t.Fatalf("alerts %+v: want two, of two ids", alerts)
	}
	for i, a := range alerts {
		want := []string{"file:x.exe" + fmt.Sprint(6+2*i)}
		if len(a.Evidence) != 1 || !slices.Equal(a.Evidence[0].Entities, want) || a.Evidence[0].AlertID != a.Info.ID {
			t.Errorf("alert %d evidence %+v: want only %v", i, a.Evidence, want)
		}
	}
}

// TestMetricCap: past the cap, value_sum's merged samples keep the sum and
// count exact and hold events older than the timespan by at most
// 2×timespan/(cap-2) (metric.go), over events in time order at steady,
// bursty and random intervals.
func TestMetricCap(t *testing.T) {
	defer func() { metricSamples = maxSamples }()
	metricSamples = 64
	const span = time.Hour
	bound := 2 * span / time.Duration(metricSamples-2)
	cr := &Correlation{Type: "value_sum", Timespan: span}
	rnd := rand.New(rand.NewPCG(1, 2))
	gaps := map[string]func(i int) time.Duration{
		"steady": func(int) time.Duration { return 7 * time.Second },
		"bursts": func(i int) time.Duration {
			if i%100 < 90 {
				return 100 * time.Millisecond
			}
			return 3 * time.Minute
		},
		"random": func(int) time.Duration { return time.Duration(rnd.ExpFloat64() * float64(20*time.Second)) },
	}
	for name, gap := range gaps {
		var evs []windowEvent
		var times []time.Time
		now := time.Date(2026, 1, 2, 0, 0, 0, 0, time.UTC)
		for i := 0; i < 5000; i++ {
			now = now.Add(gap(i))
			times = append(times, now)
			evs = append(evs, windowEvent{T: now, Sum: 1})
			k := 0
			for k < len(evs) && evs[k].T.Before(now.Add(-span)) {
				k++
			}
			evs = capSamples(cr, evs[k:])
			if len(evs) > metricSamples {
				t.Fatalf("%s: %d samples, cap %d", name, len(evs), metricSamples)
			}
			sum, n := metric(cr, evs, "")
			if sum != float64(n) {
				t.Fatalf("%s: sum %v of %d events", name, sum, n)
			}
			// Exactly, the window holds the events since now-span; the
			// samples may hold those since now-span-bound, no fewer.
			exact, loose := 0, 0
			for _, ti := range times {
				if !ti.Before(now.Add(-span)) {
					exact++
				}
				if !ti.Before(now.Add(-span - bound)) {
					loose++
				}
			}
			if n < exact || n > loose {
				t.Fatalf("%s: event %d: the samples hold %d events, want %d..%d", name, i, n, exact, loose)
			}
			for _, e := range evs {
				if e.T.Sub(e.from()) > bound {
					t.Fatalf("%s: a sample spans %v, over %v", name, e.T.Sub(e.from()), bound)
				}
			}
		}
	}
}
