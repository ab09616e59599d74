package detect

import (
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
	"unsafe"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/array"

	"github.com/stitch-xdr/stitch/operators/normalize"
)

// node is a compiled condition, evaluated per row.
type node interface {
	eval(v *view, i int) bool
}

// cost estimates what evaluating a node costs, to evaluate the cheap
// parts of a conjunction first (a suffix test on the image before a dozen
// substring searches of the command line, a filter last): the result is
// the same in any order.
func cost(n node) int {
	switch x := n.(type) {
	case *fieldMatch:
		c := 0
		for _, m := range x.vals {
			switch m.op {
			case opEq, opPrefix, opSuffix, opExists, opAbsent, opNull, opFieldRef, opLT, opLTE, opGT, opGTE:
				c++
			case opContains:
				c += 3
			case opGlob, opCIDR, opTime:
				c += 6
			default: // regular expressions
				c += 20
			}
		}
		return c
	case andNode:
		return sumCost(x)
	case orNode:
		return sumCost(x)
	case notNode:
		return cost(x.n)
	}
	return 1
}

func sumCost(ns []node) int {
	c := 0
	for _, n := range ns {
		c += cost(n)
	}
	return c
}

// order sorts the children of every conjunction and disjunction, cheapest
// first.
func order(n node) node {
	switch x := n.(type) {
	case andNode:
		for i := range x {
			x[i] = order(x[i])
		}
		sort.SliceStable(x, func(i, j int) bool { return cost(x[i]) < cost(x[j]) })
		return x
	case orNode:
		for i := range x {
			x[i] = order(x[i])
		}
		sort.SliceStable(x, func(i, j int) bool { return cost(x[i]) < cost(x[j]) })
		return x
	case notNode:
		return notNode{order(x.n)}
	}
	return n
}

type andNode []node

func (n andNode) eval(v *view, i int) bool {
	for _, c := range n {
		if !c.eval(v, i) {
			return false
		}
	}
	return true
}

type orNode []node

func (n orNode) eval(v *view, i int) bool {
	for _, c := range n {
		if c.eval(v, i) {
			return true
		}
	}
	return false
}

type notNode struct{ n node }

func (n notNode) eval(v *view, i int) bool { return !n.n.eval(v, i) }

type constNode bool

func (n constNode) eval(*view, int) bool { return bool(n) }

func (f *fieldMatch) eval(v *view, i int) bool {
	c := v.col(f.slot)
	m := f.match(v, c, i)
	if f.neg {
		return !m
	}
	return m
}

func (f *fieldMatch) match(v *view, c *colData, i int) bool {
	if f.all {
		for k := range f.vals {
			if !f.vals[k].match(v, c, i) {
				return false
			}
		}
		return true
	}
	for k := range f.vals {
		if f.vals[k].match(v, c, i) {
			return true
		}
	}
	return false
}

func (m *valueMatcher) match(v *view, c *colData, i int) bool {
	switch m.op {
	case opExists:
		return c.present[i]
	case opAbsent:
		return !c.present[i]
	case opNull:
		return !c.present[i] || c.vals[i] == ""
	}
	if !c.present[i] {
		return false
	}
	switch m.op {
	case opRe:
		s := c.vals[i]
		if !m.cased {
			s = v.lower(c, i)
		}
		if m.pre != "" {
			t := s
			if m.preFold {
				t = v.lower(c, i)
			}
			if !strings.Contains(t, m.pre) {
				return false
			}
		}
		return m.re.MatchString(s)
	case opCIDR:
		a, err := netip.ParseAddr(c.vals[i])
		return err == nil && m.pfx.Contains(a.Unmap())
	case opLT, opLTE, opGT, opGTE:
		n, ok := c.number(i)
		return ok && compare(m.op, n, m.num)
	case opTime:
		n, ok := timePart(c.vals[i], m.part)
		return ok && compare(m.cmp, n, m.num)
	case opFieldRef:
		o := v.col(m.ref)
		if !o.present[i] {
			return false
		}
		if m.cased {
			return c.vals[i] == o.vals[i]
		}
		return strings.EqualFold(c.vals[i], o.vals[i])
	}
	s := c.vals[i]
	if !m.cased {
		s = v.lower(c, i)
	}
	switch m.op {
	case opEq:
		return s == m.s
	case opPrefix:
		return strings.HasPrefix(s, m.s)
	case opSuffix:
		return strings.HasSuffix(s, m.s)
	case opContains:
		return strings.Contains(s, m.s)
	case opGlob:
		return m.glob.match(s)
	}
	return false
}

