package detect

import (
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/datadriven"
)

// TestWindows runs the correlation windows over the cases in
// testdata/windows (go test -run TestWindows -rewrite to update them):
//
//	rules [samples=n]      a YAML rule set; prints what loaded (samples: the cap of
//	                       metric windows, maxSamples otherwise)
//	observe [tenant=t] [restart=n]
//	                       one event a line: <minutes> <rule name or id> [field=value ...];
//	                       prints the correlations that fired and the values skipped as
//	                       no numbers; with restart, checks that a restart after the
//	                       n'th event (rules loaded anew, windows read back from the
//	                       store) fires the same as one run
//	sweep [limit=n]        ages windows behind their tenant's clock, looking at n
//	windows                lists the open windows
//	standalone             lists which rules raise alerts of their own
func TestWindows(t *testing.T) {
	datadriven.Walk(t, "testdata/windows", func(t *testing.T, path string) {
		var set *Set
		var w *Windows
		var rules string
		kv := memKV{}
		defer func() { metricSamples = maxSamples }()
		datadriven.RunTest(t, path, func(t *testing.T, d *datadriven.TestData) string {
			switch d.Cmd {
			case "rules":
				// samples=n caps the metric windows at n samples for the
				// rest of the file (metric.go's maxSamples otherwise).
				metricSamples = maxSamples
				if d.HasArg("samples") {
					d.ScanArgs(t, "samples", &metricSamples)
				}
				rules = d.Input
				var probs []Problem
				set, probs = loadWindowRules(rules)
				kv = memKV{}
				w = set.NewWindows(kv)
				out := fmt.Sprintf("%d rules, %d correlations\n", len(set.Rules), len(set.Correlations))
				for _, p := range probs {
					out += p.Reason + "\n"
				}
				return out
			case "observe":
				tenant := "t1"
				if d.HasArg("tenant") {
					d.ScanArgs(t, "tenant", &tenant)
				}
				lines := strings.Split(strings.TrimSpace(d.Input), "\n")
				if !d.HasArg("restart") {
					return report(observe(t, d, set, w, tenant, lines))
				}
				// The same events twice from the same state: in one run,
				// and with a restart after the restart=n'th: rules loaded
				// anew, windows read back from the store's bytes. Both
				// must fire (and skip) the same.
				var at int
				d.ScanArgs(t, "restart", &at)
				if at < 1 || at >= len(lines) {
					d.Fatalf(t, "restart=%d: want a line between the first and the last", at)
				}
				one, oneSkipped := observe(t, d, set, set.NewWindows(kv.clone()), tenant, lines)
				two, twoSkipped := observe(t, d, set, w, tenant, lines[:at])
				set, _ = loadWindowRules(rules)
				kv = kv.clone()
				w = set.NewWindows(kv)
				rest, restSkipped := observe(t, d, set, w, tenant, lines[at:])
				two += rest
				for title, n := range restSkipped {
					if twoSkipped == nil {
						twoSkipped = map[string]int{}
					}
					twoSkipped[title] += n
				}
				if report(one, oneSkipped) != report(two, twoSkipped) {
					d.Fatalf(t, "one run:\n%s\nwith a restart after event %d:\n%s", report(one, oneSkipped), at, report(two, twoSkipped))
				}
				return fmt.Sprintf("%s(the same with a restart after event %d)\n", report(one, oneSkipped), at)
			case "sweep":
				limit := 1000
				if d.HasArg("limit") {
					d.ScanArgs(t, "limit", &limit)
				}
				n, err := w.Sweep(nil, limit)
				if err != nil {
					return "error: " + err.Error() + "\n"
				}
				return fmt.Sprintf("%d windows expired\n", n)
			case "standalone":
				var b strings.Builder
				for _, r := range set.Rules {
					fmt.Fprintf(&b, "%s: %v\n", r.Key(), set.Standalone(r))
				}
				for _, c := range set.Correlations {
					fmt.Fprintf(&b, "%s: %v\n", c.key(), set.standalone(c.ID, c.Name))
				}
				return b.String()
			case "windows":
				var b strings.Builder
				kv.Scan([]byte{'T', spaceWindow}, func(k, v []byte) error {
					fmt.Fprintf(&b, "%s\n", v)
					return nil
				})
				if b.Len() == 0 {
					return "none\n"
				}
				return b.String()
			}
			d.Fatalf(t, "unknown command %s", d.Cmd)
			return ""
		})
	})
}

