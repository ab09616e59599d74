// Package detect evaluates Sigma detection rules
// (../shared/data/sigma/specification) over the normalized Arrow batches:
// custom detections whose matches become alerts beside the products'.
//
// Rules are parsed once (github.com/bradleyjkemp/sigma-go parses the YAML
// and the condition grammar) and compiled here into matchers over the
// columns of the table their logsource maps to (taxonomy.go): values
// lowered once, wildcards turned into prefix, suffix, contains or one
// regular expression, encodings (base64, base64offset, utf16, windash)
// expanded into literal variants. Evaluation reads each field a batch's
// rules use once per batch and walks the rows; nothing is parsed per
// record.
package detect

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"

	sigma "github.com/bradleyjkemp/sigma-go"
	"gopkg.in/yaml.v3"
)

// Rule is a compiled Sigma rule.
type Rule struct {
	ID          string   `json:"id"`
	Title       string   `json:"title"`
	Level       string   `json:"level,omitempty"`
	Status      string   `json:"status,omitempty"`
	Description string   `json:"description,omitempty"`
	Tags        []string `json:"tags,omitempty"`
	// Techniques are the ATT&CK technique ids of the tags (T1059.001).
	Techniques []string `json:"techniques,omitempty"`
	// Logsource is the rule's category (or service); Table the normalized
	// table it runs on.
	Logsource string `json:"logsource"`
	Table     string `json:"table"`
	File      string `json:"file"`
	Line      int    `json:"line"`
	// Name is the rule's name, by which correlation rules may refer to it.
	Name string `json:"name,omitempty"`

	cond node
	src  source
	// fieldSlots are the table slots of the fields correlations read.
	fieldSlots map[string]int
}

// Key names the rule: its id, or its title where it has none.
func (r *Rule) Key() string {
	if r.ID != "" {
		return r.ID
	}
	return r.Title
}

// Problem is a rule that did not load: invalid (Unsupported false), or
// valid Sigma that this engine or the tables cannot express.
type Problem struct {
	File        string `json:"file"`
	Line        int    `json:"line"`
	ID          string `json:"id,omitempty"`
	Title       string `json:"title,omitempty"`
	Unsupported bool   `json:"unsupported"`
	Reason      string `json:"reason"`
}

func (p Problem) String() string {
	kind := "error"
	if p.Unsupported {
		kind = "unsupported"
	}
	s := fmt.Sprintf("%s:%d: %s: %s", p.File, p.Line, kind, p.Reason)
	if p.Title != "" {
		s += fmt.Sprintf(" (rule %q)", p.Title)
	}
	return s
}

// Set is the loaded rules and the problems of those that did not load.
type Set struct {
	Rules []*Rule
	// Correlations are the correlation rules (NewCorrelator runs them).
	Correlations []*Correlation
	Problems     []Problem
	// Placeholders are the values of the %name% placeholders of the expand
	// modifier (Load reads them from placeholders.yml files); set them
	// before Add.
	Placeholders map[string][]string

	tables map[string]*tableRules
}

// tableRules are the rules of one table and the fields they read.
type tableRules struct {
	rules []*Rule
	slots []slotDef
	index map[string]int // slot by key
}

// Errors are the problems that make rules invalid (not merely unsupported).
func (s *Set) Errors() []Problem {
	var out []Problem
	for _, p := range s.Problems {
		if !p.Unsupported {
			out = append(out, p)
		}
	}
	return out
}

// Tables are the tables the rules read.
func (s *Set) Tables() []string {
	var out []string
	for t := range s.tables {
		out = append(out, t)
	}
	sort.Strings(out)
	return out
}