// slotDef is a field as a table reads it: one column, or columns and a
// derivation.
type slotDef struct {
	spec fieldSpec
}

// colData is one field of one batch, read once for every rule: values,
// presence, and (lazily) lowered values and numbers.
type colData struct {
	ready   bool
	vals    []string
	present []bool
	lowered bool
	low     []string
	nums    []float64
	numOK   []bool
	numDone bool
}

func (c *colData) number(i int) (float64, bool) {
	if !c.numDone {
		c.numDone = true
		c.nums = resize(c.nums, len(c.vals))
		c.numOK = resize(c.numOK, len(c.vals))
		for k, s := range c.vals {
			c.nums[k], c.numOK[k] = 0, false
			if c.present[k] {
				if n, err := strconv.ParseFloat(strings.TrimSpace(s), 64); err == nil {
					c.nums[k], c.numOK[k] = n, true
				}
			}
		}
	}
	return c.nums[i], c.numOK[i]
}

func resize[T any](s []T, n int) []T {
	if cap(s) < n {
		return make([]T, n)
	}
	return s[:n]
}

// view is the per-batch state of an Evaluator: the fields the batch's rules
// read, materialized on first use.
type view struct {
	rec   arrow.Record
	n     int
	slots []slotDef
	cols  []colData
	// arena holds the lowered strings and derived values of the batch.
	arena []byte
}

func (v *view) reset(rec arrow.Record, slots []slotDef) {
	v.rec, v.n, v.slots = rec, int(rec.NumRows()), slots
	if cap(v.cols) < len(slots) {
		v.cols = make([]colData, len(slots))
	}
	v.cols = v.cols[:len(slots)]
	for i := range v.cols {
		v.cols[i].ready, v.cols[i].lowered, v.cols[i].numDone = false, false, false
	}
	v.arena = v.arena[:0]
}

func (v *view) col(slot int) *colData {
	c := &v.cols[slot]
	if !c.ready {
		v.load(c, v.slots[slot].spec)
	}
	return c
}

// lower returns row i of c in lower case (all rows lowered on first use).
func (v *view) lower(c *colData, i int) string {
	if !c.lowered {
		c.lowered = true
		c.low = resize(c.low, len(c.vals))
		for k, s := range c.vals {
			c.low[k] = v.toLower(s)
		}
	}
	return c.low[i]
}

// toLower lowers s into the batch's arena; s itself when already lower.
func (v *view) toLower(s string) string {
	upper := false
	for k := 0; k < len(s); k++ {
		b := s[k]
		if b >= utf8.RuneSelf {
			return strings.ToLower(s)
		}
		if 'A' <= b && b <= 'Z' {
			upper = true
		}
	}
	if !upper {
		return s
	}
	if cap(v.arena)-len(v.arena) < len(s) {
		// a new arena: strings handed out keep pointing into the old one
		v.arena = make([]byte, 0, max(64<<10, 2*len(s)))
	}
	start := len(v.arena)
	for k := 0; k < len(s); k++ {
		b := s[k]
		if 'A' <= b && b <= 'Z' {
			b += 'a' - 'A'
		}
		v.arena = append(v.arena, b)
	}
	return unsafe.String(&v.arena[start], len(s))
}

func (v *view) load(c *colData, spec fieldSpec) {
	c.ready = true
	c.vals = resize(c.vals, v.n)
	c.present = resize(c.present, v.n)
	if spec.derive == nil {
		readColumn(v.rec, spec.col, c.vals, c.present)
		return
	}
	deps := make([]colData, len(spec.cols))
	for k, name := range spec.cols {
		deps[k].vals = make([]string, v.n)
		deps[k].present = make([]bool, v.n)
		readColumn(v.rec, name, deps[k].vals, deps[k].present)
	}
	args := make([]string, len(spec.cols))
	for i := 0; i < v.n; i++ {
		for k := range deps {
			args[k] = deps[k].vals[i]
		}
		c.vals[i], c.present[i] = safeDerive(spec.derive, args)
	}
}