// loadWindowRules loads a rule set as the stage does.
func loadWindowRules(yml string) (*Set, []Problem) {
	set := NewSet()
	set.Add("rules.yml", []byte(yml))
	return set, append(set.Problems, set.ResolveCorrelations()...)
}

// clone copies the store, as a changelog restores it.
func (m memKV) clone() memKV {
	c := memKV{}
	for k, v := range m {
		c[k] = append([]byte(nil), v...)
	}
	return c
}

// observe feeds one event a line to w: <minutes> <rule> [field=value ...].
func observe(t *testing.T, d *datadriven.TestData, set *Set, w *Windows, tenant string, lines []string) (string, map[string]int) {
	base := time.Date(2026, 1, 2, 3, 0, 0, 0, time.UTC)
	var b strings.Builder
	for _, line := range lines {
		f := strings.Fields(line)
		if len(f) < 2 {
			d.Fatalf(t, "line %q: want <minutes> <rule> [field=value ...]", line)
		}
		var min float64
		fmt.Sscan(f[0], &min)
		e := Event{Time: base.Add(time.Duration(min * float64(time.Minute))), Fields: map[string]string{}}
		for _, r := range set.Rules {
			if refers(f[1], r.ID, r.Name) {
				e.ID, e.Name = r.ID, r.Name
			}
		}
		if e.ID == "" && e.Name == "" {
			d.Fatalf(t, "no rule %s", f[1])
		}
		for _, kv := range f[2:] {
			k, v, _ := strings.Cut(kv, "=")
			e.Fields[k] = v
		}
		fired, err := w.Observe(tenant, e)
		if err != nil {
			return "error: " + err.Error() + "\n", nil
		}
		for _, x := range fired {
			m := x.Match
			alert := "no alert (feeds another correlation)"
			if x.Standalone {
				alert = "alert " + x.Alert.Info.Severity + " " + x.Alert.Info.ID
			}
			metric := ""
			switch m.Rule.Type {
			case "value_sum", "value_avg":
				metric = fmt.Sprintf(" %s %.10g,", strings.TrimPrefix(m.Rule.Type, "value_"), m.Metric)
			case "value_percentile":
				metric = fmt.Sprintf(" %s is %.4g%%,", m.Value, m.Metric)
			}
			fmt.Fprintf(&b, "%s: %s fired: %s,%s %d events, %s..%s, %s\n", f[0], m.Rule.key(), group(m.Group), metric, m.Events,
				m.First.Format("15:04"), m.Last.Format("15:04"), alert)
		}
	}
	return b.String(), w.TakeSkipped()
}

// report renders what observe saw: the correlations fired, the values
// skipped.
func report(fired string, skipped map[string]int) string {
	var b strings.Builder
	b.WriteString(fired)
	titles := make([]string, 0, len(skipped))
	for title := range skipped {
		titles = append(titles, title)
	}
	sort.Strings(titles)
	for _, title := range titles {
		fmt.Fprintf(&b, "%s: %d values skipped, not numbers\n", title, skipped[title])
	}
	if b.Len() == 0 {
		return "nothing fired\n"
	}
	return b.String()
}

func group(g map[string]string) string {
	var parts []string
	for k, v := range g {
		parts = append(parts, k+"="+v)
	}
	sort.Strings(parts)
	return strings.Join(parts, " ")
}
