package kql

import (
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// parser reads tokens; expressions are emitted directly as DuckDB SQL.
// Tabular expressions (the query, lets, join and in subqueries) append
// their stages to ctes, one CTE per operator, so they compose as the KQL
// pipe does.
type parser struct {
	toks []token
	i    int

	ctes []cte
	// scalars are scalar lets, inlined where their name is used.
	scalars map[string]scalarLet
	// tables maps tabular lets to the CTE holding their rows.
	tables map[string]string
	// lists marks CTEs of one row and one list column (summarize
	// make_set/make_list without by), which "in" unnests.
	lists map[string]bool
	// known are the tables that exist, for wildcard table names.
	known []string
	// describe, where set, gives the columns of a query over the tables.
	describe func(sql string) ([]Column, error)
	// notes say what a translation leaves out (render).
	notes *[]string
	// funcs are the user-defined functions (let f = (...) {...}).
	funcs map[string]*function
	calls int // how deep in user function calls
	// values, where set, runs a query and gives its first column.
	values func(sql string) ([]string, error)
}

// Values lets Translate read values from the data (the keys bag_unpack
// makes columns of, the values pivot does) by running a query over the
// same tables and giving its first column as text.
func Values(f func(sql string) ([]string, error)) Option {
	return func(p *parser) {
		p.values = func(q string) ([]string, error) { return f(p.with(q)) }
	}
}

// Column is a column of a query: its name and DuckDB type.
type Column struct{ Name, Type string }

// Describe lets Translate ask for the columns of what it has translated so
// far (a DuckDB DESCRIBE over the same tables), so that a join names its
// columns as Kusto does (a right column whose name the left has is Name1).
func Describe(f func(sql string) ([]Column, error)) Option {
	return func(p *parser) { p.describe = f }
}

// Notes receives what a translation leaves out, each a line for the
// analyst (render draws no chart: the answer is its table).
func Notes(n *[]string) Option { return func(p *parser) { p.notes = n } }

func (p *parser) note(s string) {
	if p.notes != nil {
		*p.notes = append(*p.notes, s)
	}
}

// columns are the columns of a CTE, or nil without Describe.
func (p *parser) columns(cte string) ([]Column, error) {
	if p.describe == nil {
		return nil, nil
	}
	return p.describe(p.with("SELECT * FROM " + cte))
}

// with prefixes a statement with the CTEs so far.
func (p *parser) with(final string) string {
	if len(p.ctes) == 0 {
		return final
	}
	parts := make([]string, len(p.ctes))
	for i, c := range p.ctes {
		parts[i] = c.name + " AS (" + c.sql + ")"
	}
	return "WITH " + strings.Join(parts, ", ") + " " + final
}

// Option configures Translate.
type Option func(*parser)

// Tables names the tables that exist: a wildcard table name (union
// Device*) stands for those of them that match it.
func Tables(names ...string) Option { return func(p *parser) { p.known = names } }

type cte struct{ name, sql string }

type scalarLet struct {
	sql string
	// items are the elements of a dynamic([...]) list, for in and has_any.
	items []string
}

func (p *parser) peek() token { return p.toks[p.i] }
func (p *parser) next() token {
	t := p.toks[p.i]
	if t.kind != tEOF {
		p.i++
	}
	return t
}
func (p *parser) ahead(n int) token {
	if p.i+n < len(p.toks) {
		return p.toks[p.i+n]
	}
	return p.toks[len(p.toks)-1]
}

func (p *parser) is(text string) bool {
	t := p.peek()
	return (t.kind == tOp || t.kind == tIdent) && strings.EqualFold(t.text, text)
}

func (p *parser) accept(text string) bool {
	if p.is(text) {
		p.i++
		return true
	}
	return false
}

func (p *parser) expect(text string) error {
	if !p.accept(text) {
		t := p.peek()
		if t.kind == tEOF {
			return fmt.Errorf("kql: expected %q at %s, found the end of the query", text, t.pos())
		}
		return fmt.Errorf("kql: expected %q at %s, found %q", text, t.pos(), t.text)
	}
	return nil
}

func unsupported(what string, t token) error {
	return fmt.Errorf("kql: unsupported %s at %s", what, t.pos())
}

func sqlString(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }
func ident(s string) string     { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }

// literal returns the value of a SQL string literal made by sqlString.
func literal(sql string) (string, bool) {
	if len(sql) < 2 || sql[0] != '\'' || sql[len(sql)-1] != '\'' {
		return "", false
	}
	in := sql[1 : len(sql)-1]
	if strings.Contains(strings.ReplaceAll(in, "''", ""), "'") {
		return "", false
	}
	return strings.ReplaceAll(in, "''", "'"), true
}

// expr := or
func (p *parser) expr() (string, error) { return p.binary(0) }

var levels = []string{"or", "and"}

func (p *parser) binary(level int) (string, error) {
	if level == len(levels) {
		return p.comparison()
	}
	left, err := p.binary(level + 1)
	if err != nil {
		return "", err
	}
	for p.is(levels[level]) {
		op := strings.ToUpper(p.next().text)
		right, err := p.binary(level + 1)
		if err != nil {
			return "", err
		}
		left = "(" + left + " " + op + " " + right + ")"
	}
	return left, nil
}

// termRE builds the regular expression for KQL's "has": the needle must
// start (and end) on term boundaries where it starts (ends) with a term
// character (letters, digits, underscore). hasprefix checks only the
// start, hassuffix only the end.
func termRE(needle string, cs, start, end bool) string {
	class := "[^a-z0-9_]"
	if cs {
		class = "[^A-Za-z0-9_]"
	} else {
		needle = strings.ToLower(needle)
	}
	word := func(b byte) bool {
		return b == '_' || b >= '0' && b <= '9' || b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z'
	}
	re := regexp.QuoteMeta(needle)
	if start && needle != "" && word(needle[0]) {
		re = "(^|" + class + ")" + re
	}
	if end && needle != "" && word(needle[len(needle)-1]) {
		re += "($|" + class + ")"
	}
	return re
}

func termSQL(left, right string, cs, start, end bool) string {
	if !cs {
		left = "lower(" + left + ")"
	}
	if v, ok := literal(right); ok {
		return "regexp_matches(" + left + ", " + sqlString(termRE(v, cs, start, end)) + ")"
	}
	class := "[^a-z0-9_]"
	if cs {
		class = "[^A-Za-z0-9_]"
	} else {
		right = "lower(" + right + ")"
	}
	re := "regexp_escape(" + right + ")"
	if start {
		re = "'(^|" + class + ")' || " + re
	}
	if end {
		re += " || '($|" + class + ")'"
	}
	return "regexp_matches(" + left + ", " + re + ")"
}

var numberRE = regexp.MustCompile(`^\(?-?[0-9]+(\.[0-9]+)?\)?$`)

// comparable is e as compared with other: where other is a string (number)
// literal, e must be a string (number), or the query fails as it does in
// Kusto; DuckDB would cast one to the other.
func comparable(e, other string) string {
	_, eLit := literal(e)
	if eLit || numberRE.MatchString(e) {
		return e
	}
	if _, ok := literal(other); ok {
		return "kql_string(" + e + ")"
	}
	if numberRE.MatchString(other) {
		if strings.HasPrefix(e, "json_extract_string(") {
			return "TRY_CAST(" + e + " AS DOUBLE)" // a dynamic member holds a number
		}
		return "kql_number(" + e + ")"
	}
	return e
}

// str is a value as a string operator sees it: Kusto's tostring(), so an
// absent string is "" and a list its JSON text.
func str(e string) string {
	if _, ok := literal(e); ok {
		return e
	}
	return "kql_tostring(" + e + ")"
}

// operand skips an operator and reads its right side.
func (p *parser) operand() (string, error) {
	p.next()
	return p.additive()
}

func (p *parser) comparison() (string, error) {
	left, err := p.additive()
	if err != nil {
		return "", err
	}
	neg := false
	if t := p.peek(); t.kind == tOp && t.text == "!" && p.ahead(1).kind == tIdent { // !has, !contains, !in ...
		p.i++
		neg = true
	}
	return p.comparisonOp(left, neg)
}

// comparisonOp reads the operator at p (after any "!") and its right side.
func (p *parser) comparisonOp(left string, neg bool) (string, error) {
	t := p.peek()
	op := strings.ToLower(t.text)
	if t.kind != tOp && t.kind != tIdent {
		return left, nil
	}
	wrap := func(s string) (string, error) {
		if neg {
			return "(NOT " + s + ")", nil
		}
		return s, nil
	}
	switch op {
	case "==", "!=", "<", ">", "<=", ">=":
		right, err := p.operand()
		if err != nil {
			return "", err
		}
		sqlOp := map[string]string{"==": "=", "!=": "<>"}[op]
		if sqlOp == "" {
			sqlOp = op
		}
		left, right = comparable(left, right), comparable(right, left)
		return "(" + left + " " + sqlOp + " " + right + ")", nil
	case "=~", "!~":
		right, err := p.operand()
		if err != nil {
			return "", err
		}
		s := "(lower(" + str(left) + ") = lower(" + str(right) + "))"
		if op == "!~" {
			s = "(NOT " + s + ")"
		}
		return s, nil
	case "has", "has_cs", "hasprefix", "hasprefix_cs", "hassuffix", "hassuffix_cs":
		right, err := p.operand()
		if err != nil {
			return "", err
		}
		cs := strings.HasSuffix(op, "_cs")
		return wrap(termSQL(str(left), right, cs, strings.TrimSuffix(op, "_cs") != "hassuffix", strings.TrimSuffix(op, "_cs") != "hasprefix"))
	case "notcontains", "notcontains_cs", "nothas", "nothas_cs":
		neg, op = !neg, strings.TrimPrefix(op, "not")
		p.toks[p.i].text = op
		return p.comparisonOp(left, neg)
	case "contains", "contains_cs", "startswith", "startswith_cs", "endswith", "endswith_cs":
		right, err := p.operand()
		if err != nil {
			return "", err
		}
		left = str(left)
		base := strings.TrimSuffix(op, "_cs")
		fn := map[string]string{"contains": "contains", "startswith": "starts_with", "endswith": "ends_with"}[base]
		if strings.HasSuffix(op, "_cs") {
			return wrap(fn + "(" + left + ", " + right + ")")
		}
		return wrap(fn + "(lower(" + left + "), lower(" + right + "))")
	case "matches":
		p.next()
		if err := p.expect("regex"); err != nil {
			return "", err
		}
		right, err := p.additive()
		if err != nil {
			return "", err
		}
		return wrap("regexp_matches(" + str(left) + ", " + right + ")")
	case "between":
		p.next()
		if err := p.expect("("); err != nil {
			return "", err
		}
		lo, err := p.additive()
		if err != nil {
			return "", err
		}
		if err := p.expect(".."); err != nil {
			return "", err
		}
		hi, err := p.additive()
		if err != nil {
			return "", err
		}
		if err := p.expect(")"); err != nil {
			return "", err
		}
		if isInterval(hi) && !isInterval(lo) {
			hi = "(" + lo + " + " + hi + ")" // datetime .. timespan: a window after lo
		}
		return wrap("(" + left + " BETWEEN " + lo + " AND " + hi + ")")
	case "in", "in~":
		p.next()
		list, sub, err := p.list()
		if err != nil {
			return "", err
		}
		if sub != "" {
			if op == "in~" {
				return wrap("(lower(" + str(left) + ") IN (SELECT lower(x) FROM (" + sub + ") AS l(x)))")
			}
			return wrap("(" + left + " IN (" + sub + "))")
		}
		if op == "in~" {
			for i := range list {
				list[i] = "lower(" + list[i] + ")"
			}
			left = "lower(" + str(left) + ")"
		}
		if len(list) == 0 {
			return wrap("FALSE")
		}
		return wrap("(" + left + " IN (" + strings.Join(list, ", ") + "))")
	case "has_any", "has_all", "has_any_cs", "has_all_cs":
		p.next()
		list, sub, err := p.list()
		if err != nil {
			return "", err
		}
		if sub != "" {
			return "", unsupported(op+" over a tabular expression", t)
		}
		parts := make([]string, len(list))
		for i, v := range list {
			parts[i] = termSQL(str(left), v, op == "has_any_cs" || op == "has_all_cs", true, true)
		}
		if len(parts) == 0 {
			return wrap(map[string]string{"has_any": "FALSE", "has_all": "TRUE"}[strings.TrimSuffix(op, "_cs")])
		}
		join := map[string]string{"has_any": " OR ", "has_all": " AND "}[strings.TrimSuffix(op, "_cs")]
		return wrap("(" + strings.Join(parts, join) + ")")
	case "like", "contains_any":
		return "", unsupported("operator "+op, t)
	}
	if neg {
		return "", unsupported("operator !"+op, t)
	}
	return left, nil
}

// list reads the parenthesised right side of in/has_any: values (a
// dynamic let expands to its elements), or a tabular expression, returned
// as a subquery over its first column.
func (p *parser) list() (vals []string, sub string, err error) {
	if err := p.expect("("); err != nil {
		return nil, "", err
	}
	t := p.peek()
	if t.kind == tIdent && (p.ahead(1).text == "|" || p.ahead(1).text == ")" && p.tables[t.text] != "") {
		if _, scalar := p.scalars[t.text]; !scalar {
			cte, err := p.pipeline()
			if err != nil {
				return nil, "", err
			}
			if err := p.expect(")"); err != nil {
				return nil, "", err
			}
			// Kusto reads the first column.
			if p.lists[cte] {
				return nil, "SELECT unnest(#1) FROM " + cte, nil
			}
			return nil, "SELECT #1 FROM " + cte, nil
		}
	}
	for !p.is(")") {
		if p.peek().kind == tEOF {
			return nil, "", fmt.Errorf("kql: unterminated list at %s", p.peek().pos())
		}
		if v := p.peek(); v.kind == tIdent && p.scalars[v.text].items != nil && (p.ahead(1).text == "," || p.ahead(1).text == ")") {
			p.next()
			vals = append(vals, p.scalars[v.text].items...)
		} else {
			v, err := p.additive()
			if err != nil {
				return nil, "", err
			}
			vals = append(vals, v)
		}
		if !p.accept(",") {
			break
		}
	}
	return vals, "", p.expect(")")
}

func (p *parser) additive() (string, error) {
	left, err := p.unary()
	if err != nil {
		return "", err
	}
	for p.is("+") || p.is("-") || p.is("*") || p.is("/") || p.is("%") {
		op := p.next().text
		right, err := p.unary()
		if err != nil {
			return "", err
		}
		left = "(" + left + " " + op + " " + right + ")"
	}
	return left, nil
}

func (p *parser) unary() (string, error) {
	t := p.peek()
	switch {
	case t.kind == tIdent && strings.EqualFold(t.text, "not") && p.ahead(1).text == "(":
		p.next()
		e, err := p.postfix()
		return "(NOT " + e + ")", err
	case t.kind == tOp && t.text == "-":
		p.next()
		e, err := p.postfix()
		return "(-" + e + ")", err
	}
	return p.postfix()
}

func timespan(t token) (string, error) {
	units := map[string]string{"d": "day", "day": "day", "days": "day", "h": "hour", "hr": "hour", "hrs": "hour", "hour": "hour", "hours": "hour",
		"m": "minute", "min": "minute", "minute": "minute", "minutes": "minute", "s": "second", "sec": "second", "second": "second", "seconds": "second",
		"ms": "millisecond", "milli": "millisecond", "millis": "millisecond", "millisecond": "millisecond", "milliseconds": "millisecond",
		"microsecond": "microsecond", "microseconds": "microsecond"}
	i := strings.IndexFunc(t.text, func(r rune) bool { return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' })
	n, unit := t.text[:i], units[strings.ToLower(t.text[i:])]
	if u := strings.ToLower(t.text[i:]); u == "tick" || u == "ticks" {
		// A tick is 100 ns; DuckDB's intervals count microseconds.
		v, err := strconv.ParseFloat(n, 64)
		if err != nil {
			return "", unsupported("timespan "+t.text, t)
		}
		return fmt.Sprintf("INTERVAL '%d microsecond'", int64(math.Ceil(v/10))), nil
	}
	if _, err := strconv.ParseFloat(n, 64); err != nil || unit == "" {
		return "", unsupported("timespan "+t.text, t)
	}
	return fmt.Sprintf("INTERVAL '%s %s'", n, unit), nil
}

var dateLayouts = []string{time.RFC3339Nano, "2006-01-02T15:04:05.999999999", "2006-01-02 15:04:05.999999999Z07:00",
	"2006-01-02 15:04:05.999999999", "2006-01-02T15:04", "2006-01-02 15:04", "2006-01-02", "01/02/2006 15:04:05", "01/02/2006"}

// datetime translates the inside of datetime(...): UTC unless it says
// otherwise, as in KQL.
func datetime(t token) (string, error) {
	if strings.EqualFold(t.text, "null") {
		return "CAST(NULL AS TIMESTAMPTZ)", nil
	}
	for _, l := range dateLayouts {
		if v, err := time.Parse(l, t.text); err == nil {
			return "TIMESTAMPTZ '" + v.UTC().Format("2006-01-02 15:04:05.999999") + "+00'", nil
		}
	}
	return "", unsupported("datetime literal "+strconv.Quote(t.text), t)
}

// postfix reads a primary and then member accesses on dynamic values
// (x.a, x['a'], x[0]) as one JSON path; an index on split() is a list index.
func (p *parser) postfix() (string, error) {
	start := p.peek()
	e, err := p.primary()
	if err != nil {
		return "", err
	}
	if strings.EqualFold(start.text, "split") && p.is("[") {
		p.next()
		idx := p.next()
		sign := 1
		if idx.kind == tOp && idx.text == "-" {
			sign, idx = -1, p.next()
		}
		if idx.kind != tNumber {
			return "", unsupported("non-constant index on split()", idx)
		}
		n, _ := strconv.Atoi(idx.text)
		if err := p.expect("]"); err != nil {
			return "", err
		}
		if sign < 0 {
			return fmt.Sprintf("%s[-%d]", e, n), nil // DuckDB counts from the end too
		}
		return fmt.Sprintf("%s[%d]", e, n+1), nil
	}
	path := "$"
	for {
		if p.is(".") && p.ahead(1).kind == tIdent {
			p.next()
			path += "." + jsonKey(p.next().text)
			continue
		}
		if p.is("[") {
			at := p.next()
			k := p.next()
			switch {
			case k.kind == tString:
				path += "." + jsonKey(k.text)
			case k.kind == tNumber:
				path += "[" + k.text + "]"
			case k.kind == tOp && k.text == "-" && p.peek().kind == tNumber:
				path += "[#-" + p.next().text + "]"
			default:
				return "", unsupported("non-constant index", at)
			}
			if err := p.expect("]"); err != nil {
				return "", err
			}
			continue
		}
		break
	}
	if path == "$" {
		return e, nil
	}
	return "json_extract_string(" + e + ", " + sqlString(path) + ")", nil
}

var plainKey = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

func jsonKey(k string) string {
	if plainKey.MatchString(k) {
		return k
	}
	return `"` + strings.ReplaceAll(k, `"`, `\"`) + `"`
}

func (p *parser) primary() (string, error) {
	t := p.next()
	switch t.kind {
	case tString:
		// Adjacent string literals are one literal, as in Kusto.
		v := t.text
		for p.peek().kind == tString {
			v += p.next().text
		}
		return sqlString(v), nil
	case tNumber:
		return t.text, nil
	case tTimespan:
		return timespan(t)
	case tDatetime:
		return datetime(t)
	case tOp:
		if t.text == "(" {
			e, err := p.expr()
			if err != nil {
				return "", err
			}
			return "(" + e + ")", p.expect(")")
		}
		return "", fmt.Errorf("kql: unexpected %q at %s", t.text, t.pos())
	case tIdent:
		switch strings.ToLower(t.text) {
		case "true", "false", "null":
			return strings.ToUpper(t.text), nil
		case "dynamic":
			if p.is("(") {
				_, sql, err := p.dynamic(t)
				return sql, err
			}
		case "typeof":
			if p.is("(") {
				return p.typeOf(t)
			}
		case "toscalar":
			if p.is("(") {
				p.next()
				cte, err := p.pipeline()
				if err != nil {
					return "", err
				}
				return "(SELECT * FROM " + cte + " LIMIT 1)", p.expect(")")
			}
		}
		if p.is("(") {
			if fn, ok := p.funcs[t.text]; ok {
				if fn.tabular {
					return "", fmt.Errorf("kql: %s at %s is a tabular function, called where a value is wanted", t.text, t.pos())
				}
				e, err := p.callFunction(t, fn, "")
				return "(" + e + ")", err
			}
			return p.call(t)
		}
		if s, ok := p.scalars[t.text]; ok {
			return "(" + s.sql + ")", nil
		}
		return ident(t.text), nil
	}
	return "", fmt.Errorf("kql: unexpected end of query at %s", t.pos())
}

// dynamic reads dynamic([...]) (a list of literals) or dynamic(null).
func (p *parser) dynamic(name token) (items []string, sql string, err error) {
	p.next() // (
	if p.accept("null") {
		return nil, "NULL", p.expect(")")
	}
	if p.accept("{") {
		sql, err := p.bag()
		if err != nil {
			return nil, "", err
		}
		return nil, sql, p.expect(")")
	}
	if !p.accept("[") {
		return nil, "", unsupported("dynamic() other than a list or a property bag", name)
	}
	items, err = p.items("]")
	if err != nil {
		return nil, "", err
	}
	return items, "[" + strings.Join(items, ", ") + "]", p.expect(")")
}

// bag reads the inside of a dynamic property bag {"k": v, ...} after its
// brace, as a JSON object.
func (p *parser) bag() (string, error) {
	var kv []string
	for !p.is("}") {
		k := p.next()
		if k.kind != tString && k.kind != tIdent {
			return "", fmt.Errorf("kql: expected a property name at %s", k.pos())
		}
		if err := p.expect(":"); err != nil {
			return "", err
		}
		var v string
		var err error
		switch {
		case p.accept("{"):
			v, err = p.bag()
		case p.accept("["):
			var items []string
			items, err = p.items("]")
			v = "[" + strings.Join(items, ", ") + "]"
		default:
			v, err = p.additive()
		}
		if err != nil {
			return "", err
		}
		kv = append(kv, sqlString(k.text), v)
		if !p.accept(",") {
			break
		}
	}
	return "json_object(" + strings.Join(kv, ", ") + ")", p.expect("}")
}

// items reads values separated by commas up to the closing text, and
// consumes it.
func (p *parser) items(closing string) ([]string, error) {
	items := []string{}
	for !p.is(closing) {
		v, err := p.additive()
		if err != nil {
			return nil, err
		}
		items = append(items, v)
		if !p.accept(",") {
			break
		}
	}
	return items, p.expect(closing)
}