// safeDerive is derive with a panic (a value no derivation foresaw) read as
// an absent field: one odd row never stops the stage.
func safeDerive(derive func([]string) (string, bool), args []string) (val string, ok bool) {
	defer func() {
		if recover() != nil {
			val, ok = "", false
		}
	}()
	return derive(args)
}

// readColumn reads a column of any normalized type as strings (numbers in
// decimal, booleans as true/false, times in RFC 3339); a missing column
// reads as absent.
func readColumn(rec arrow.Record, name string, vals []string, present []bool) {
	clear(vals)
	clear(present)
	idx := rec.Schema().FieldIndices(name)
	if len(idx) == 0 {
		return
	}
	arr := rec.Column(idx[0])
	n := len(vals)
	switch a := arr.(type) {
	case *array.String, *array.Dictionary:
		s := normalize.Strings(rec, name)
		for i := 0; i < n; i++ {
			if !s.IsNull(i) {
				vals[i], present[i] = s.Value(i), true
			}
		}
	case *array.Int64, *array.Int32:
		c := normalize.Int64s(rec, name)
		for i := 0; i < n; i++ {
			if !c.IsNull(i) {
				vals[i], present[i] = strconv.FormatInt(c.Value(i), 10), true
			}
		}
	case *array.Boolean:
		for i := 0; i < n; i++ {
			if !a.IsNull(i) {
				vals[i], present[i] = strconv.FormatBool(a.Value(i)), true
			}
		}
	case *array.Timestamp:
		c := normalize.Times(rec, name)
		for i := 0; i < n; i++ {
			if !c.IsNull(i) {
				vals[i], present[i] = c.Value(i).Format(time.RFC3339Nano), true
			}
		}
	}
}

// Evaluator runs a rule set over batches. It keeps per-batch scratch, so
// each goroutine uses its own; the Set behind it is shared.
type Evaluator struct {
	set *Set
	v   view
}

// NewEvaluator returns an evaluator of the set's rules.
func (s *Set) NewEvaluator() *Evaluator { return &Evaluator{set: s} }

// value reads a field slot of a row of the batch being evaluated (from a
// match callback).
func (e *Evaluator) value(slot, row int) (string, bool) {
	if slot >= len(e.v.slots) {
		return "", false
	}
	c := e.v.col(slot)
	return c.vals[row], c.present[row]
}

// Eval runs the rules of b's table over every row of b and calls match for
// each rule that matches a row, rows in order.
func (e *Evaluator) Eval(b normalize.Batch, match func(r *Rule, row int)) {
	t := e.set.tables[b.Table]
	if t == nil || b.Record == nil || b.Record.NumRows() == 0 {
		return
	}
	e.v.reset(b.Record, t.slots)
	for i := 0; i < e.v.n; i++ {
		for _, r := range t.rules {
			if r.cond.eval(&e.v, i) {
				match(r, i)
			}
		}
	}
	e.v.rec = nil
}

// compare applies a numeric comparison (opEq, opLT, opLTE, opGT, opGTE).
func compare(o op, n, num float64) bool {
	switch o {
	case opLT:
		return n < num
	case opLTE:
		return n <= num
	case opGT:
		return n > num
	case opGTE:
		return n >= num
	}
	return n == num
}

// timeLayouts are the date forms a field may hold: RFC 3339 (how time
// columns read), and the zone-less forms of Windows events.
var timeLayouts = []string{time.RFC3339Nano, "2006-01-02 15:04:05.999999999", "2006-01-02T15:04:05.999999999", "2006-01-02"}

// timePart extracts a component of a date as the time modifiers name it
// (week: the ISO week), in the date's own zone.
func timePart(s, part string) (float64, bool) {
	var t time.Time
	var err error
	for _, l := range timeLayouts {
		if t, err = time.Parse(l, s); err == nil {
			break
		}
	}
	if err != nil {
		return 0, false
	}
	switch part {
	case "minute":
		return float64(t.Minute()), true
	case "hour":
		return float64(t.Hour()), true
	case "day":
		return float64(t.Day()), true
	case "week":
		_, w := t.ISOWeek()
		return float64(w), true
	case "month":
		return float64(t.Month()), true
	case "year":
		return float64(t.Year()), true
	}
	return 0, false
}