// Load reads every .yml and .yaml file under the paths (files or
// directories, walked in name order), the placeholders.yml files among them
// first (placeholders.go). A rule that cannot be loaded is a Problem; the
// others load. The error is for paths that cannot be read.
func Load(paths ...string) (*Set, error) {
	s := NewSet()
	// Placeholder files first: a rule may come before them in the walk.
	if err := readFiles(paths, isPlaceholderFile, s.addPlaceholders); err != nil {
		return nil, fmt.Errorf("detect: load placeholders: %w", err)
	}
	isRule := func(f string) bool { return isRuleFile(f) && !isPlaceholderFile(f) }
	if err := readFiles(paths, isRule, s.Add); err != nil {
		return nil, fmt.Errorf("detect: load rules: %w", err)
	}
	return s, nil
}

// readFiles calls fn with each file under the paths that want takes, in
// walk order.
func readFiles(paths []string, want func(string) bool, fn func(file string, data []byte)) error {
	for _, p := range paths {
		err := filepath.WalkDir(p, func(file string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || !want(file) {
				return err
			}
			b, err := os.ReadFile(file)
			if err != nil {
				return err
			}
			fn(file, b)
			return nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

func isRuleFile(name string) bool {
	ext := strings.ToLower(path.Ext(name))
	return ext == ".yml" || ext == ".yaml"
}

// NewSet returns an empty set to Add rules to.
func NewSet() *Set { return &Set{tables: map[string]*tableRules{}} }

var (
	lineRE     = regexp.MustCompile(`line (\d+)`)
	legacyNear = regexp.MustCompile(`(?i)\bnear\b`)
)

// Add compiles the rules of one file (several YAML documents are several
// rules) into the set.
func (s *Set) Add(file string, data []byte) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var doc yaml.Node
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			line := 1
			if m := lineRE.FindStringSubmatch(err.Error()); m != nil {
				line, _ = strconv.Atoi(m[1])
			}
			s.Problems = append(s.Problems, Problem{File: file, Line: line, Reason: "not YAML: " + err.Error()})
			return
		}
		if len(doc.Content) == 0 {
			continue
		}
		if hasKey(doc.Content[0], "correlation") {
			c, p := parseCorrelation(file, doc.Content[0])
			if p != nil {
				s.Problems = append(s.Problems, *p)
			} else {
				s.Correlations = append(s.Correlations, c)
			}
			continue
		}
		r, p := safeCompile(file, doc.Content[0], s.Placeholders)
		if p != nil {
			s.Problems = append(s.Problems, *p)
			continue
		}
		s.addRule(r)
	}
}

func (s *Set) addRule(c *compiled) {
	t := s.tables[c.rule.Table]
	if t == nil {
		t = &tableRules{index: map[string]int{}}
		s.tables[c.rule.Table] = t
	}
	// Rebase the rule's field slots onto the table's shared ones.
	remap := make([]int, len(c.slots))
	for i, sd := range c.slots {
		key := c.keys[i]
		idx, ok := t.index[key]
		if !ok {
			idx = len(t.slots)
			t.index[key] = idx
			t.slots = append(t.slots, sd)
		}
		remap[i] = idx
	}
	for _, fm := range c.fields {
		fm.slot = remap[fm.slot]
		for k := range fm.vals {
			if fm.vals[k].op == opFieldRef {
				fm.vals[k].ref = remap[fm.vals[k].ref]
			}
		}
	}
	t.rules = append(t.rules, c.rule)
	s.Rules = append(s.Rules, c.rule)
}

// compiled is a rule with its own field slots, before they join a table's.
type compiled struct {
	rule   *Rule
	slots  []slotDef
	keys   []string
	fields []*fieldMatch
}

// safeCompile is compile that turns a panic (of the YAML or condition
// parser on input nobody foresaw) into the rule's problem: one rule never
// stops the others, or the pipeline, from loading.
func safeCompile(file string, root *yaml.Node, placeholders map[string][]string) (c *compiled, p *Problem) {
	defer func() {
		if r := recover(); r != nil {
			c, p = nil, &Problem{File: file, Line: root.Line, Reason: fmt.Sprintf("cannot be parsed: %v", r)}
		}
	}()
	return compile(file, root, placeholders)
}

// compile turns one YAML document into a rule, or says why it cannot.
func compile(file string, root *yaml.Node, placeholders map[string][]string) (*compiled, *Problem) {
	prob := func(line int, unsupported bool, format string, args ...any) *Problem {
		return &Problem{File: file, Line: line, Unsupported: unsupported, Reason: fmt.Sprintf(format, args...)}
	}
	if root.Kind != yaml.MappingNode {
		return nil, prob(root.Line, false, "a rule is a YAML mapping")
	}
	keyLine := func(n *yaml.Node, key string) int {
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == key {
				return n.Content[i].Line
			}
		}
		return n.Line
	}
	has := func(key string) bool { return hasKey(root, key) }
	var head struct {
		Title string `yaml:"title"`
		ID    string `yaml:"id"`
		Name  string `yaml:"name"`
	}
	_ = root.Decode(&head)
	withRule := func(p *Problem) *Problem {
		p.ID, p.Title = head.ID, head.Title
		return p
	}
	switch {
	case has("filter"):
		return nil, withRule(prob(keyLine(root, "filter"), true, "filter rules (meta filters) are not supported"))
	case has("action"):
		return nil, withRule(prob(keyLine(root, "action"), false, "rule collections with action (global, reset, repeat) are Sigma 1 syntax: write each rule whole"))
	case !has("detection"):
		return nil, withRule(prob(root.Line, false, "no detection"))
	case !has("logsource"):
		return nil, withRule(prob(root.Line, false, "no logsource"))
	case head.Title == "":
		return nil, withRule(prob(root.Line, false, "no title"))
	}
	var det *yaml.Node
	for i := 0; i+1 < len(root.Content); i += 2 {
		if root.Content[i].Value == "detection" {
			det = root.Content[i+1]
		}
	}
	if det.Kind != yaml.MappingNode {
		return nil, withRule(prob(det.Line, false, "detection is not a mapping"))
	}
	if hasKey(det, "timeframe") {
		return nil, withRule(prob(keyLine(det, "timeframe"), false, "timeframe in a detection is Sigma 1 aggregation syntax: write a correlation rule"))
	}
	if !hasKey(det, "condition") {
		return nil, withRule(prob(keyLine(root, "detection"), false, "detection has no condition"))
	}
	for i := 0; i+1 < len(det.Content); i += 2 {
		if det.Content[i].Value != "condition" {
			continue
		}
		conds := []*yaml.Node{det.Content[i+1]}
		if det.Content[i+1].Kind == yaml.SequenceNode {
			conds = det.Content[i+1].Content
		}
		for _, cn := range conds {
			if strings.Contains(cn.Value, "|") || legacyNear.MatchString(cn.Value) {
				return nil, withRule(prob(cn.Line, false, "condition %q aggregates (| count(), near) in Sigma 1 syntax, not Sigma 2: write a correlation rule", cn.Value))
			}
		}
	}
	var sr sigma.Rule
	if err := root.Decode(&sr); err != nil {
		line := keyLine(det, "condition")
		if m := lineRE.FindStringSubmatch(err.Error()); m != nil {
			line, _ = strconv.Atoi(m[1])
		}
		return nil, withRule(prob(line, false, "%v", err))
	}
	src, err := lookupSource(sr.Logsource.Category, sr.Logsource.Product, sr.Logsource.Service)
	if err == nil && src.eventIDs != nil {
		src, err = securitySource(src, sr)
	}
	if err != nil {
		return nil, withRule(prob(keyLine(root, "logsource"), true, "%v", err))
	}
	r := &Rule{
		ID: sr.ID, Title: sr.Title, Level: sr.Level, Status: sr.Status, Description: sr.Description,
		Tags: sr.Tags, Techniques: techniques(sr.Tags), Table: src.table,
		Logsource: sr.Logsource.Category, File: file, Line: root.Line, Name: head.Name, src: src,
	}
	if r.Logsource == "" {
		r.Logsource = sr.Logsource.Service
	}
	c := &compiled{rule: r}
	slotOf := func(name string) (int, error) {
		spec, ok := src.fields[name]
		if !ok {
			for k, v := range src.fields {
				if strings.EqualFold(k, name) {
					spec, ok = v, true
				}
			}
		}
		if !ok && src.generic {
			spec, ok = genericField(name), true
		}
		if !ok {
			return 0, unsupportedError{fmt.Sprintf("field %s has no column in %s (%s maps %s)", name, src.table, r.Logsource, strings.Join(fieldNames(src), ", "))}
		}
		key := spec.col
		if spec.derive != nil {
			key = "derived:" + r.Logsource + "/" + name
		}
		for i, k := range c.keys {
			if k == key {
				return i, nil
			}
		}
		c.keys = append(c.keys, key)
		c.slots = append(c.slots, slotDef{spec: spec})
		return len(c.slots) - 1, nil
	}
	// Searches.
	searches := map[string]node{}
	var names []string
	for name := range sr.Detection.Searches {
		names = append(names, name)
	}
	// in the order they are written, so the problem reported is the first
	sort.Slice(names, func(i, j int) bool {
		li, _ := sr.Detection.Searches[names[i]].Position()
		lj, _ := sr.Detection.Searches[names[j]].Position()
		return li < lj
	})
	for _, name := range names {
		search := sr.Detection.Searches[name]
		line, _ := search.Position()
		line++
		if len(search.Keywords) > 0 {
			return nil, withRule(prob(line, true, "search %s: keyword lists match the whole event, and the tables have no such field", name))
		}
		var alts orNode
		for _, em := range search.EventMatchers {
			var all andNode
			for _, fm := range em {
				fl, _ := fm.Position()
				fl++
				if fm.Field == "" {
					return nil, withRule(prob(fl, true, "search %s: keyword values without a field are not supported", name))
				}
				slot, err := slotOf(fm.Field)
				if err != nil {
					return nil, withRule(prob(fl, isUnsupported(err), "search %s: %v", name, err))
				}
				if src.eventIDs != nil && fm.Field == "EventID" {
					for _, v := range fm.Values {
						if s := fmt.Sprint(v); !contains(src.eventIDs, s) {
							return nil, withRule(prob(fl, true, "search %s: EventID %s is not kept by %s (only %s)", name, s, src.table, strings.Join(src.eventIDs, ", ")))
						}
					}
				}
				m, err := compileValues(fm.Modifiers, fm.Values, slotOf, placeholders)
				if err != nil {
					return nil, withRule(prob(fl, isUnsupported(err), "search %s, field %s: %v", name, fm.Field, err))
				}
				m.slot = slot
				mp := &m
				c.fields = append(c.fields, mp)
				all = append(all, mp)
			}
			alts = append(alts, all)
		}
		if len(alts) == 1 {
			searches[name] = alts[0]
		} else {
			searches[name] = alts
		}
	}
	sort.Strings(names)
	// Conditions: several are alternatives.
	var conds orNode
	for _, cd := range sr.Detection.Conditions {
		line, _ := cd.Position()
		line++
		if cd.Aggregation != nil {
			return nil, withRule(prob(line, false, "aggregation in a condition is Sigma 1 syntax, not Sigma 2: write a correlation rule"))
		}
		n, err := condition(cd.Search, searches, names)
		if err != nil {
			return nil, withRule(prob(line, false, "condition: %v", err))
		}
		conds = append(conds, n)
	}
	var root2 node = conds
	if len(conds) == 1 {
		root2 = conds[0]
	}
	if len(src.actions) > 0 {
		slot, _ := c.slotFor("ActionType")
		fm := &fieldMatch{slot: slot}
		for _, a := range src.actions {
			fm.vals = append(fm.vals, valueMatcher{op: opEq, s: a, cased: true})
		}
		c.fields = append(c.fields, fm)
		root2 = andNode{fm, root2}
	}
	for _, w := range src.where {
		slot, err := slotOf(w.field)
		if err != nil {
			return nil, withRule(prob(keyLine(root, "logsource"), true, "%v", err))
		}
		m, err := compileValues(w.mods, w.values, slotOf, nil)
		if err != nil {
			return nil, withRule(prob(keyLine(root, "logsource"), false, "logsource narrowing %s: %v", w.field, err))
		}
		m.slot = slot
		mp := &m
		c.fields = append(c.fields, mp)
		root2 = andNode{mp, root2}
	}
	r.cond = order(root2)
	return c, nil
}

