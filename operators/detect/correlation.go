package detect

import (
	"fmt"
	"math"
	"regexp"
	"sort"
	"strconv"
	"time"

	"gopkg.in/yaml.v3"
)

// Sigma correlation rules (sigma-correlation-rules-specification.md,
// 2.1.0): event_count, value_count, temporal and temporal_ordered, and the
// metric types value_sum, value_avg and value_percentile (metric.go), over
// the matches of other rules (or correlations), grouped by fields (with
// aliases) within a timespan. This file parses them and resolves the
// fields they read; windows.go evaluates them over windows in a key-value
// store: a map for `stitch rules test` (Correlator), the detect-correlate
// stage's changelogged store in the pipeline.

// Correlation is a compiled correlation rule.
type Correlation struct {
	ID, Title, Name, Level string
	Tags, Techniques       []string
	Type                   string
	Refs                   []string
	GroupBy                []string
	Timespan               time.Duration
	// Field is the field of value_count and the metric types
	// (condition.field).
	Field string
	// Aliases: alias → rule name → field.
	Aliases map[string]map[string]string
	// Generate: the rules it refers to raise their own alerts too (by
	// default only the correlation does).
	Generate bool
	File     string
	Line     int

	conds []countCond
}

type countCond struct {
	op string
	n  float64
}

var correlationTypes = map[string]bool{"event_count": true, "value_count": true, "temporal": true, "temporal_ordered": true,
	"value_sum": true, "value_avg": true, "value_percentile": true}

// IsMetric says whether c is of a type that compares a number computed from
// condition.field's values (metric.go): value_sum, value_avg,
// value_percentile.
func (c *Correlation) IsMetric() bool {
	return c.Type == "value_sum" || c.Type == "value_avg" || c.Type == "value_percentile"
}

var timespanRE = regexp.MustCompile(`^(\d+)([smhd])$`)

// parseCorrelation reads a correlation rule document.
func parseCorrelation(file string, root *yaml.Node) (*Correlation, *Problem) {
	var doc struct {
		Title, ID, Name, Level string
		Tags                   []string
		Correlation            struct {
			Type      string
			Rules     []string
			GroupBy   []string `yaml:"group-by"`
			Timespan  string
			Condition map[string]any
			Aliases   map[string]map[string]string
			Generate  bool
		}
	}
	c := &Correlation{File: file, Line: root.Line}
	prob := func(format string, args ...any) *Problem {
		return &Problem{File: file, Line: root.Line, ID: c.ID, Title: c.Title, Reason: fmt.Sprintf(format, args...)}
	}
	if err := root.Decode(&doc); err != nil {
		return nil, prob("correlation: %v", err)
	}
	cr := doc.Correlation
	c.ID, c.Title, c.Name, c.Level, c.Tags = doc.ID, doc.Title, doc.Name, doc.Level, doc.Tags
	c.Techniques = techniques(doc.Tags)
	c.Type, c.Refs, c.GroupBy, c.Aliases, c.Generate = cr.Type, cr.Rules, cr.GroupBy, cr.Aliases, cr.Generate
	switch {
	case c.Title == "":
		return nil, prob("no title")
	case !correlationTypes[cr.Type]:
		return nil, prob("correlation type %q is not one of event_count, value_count, temporal, temporal_ordered, value_sum, value_avg, value_percentile", cr.Type)
	case len(cr.Rules) == 0:
		return nil, prob("correlation names no rules")
	}
	m := timespanRE.FindStringSubmatch(cr.Timespan)
	if m == nil {
		return nil, prob("timespan %q is not a number and one of s, m, h, d", cr.Timespan)
	}
	n, _ := strconv.Atoi(m[1])
	c.Timespan = time.Duration(n) * map[string]time.Duration{"s": time.Second, "m": time.Minute, "h": time.Hour, "d": 24 * time.Hour}[m[2]]
	for k, v := range cr.Condition {
		if k == "field" {
			s, ok := v.(string)
			if !ok {
				return nil, prob("condition field is not a string")
			}
			c.Field = s
			continue
		}
		switch k {
		case "gt", "gte", "lt", "lte", "eq", "neq":
		case "percentile":
			// pySigma's extension (which percentile of the values to
			// compare); the 2.1.0 specification has value_percentile
			// compare the share of the event's value instead.
			p := prob("condition.percentile is not in the Sigma correlation specification 2.1.0 (value_percentile compares the percentage of the group's values that equal the event's)")
			p.Unsupported = true
			return nil, p
		default:
			return nil, prob("condition %q is not one of gt, gte, lt, lte, eq, neq, field", k)
		}
		var num float64
		switch n := v.(type) {
		case int:
			num = float64(n)
		case float64:
			// The metric types compare sums, averages and percentages:
			// "an integer or float threshold" (value_avg).
			if !c.IsMetric() || math.IsInf(n, 0) || math.IsNaN(n) {
				return nil, prob("condition %s needs a whole number, not %v", k, v)
			}
			num = n
		default:
			if c.IsMetric() {
				return nil, prob("condition %s needs a number, not %v", k, v)
			}
			return nil, prob("condition %s needs a whole number, not %v", k, v)
		}
		if c.Type == "value_percentile" && (num < 0 || num > 100) {
			return nil, prob("value_percentile's condition %s is a percentage, 0 to 100, not %v", k, v)
		}
		c.conds = append(c.conds, countCond{k, num})
	}
	sort.Slice(c.conds, func(i, j int) bool { return c.conds[i].op < c.conds[j].op })
	switch {
	case (c.Type == "event_count" || c.Type == "value_count" || c.IsMetric()) && len(c.conds) == 0:
		return nil, prob("%s needs a condition", c.Type)
	case (c.Type == "value_count" || c.IsMetric()) && c.Field == "":
		return nil, prob("%s needs condition.field", c.Type)
	}
	return c, nil
}

