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
//	rules                  a YAML rule set; prints what loaded
//	observe [tenant=t]     one event a line: <minutes> <rule name or id> [field=value ...];
//	                       prints the correlations that fired
//	sweep [limit=n]        ages windows behind their tenant's clock, looking at n
//	windows                lists the open windows
//	standalone             lists which rules raise alerts of their own
func TestWindows(t *testing.T) {
	datadriven.Walk(t, "testdata/windows", func(t *testing.T, path string) {
		var set *Set
		var w *Windows
		kv := memKV{}
		base := time.Date(2026, 1, 2, 3, 0, 0, 0, time.UTC)
		datadriven.RunTest(t, path, func(t *testing.T, d *datadriven.TestData) string {
			switch d.Cmd {
			case "rules":
				set = NewSet()
				set.Add("rules.yml", []byte(d.Input))
				probs := append(set.Problems, set.ResolveCorrelations()...)
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
				var b strings.Builder
				for _, line := range strings.Split(strings.TrimSpace(d.Input), "\n") {
					f := strings.Fields(line)
					if len(f) < 2 {
						d.Fatalf(t, "line %q: want <minutes> <rule> [field=value ...]", line)
					}
					var min int
					fmt.Sscan(f[0], &min)
					e := Event{Time: base.Add(time.Duration(min) * time.Minute), Fields: map[string]string{}}
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
						return "error: " + err.Error() + "\n"
					}
					for _, x := range fired {
						m := x.Match
						alert := "no alert (feeds another correlation)"
						if x.Standalone {
							alert = "alert " + x.Alert.Info.Severity + " " + x.Alert.Info.ID
						}
						fmt.Fprintf(&b, "%d: %s fired: %s, %d events, %s..%s, %s\n", min, m.Rule.key(), group(m.Group), m.Events,
							m.First.Format("15:04"), m.Last.Format("15:04"), alert)
					}
				}
				if b.Len() == 0 {
					return "nothing fired\n"
				}
				return b.String()
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

func group(g map[string]string) string {
	var parts []string
	for k, v := range g {
		parts = append(parts, k+"="+v)
	}
	sort.Strings(parts)
	return strings.Join(parts, " ")
}
