package pipeline

import (
	"encoding/json"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// The shipped Grafana dashboard queries only series this registry has, with
// labels those series carry: a renamed metric or label fails here, not as an
// empty panel in someone's Grafana.
func TestGrafanaDashboardQueriesRegisteredMetrics(t *testing.T) {
	m := newMetrics(func() float64 { return 0 })
	touchVecs(t, m)
	families, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	labels := map[string][]string{} // series name -> its label names
	for _, f := range families {
		var names []string
		for _, mt := range f.GetMetric() {
			for _, l := range mt.GetLabel() {
				if !slices.Contains(names, l.GetName()) {
					names = append(names, l.GetName())
				}
			}
		}
		labels[f.GetName()] = names
		if f.GetType().String() == "HISTOGRAM" {
			labels[f.GetName()+"_bucket"] = append(slices.Clone(names), "le")
			labels[f.GetName()+"_sum"] = names
			labels[f.GetName()+"_count"] = names
		}
		if f.GetType().String() == "SUMMARY" {
			labels[f.GetName()+"_sum"] = names
			labels[f.GetName()+"_count"] = names
		}
	}

	exprs := dashboardExprs(t, "../configs/grafana/stitch-dashboard.json")
	if len(exprs) < 10 {
		t.Fatalf("the dashboard has %d queries; expected its panels' queries", len(exprs))
	}
	// Prometheus adds these to every scraped series.
	scrape := []string{"instance", "job"}
	series := regexp.MustCompile(`\b((?:stitch|go|process)_[a-z0-9_]+)\b(\{[^}]*\})?`)
	matcher := regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)`)
	by := regexp.MustCompile(`\b(?:by|without)\s*\(([^)]*)\)`)
	for _, expr := range exprs {
		var used []string // the label names of the series expr selects
		for _, s := range series.FindAllStringSubmatch(expr, -1) {
			have, ok := labels[s[1]]
			if !ok {
				t.Errorf("dashboard query %q: no metric %s in the registry", expr, s[1])
				continue
			}
			have = append(slices.Clone(have), scrape...)
			used = append(used, have...)
			for _, l := range matcher.FindAllStringSubmatch(s[2], -1) {
				if !slices.Contains(have, l[1]) {
					t.Errorf("dashboard query %q: %s has no label %q (it has %v)", expr, s[1], l[1], have)
				}
			}
		}
		for _, g := range by.FindAllStringSubmatch(expr, -1) {
			for _, l := range strings.Split(g[1], ",") {
				if l = strings.TrimSpace(l); l != "" && !slices.Contains(used, l) {
					t.Errorf("dashboard query %q: groups by %q, which none of its series has", expr, l)
				}
			}
		}
	}
}

// dashboardExprs reads every PromQL expression of a dashboard's panels and
// variables.
func dashboardExprs(t *testing.T, path string) []string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		UID    string `json:"uid"`
		Title  string `json:"title"`
		Panels []struct {
			Title   string `json:"title"`
			Type    string `json:"type"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
		Templating struct {
			List []struct {
				Definition string `json:"definition"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(data, &d); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if d.UID == "" || d.Title == "" {
		t.Errorf("%s: a provisioned dashboard needs a uid and a title", path)
	}
	var exprs []string
	for _, p := range d.Panels {
		if p.Type != "row" && len(p.Targets) == 0 {
			t.Errorf("%s: panel %q queries nothing", path, p.Title)
		}
		for _, tg := range p.Targets {
			exprs = append(exprs, tg.Expr)
		}
	}
	for _, v := range d.Templating.List {
		if v.Definition != "" {
			exprs = append(exprs, v.Definition)
		}
	}
	return exprs
}

// touchVecs gives every labelled series of m one child, so that Gather
// lists it with its label names.
func touchVecs(t *testing.T, m *Metrics) {
	t.Helper()
	v := reflect.ValueOf(m).Elem()
	for i := 0; i < v.NumField(); i++ {
		f := v.Field(i).Interface()
		switch vec := f.(type) {
		case *prometheus.CounterVec:
			touch(t, v.Type().Field(i).Name, func(l []string) error { _, err := vec.GetMetricWithLabelValues(l...); return err })
		case *prometheus.GaugeVec:
			touch(t, v.Type().Field(i).Name, func(l []string) error { _, err := vec.GetMetricWithLabelValues(l...); return err })
		case *prometheus.HistogramVec:
			touch(t, v.Type().Field(i).Name, func(l []string) error { _, err := vec.GetMetricWithLabelValues(l...); return err })
		}
	}
}

// touch calls get with as many label values as the vector takes.
func touch(t *testing.T, field string, get func([]string) error) {
	for n := 1; n <= 8; n++ {
		if get(slices.Repeat([]string{"x"}, n)) == nil {
			return
		}
	}
	t.Fatalf("Metrics.%s: no child with up to 8 label values", field)
}