// key names the correlation: its id, or its title.
func (c *Correlation) key() string {
	if c.ID != "" {
		return c.ID
	}
	return c.Title
}

func (c *Correlation) met(n float64) bool {
	for _, k := range c.conds {
		ok := false
		switch k.op {
		case "gt":
			ok = n > k.n
		case "gte":
			ok = n >= k.n
		case "lt":
			ok = n < k.n
		case "lte":
			ok = n <= k.n
		case "eq":
			ok = n == k.n
		case "neq":
			ok = n != k.n
		}
		if !ok {
			return false
		}
	}
	return true
}

// ref names a rule as correlations refer to it: its id or its name.
func refers(ref string, id, name string) bool { return ref != "" && (ref == id || ref == name) }

// fieldOf is the field of an event of rule (id, name) that group-by entry
// or value field f reads, through the aliases.
func (c *Correlation) fieldOf(f, id, name string) string {
	if a, ok := c.Aliases[f]; ok {
		if v, ok := a[name]; ok && name != "" {
			return v
		}
		if v, ok := a[id]; ok {
			return v
		}
	}
	return f
}

// CorrelationMatch is a correlation rule that fired.
type CorrelationMatch struct {
	Rule   *Correlation
	Tenant string
	Group  map[string]string
	First  time.Time
	Last   time.Time
	Events int
	// Metric is what a metric type compared (metric.go): the sum, the
	// average, or the percentage of the window's values equal to Value,
	// the value of the event that fired value_percentile.
	Metric float64
	Value  string
}

// Correlator evaluates a set's correlation rules over its matches, with
// its windows in memory (windows.go).
type Correlator struct {
	set *Set
	ev  *Evaluator
	win *Windows
	// Fire receives every correlation that fires.
	Fire func(CorrelationMatch)
	// NotNumbers counts the values value_sum and value_avg skipped as no
	// numbers, by correlation title.
	NotNumbers map[string]int
}

// NewCorrelator resolves the set's correlation rules (ResolveCorrelations)
// and returns their evaluator over ev's matches; problems are the
// correlations that cannot run.
func (s *Set) NewCorrelator(ev *Evaluator) (*Correlator, []Problem) {
	probs := s.ResolveCorrelations()
	return &Correlator{set: s, ev: ev, win: s.NewWindows(memKV{})}, probs
}

// ResolveCorrelations makes the fields the correlation rules group by (and
// condition.field) fields of the rules they refer to, so that the
// evaluator reads them, and drops the correlations that cannot run: call
// it once, before the first Eval. Problems are the correlations dropped.
func (s *Set) ResolveCorrelations() []Problem {
	var probs []Problem
	var ok []*Correlation
	for _, c := range s.Correlations {
		if err := s.resolve(c); err != nil {
			probs = append(probs, Problem{File: c.File, Line: c.Line, ID: c.ID, Title: c.Title, Reason: err.Error(), Unsupported: isUnsupported(err)})
			continue
		}
		ok = append(ok, c)
	}
	s.Correlations = ok
	return probs
}

// resolve checks that c's references exist and gives each referred rule a
// slot for each field c reads from its events.
func (s *Set) resolve(c *Correlation) error {
	for _, ref := range c.Refs {
		found := false
		for _, r := range s.Rules {
			if !refers(ref, r.ID, r.Name) {
				continue
			}
			found = true
			fields := append([]string(nil), c.GroupBy...)
			if c.Field != "" {
				fields = append(fields, c.Field)
			}
			for _, f := range fields {
				if _, err := s.fieldSlot(r, c.fieldOf(f, r.ID, r.Name)); err != nil {
					return fmt.Errorf("correlation %s, rule %s: %w", c.Title, ref, err)
				}
			}
		}
		for _, o := range s.Correlations {
			if o != c && refers(ref, o.ID, o.Name) {
				found = true
			}
		}
		if !found {
			return fmt.Errorf("correlation %s refers to %q, which names no loaded rule", c.Title, ref)
		}
	}
	return nil
}

// fieldSlot adds (or finds) the slot of a Sigma field of rule r's table.
func (s *Set) fieldSlot(r *Rule, field string) (int, error) {
	if slot, ok := r.fieldSlots[field]; ok {
		return slot, nil
	}
	spec, ok := r.src.fields[field]
	if !ok && r.src.generic {
		// as the rule's own fields: the event's field by its name
		spec, ok = genericField(field), true
	}
	if !ok {
		return 0, unsupportedError{fmt.Sprintf("field %s has no column in %s", field, r.Table)}
	}
	key := spec.col
	if spec.derive != nil {
		key = "derived:" + r.Logsource + "/" + field
	}
	t := s.tables[r.Table]
	idx, ok := t.index[key]
	if !ok {
		idx = len(t.slots)
		t.index[key] = idx
		t.slots = append(t.slots, slotDef{spec: spec})
	}
	if r.fieldSlots == nil {
		r.fieldSlots = map[string]int{}
	}
	r.fieldSlots[field] = idx
	return idx, nil
}

// Observe feeds one match (rule r on row of the batch ev is evaluating, at
// time t) to the correlations that refer to r.
func (c *Correlator) Observe(tenant string, r *Rule, row int, t time.Time) {
	if !c.set.Correlated(r) {
		return
	}
	fired, _ := c.win.Observe(tenant, c.set.Event(c.ev, r, row, t, nil)) // in memory: only a bad tenant fails
	for title, n := range c.win.TakeSkipped() {
		if c.NotNumbers == nil {
			c.NotNumbers = map[string]int{}
		}
		c.NotNumbers[title] += n
	}
	for _, f := range fired {
		if c.Fire != nil {
			c.Fire(f.Match)
		}
	}
}