func hasKey(n *yaml.Node, key string) bool {
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return true
		}
	}
	return false
}

// slotFor adds a plain column slot.
func (c *compiled) slotFor(column string) (int, error) {
	for i, k := range c.keys {
		if k == column {
			return i, nil
		}
	}
	c.keys = append(c.keys, column)
	c.slots = append(c.slots, slotDef{spec: col(column)})
	return len(c.slots) - 1, nil
}

func isUnsupported(err error) bool {
	var u unsupportedError
	return errors.As(err, &u)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func fieldNames(s source) []string {
	var out []string
	for k := range s.fields {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// condition compiles a parsed condition over the compiled searches.
func condition(e sigma.SearchExpr, searches map[string]node, names []string) (node, error) {
	pattern := func(p string) ([]node, error) {
		var out []node
		for _, n := range names {
			if ok, _ := path.Match(p, n); ok {
				out = append(out, searches[n])
			}
		}
		if len(out) == 0 {
			return nil, fmt.Errorf("%q names no search", p)
		}
		return out, nil
	}
	them := func() []node {
		var out []node
		for _, n := range names {
			if !strings.HasPrefix(n, "_") {
				out = append(out, searches[n])
			}
		}
		return out
	}
	switch x := e.(type) {
	case sigma.And:
		ns, err := conditions(x, searches, names)
		return andNode(ns), err
	case sigma.Or:
		ns, err := conditions(x, searches, names)
		return orNode(ns), err
	case sigma.Not:
		n, err := condition(x.Expr, searches, names)
		if err != nil {
			return nil, err
		}
		return notNode{n}, nil
	case sigma.SearchIdentifier:
		n, ok := searches[x.Name]
		if !ok {
			return nil, fmt.Errorf("search %q is not defined", x.Name)
		}
		return n, nil
	case sigma.OneOfIdentifier:
		return condition(x.Ident, searches, names)
	case sigma.AllOfIdentifier:
		return condition(x.Ident, searches, names)
	case sigma.OneOfPattern:
		ns, err := pattern(x.Pattern)
		return orNode(ns), err
	case sigma.AllOfPattern:
		ns, err := pattern(x.Pattern)
		return andNode(ns), err
	case sigma.OneOfThem:
		return orNode(them()), nil
	case sigma.AllOfThem:
		return andNode(them()), nil
	}
	return nil, fmt.Errorf("unsupported expression %T", e)
}

func conditions(xs []sigma.SearchExpr, searches map[string]node, names []string) ([]node, error) {
	out := make([]node, 0, len(xs))
	for _, x := range xs {
		n, err := condition(x, searches, names)
		if err != nil {
			return nil, err
		}
		out = append(out, n)
	}
	return out, nil
}

var techniqueTag = regexp.MustCompile(`(?i)^attack\.(t\d{4}(?:\.\d{3})?)$`)

// techniques picks the ATT&CK technique ids out of the tags.
func techniques(tags []string) []string {
	var out []string
	for _, t := range tags {
		if m := techniqueTag.FindStringSubmatch(t); m != nil {
			out = append(out, strings.ToUpper(m[1]))
		}
	}
	return out
}
