package kql

import (
	"fmt"
	"strconv"
	"strings"
)

// Translate returns the DuckDB SQL for a KQL query: each tabular operator
// becomes one CTE reading the previous one, so operators compose exactly as
// the KQL pipe does; tabular lets and join or in subqueries are CTEs of the
// same WITH, scalar lets are inlined.
//
// Where DuckDB differs from Kusto: a join keeps one copy of "on Col" key
// columns, and other columns present on both sides are named Col_1 on the
// right (Kusto: Col1); dynamic member access yields strings (as tostring()
// would); mv-expand yields JSON values.
func Translate(q string, opts ...Option) (string, error) {
	toks, err := lex(q)
	if err != nil {
		return "", err
	}
	p := &parser{toks: toks, scalars: map[string]scalarLet{}, tables: map[string]string{}, lists: map[string]bool{}}
	for _, o := range opts {
		o(p)
	}
	for p.is("let") {
		if err := p.let(); err != nil {
			return "", err
		}
	}
	last, err := p.pipeline()
	if err != nil {
		return "", err
	}
	for p.accept(";") {
	}
	if t := p.peek(); t.kind != tEOF {
		if t.kind == tIdent && p.ahead(1).kind == tOp && p.ahead(1).text == "=" {
			return "", unsupported("statement "+t.text, t)
		}
		return "", fmt.Errorf("kql: unexpected %q at %s", t.text, t.pos())
	}
	// The last stage is the statement itself, so that a final sort orders
	// the answer (an ORDER BY inside a CTE need not survive it).
	final := "SELECT * FROM " + last
	if n := len(p.ctes); n > 0 && p.ctes[n-1].name == last {
		final, p.ctes = p.ctes[n-1].sql, p.ctes[:n-1]
	}
	return p.with(final), nil
}

// let reads one let statement.
func (p *parser) let() error {
	p.next() // let
	name := p.next()
	if name.kind != tIdent {
		return fmt.Errorf("kql: expected a name after let at %s", name.pos())
	}
	if err := p.expect("="); err != nil {
		return err
	}
	if p.is("(") && p.letFunction() {
		if err := p.defineFunction(name); err != nil {
			return err
		}
		if !p.accept(";") {
			return fmt.Errorf("kql: expected \";\" after let %s at %s", name.text, p.peek().pos())
		}
		return nil
	}
	if p.is("view") && p.ahead(1).text == "(" {
		p.next() // a view is a function without parameters
		if err := p.defineFunction(name); err != nil {
			return err
		}
		if !p.accept(";") {
			return fmt.Errorf("kql: expected \";\" after let %s at %s", name.text, p.peek().pos())
		}
		return nil
	}
	if fn, ok := p.isFunction(); ok && fn.tabular {
		cte, err := p.pipeline()
		if err != nil {
			return err
		}
		p.tables[name.text] = cte
		delete(p.scalars, name.text)
		if !p.accept(";") {
			return fmt.Errorf("kql: expected \";\" after let %s at %s", name.text, p.peek().pos())
		}
		return nil
	}
	if p.tabular() {
		cte, err := p.pipeline()
		if err != nil {
			return err
		}
		p.tables[name.text] = cte
		delete(p.scalars, name.text)
	} else if p.is("pack_array") && p.ahead(1).text == "(" && p.ahead(2).text != ")" {
		p.next()
		p.next()
		items, err := p.items(")")
		if err != nil {
			return err
		}
		p.scalars[name.text] = scalarLet{sql: "[" + strings.Join(items, ", ") + "]", items: items}
	} else if p.is("dynamic") && p.ahead(1).text == "(" {
		items, sql, err := p.dynamic(p.next())
		if err != nil {
			return err
		}
		p.scalars[name.text] = scalarLet{sql: sql, items: items}
	} else {
		e, err := p.expr()
		if err != nil {
			return err
		}
		p.scalars[name.text] = scalarLet{sql: e}
		delete(p.tables, name.text)
	}
	if !p.accept(";") {
		t := p.peek()
		return fmt.Errorf("kql: expected \";\" after let %s at %s", name.text, t.pos())
	}
	return nil
}

// letFunction says whether "(" starts a function's parameter list:
// "()" or "(name: type ...".
func (p *parser) letFunction() bool {
	a, b := p.ahead(1), p.ahead(2)
	return a.text == ")" || a.kind == tIdent && b.kind == tOp && b.text == ":"
}

// tabular says whether a let's value (at p) is a tabular expression: a
// name that is not a scalar or a function, optionally in parentheses or
// materialize(), followed by a pipe or the end of the let.
func (p *parser) tabular() bool {
	k := 0
	for {
		t := p.ahead(k)
		if t.kind == tOp && t.text == "(" {
			k++
			continue
		}
		if t.kind == tIdent && strings.EqualFold(t.text, "materialize") && p.ahead(k+1).text == "(" {
			k += 2
			continue
		}
		break
	}
	t, after := p.ahead(k), p.ahead(k+1)
	if t.kind != tIdent {
		return false
	}
	if _, scalar := p.scalars[t.text]; scalar {
		return false
	}
	switch strings.ToLower(t.text) {
	case "true", "false", "null", "dynamic", "toscalar":
		return false
	case "datatable", "union", "range", "print", "search":
		return k == 0 || after.kind != tOp || after.text != "("
	}
	return after.kind == tOp && (after.text == "|" || after.text == ";" || after.text == ")")
}

func (p *parser) addCTE(sql string) string {
	name := fmt.Sprintf("s%d", len(p.ctes))
	p.ctes = append(p.ctes, cte{name, sql})
	return name
}

// source reads the start of a tabular expression: a table, a tabular let,
// or a parenthesised or materialize()d tabular expression.
func (p *parser) source() (string, error) {
	t := p.peek()
	if t.kind == tOp && t.text == "(" {
		p.next()
		cte, err := p.pipeline()
		if err != nil {
			return "", err
		}
		return cte, p.expect(")")
	}
	if t.kind == tIdent && strings.EqualFold(t.text, "materialize") && p.ahead(1).text == "(" {
		p.next()
		return p.source()
	}
	if t.kind == tOp && t.text == "." && strings.EqualFold(p.ahead(1).text, "show") && strings.EqualFold(p.ahead(2).text, "tables") {
		p.i += 3
		if len(p.known) == 0 {
			return p.addCTE(`SELECT CAST(NULL AS VARCHAR) AS "TableName" WHERE false`), nil
		}
		rows := make([]string, len(p.known))
		for i, name := range p.known {
			rows[i] = "(" + sqlString(name) + ")"
		}
		return p.addCTE(`SELECT * FROM (VALUES ` + strings.Join(rows, ", ") + `) AS t("TableName")`), nil
	}
	if t.kind != tIdent {
		if t.kind == tEOF {
			return "", fmt.Errorf("kql: expected a table name at %s, found the end of the query", t.pos())
		}
		return "", fmt.Errorf("kql: expected a table name at %s, found %q", t.pos(), t.text)
	}
	switch strings.ToLower(t.text) {
	case "union":
		p.next()
		return p.union(t, "")
	case "datatable":
		p.next()
		return p.datatable(t)
	case "print":
		p.next()
		return p.print()
	case "range":
		p.next()
		return p.rangeSource()
	case "search":
		p.next()
		return p.search("")
	case "find", "externaldata", "evaluate":
		return "", unsupported("operator "+t.text, t)
	}
	if fn, ok := p.isFunction(); ok {
		p.next()
		if !fn.tabular {
			return "", fmt.Errorf("kql: %s at %s is a scalar function, called where a table is wanted", t.text, t.pos())
		}
		return p.callFunction(t, fn, "")
	}
	p.next()
	if p.is("(") {
		return "", unsupported("function call "+t.text+"() as a table", t)
	}
	if cte, ok := p.tables[t.text]; ok {

		return cte, nil
	}
	return p.addCTE("SELECT * FROM " + ident(t.text)), nil
}

// pipeline reads a tabular expression and returns the CTE of its result.
func (p *parser) pipeline() (string, error) {
	cur, err := p.source()
	if err != nil {
		return "", err
	}
	for p.accept("|") {
		op := p.next()
		isList := false
		sql, err := p.operator(op, cur, &isList)
		if err != nil {
			return "", err
		}
		cur = p.addCTE(sql)
		if isList {
			p.lists[cur] = true
		}
	}
	return cur, nil
}

func (p *parser) operator(op token, prev string, isList *bool) (string, error) {
	switch strings.ToLower(op.text) {
	case "where", "filter":
		e, err := p.expr()
		return "SELECT * FROM " + prev + " WHERE " + e, err
	case "project":
		cols, err := p.assignments(false)
		return "SELECT " + strings.Join(cols, ", ") + " FROM " + prev, err
	case "project-away":
		names, err := p.names()
		return "SELECT * EXCLUDE (" + strings.Join(names, ", ") + ") FROM " + prev, err
	case "project-rename":
		var renames []string
		for {
			to, from := p.next(), token{}
			if to.kind != tIdent {
				return "", fmt.Errorf("kql: expected a column name at %s", to.pos())
			}
			if err := p.expect("="); err != nil {
				return "", err
			}
			if from = p.next(); from.kind != tIdent {
				return "", fmt.Errorf("kql: expected a column name at %s", from.pos())
			}
			renames = append(renames, ident(from.text)+" AS "+ident(to.text))
			if !p.accept(",") {
				break
			}
		}
		return "SELECT * RENAME (" + strings.Join(renames, ", ") + ") FROM " + prev, nil
	case "extend":
		if p.is("(") {
			return "", unsupported("extend of several columns at once", p.peek())
		}
		cols, err := p.assignments(false)
		return "SELECT *, " + strings.Join(cols, ", ") + " FROM " + prev, err
	case "take", "limit":
		n, err := p.count()
		return "SELECT * FROM " + prev + " LIMIT " + n, err
	case "count":
		return "SELECT count(*) AS \"Count\" FROM " + prev, nil
	case "distinct":
		if p.accept("*") {
			return "SELECT DISTINCT * FROM " + prev, nil
		}
		cols, err := p.assignments(false)
		return "SELECT DISTINCT " + strings.Join(cols, ", ") + " FROM " + prev, err
	case "sort", "order":
		if err := p.expect("by"); err != nil {
			return "", err
		}
		keys, err := p.sortKeys()
		return "SELECT * FROM " + prev + " ORDER BY " + keys, err
	case "top":
		n, err := p.count()
		if err != nil {
			return "", err
		}
		if err := p.expect("by"); err != nil {
			return "", err
		}
		keys, err := p.sortKeys()
		return "SELECT * FROM " + prev + " ORDER BY " + keys + " LIMIT " + n, err
	case "summarize":
		return p.summarize(prev, isList)
	case "join":
		return p.join(op, prev)
	case "union":
		return p.unionSQL(op, prev)
	case "lookup":
		return p.lookup(op, prev)
	case "project-reorder", "project-keep":
		return p.reorder(op, prev, strings.EqualFold(op.text, "project-keep"))
	case "serialize":
		if p.is("|") || p.peek().kind == tEOF || p.is(")") || p.is(";") {
			return "SELECT * FROM " + prev, nil
		}
		cols, err := p.assignments(false)
		return "SELECT *, " + strings.Join(cols, ", ") + " FROM " + prev, err
	case "render":
		return p.render(op, prev)
	case "getschema":
		return p.getschema(op, prev)
	case "search":
		return p.search(prev)
	case "make-series":
		return p.makeSeries(op, prev)
	case "top-nested":
		return p.topNested(op, prev)
	case "invoke":
		name := p.next()
		fn, ok := p.funcs[name.text]
		if !ok || !fn.tabular {
			return "", fmt.Errorf("kql: invoke wants a tabular function defined by let at %s, found %q", name.pos(), name.text)
		}
		cte, err := p.callFunction(name, fn, prev)
		return "SELECT * FROM " + cte, err
	case "evaluate":
		return p.evaluate(op, prev)
	case "parse", "parse-where":
		return p.parse(op, prev)
	case "mv-expand", "mvexpand":
		return p.mvExpand(op, prev)
	}
	return "", unsupported("operator "+op.text, op)
}

func (p *parser) names() ([]string, error) {
	var out []string
	for {
		t := p.next()
		if t.kind != tIdent {
			return nil, fmt.Errorf("kql: expected a column name at %s", t.pos())
		}
		if p.is("*") {
			return nil, unsupported("column wildcard", p.peek())
		}
		out = append(out, ident(t.text))
		if !p.accept(",") {
			return out, nil
		}
	}
}

func (p *parser) count() (string, error) {
	t := p.next()
	if t.kind != tNumber {
		return "", fmt.Errorf("kql: expected a row count at %s", t.pos())
	}
	if _, err := strconv.Atoi(t.text); err != nil {
		return "", fmt.Errorf("kql: bad row count %q at %s", t.text, t.pos())
	}
	return t.text, nil
}

// aggNames are KQL's default column names of unnamed aggregates: prefix,
// and whether the argument column's name follows it.
var aggNames = map[string]string{"count": "count_", "countif": "countif_", "dcount": "dcount_", "dcountif": "dcountif_",
	"min": "min_", "max": "max_", "sum": "sum_", "sumif": "sumif_", "avg": "avg_", "make_set": "set_", "makeset": "set_",
	"make_list": "list_", "makelist": "list_", "make_set_if": "set_", "make_list_if": "list_", "any": "any_", "take_any": "any_"}

// assignments reads "a, b = expr, expr" lists. Unnamed expressions are
// named as KQL names them: bin(Col, span) and tostring(Col) keep Col,
// count() is count_, dcount(Col) is dcount_Col, make_set(Col) set_Col...
func (p *parser) assignments(aggregates bool) ([]string, error) {
	var out []string
	for {
		e, err := p.assignment(aggregates)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
		if !p.accept(",") {
			return out, nil
		}
	}
}

// assignment reads one "name = expr" or "expr" of such a list.
func (p *parser) assignment(aggregates bool) (string, error) {
	t := p.peek()
	name := ""
	if t.kind == tIdent && p.ahead(1).kind == tOp && p.ahead(1).text == "=" {
		name = t.text
		p.i += 2
	}
	if p.is("(") && p.ahead(1).kind == tIdent && p.ahead(2).text == "," {
		return "", unsupported("assignment of several columns", p.peek())
	}
	start := p.i
	e, err := p.expr()
	if err != nil {
		return "", err
	}
	if name == "" {
		name = p.defaultName(start, aggregates)
	}
	if name != "" {
		e += " AS " + ident(name)
	}
	return e, nil
}

func (p *parser) defaultName(start int, aggregates bool) string {
	t := p.toks[start]
	if t.kind != tIdent || start+1 >= len(p.toks) || p.toks[start+1].text != "(" {
		return ""
	}
	fn := strings.ToLower(t.text)
	arg := ""
	if a := p.toks[start+2]; a.kind == tIdent && (p.toks[start+3].text == "," || p.toks[start+3].text == ")") {
		arg = a.text
	}
	if aggregates && fn == "tostring" && p.toks[start+2].kind == tIdent && p.toks[start+3].text == "(" {
		return p.defaultName(start+2, true) // tostring(make_set(X)) is set_X
	}
	if aggregates {
		if prefix, ok := aggNames[fn]; ok {
			if fn == "count" && arg != "" {
				return "count_" + arg
			}
			if strings.HasSuffix(prefix, "_") && fn != "count" && fn != "countif" {
				if arg == "" {
					return ""
				}
				return prefix + arg
			}
			return prefix
		}
	}
	switch fn {
	case "bin", "floor", "tostring", "tolower", "toupper", "toint", "tolong", "todouble", "toreal", "todatetime", "startofday":
		return arg
	}
	return ""
}

func (p *parser) summarize(prev string, isList *bool) (string, error) {
	if p.is("arg_max") || p.is("arg_min") || p.is("argmax") || p.is("argmin") {
		at := p.i
		s, err := p.argMax(prev)
		if err != errBeside {
			return s, err
		}
		p.i = at
	}
	var aggs, by []string
	if !p.is("by") {
		var err error
		if aggs, err = p.aggregates(prev); err != nil {
			return "", err
		}
	}
	if p.accept("by") {
		var err error
		if by, err = p.assignments(false); err != nil {
			return "", err
		}
	}
	if len(aggs) == 0 && len(by) == 0 {
		return "", fmt.Errorf("kql: summarize without aggregates or by at %s", p.peek().pos())
	}
	sel := append(append([]string{}, by...), aggs...)
	s := "SELECT " + strings.Join(sel, ", ") + " FROM " + prev
	if len(by) > 0 {
		s += " GROUP BY ALL"
	} else if len(aggs) == 1 && strings.HasPrefix(aggs[0], "list") {
		*isList = true
	}
	return s, nil
}

// argMax reads "arg_max(X, * | cols) by keys": one row per key, the one
// with the largest (arg_min: smallest) X.
func (p *parser) argMax(prev string) (string, error) {
	fn := p.next()
	if err := p.expect("("); err != nil {
		return "", err
	}
	x, err := p.expr()
	if err != nil {
		return "", err
	}
	var cols []string
	star := false
	for p.accept(",") {
		if p.accept("*") {
			star = true
			continue
		}
		c, err := p.assignments(false)
		if err != nil {
			return "", err
		}
		cols = append(cols, c...)
	}
	if err := p.expect(")"); err != nil {
		return "", err
	}
	if p.is(",") {
		return "", errBeside
	}
	var by []string
	if p.accept("by") {
		if by, err = p.assignments(false); err != nil {
			return "", err
		}
	}
	dir := "DESC"
	if strings.EqualFold(fn.text, "arg_min") || strings.EqualFold(fn.text, "argmin") {
		dir = "ASC"
	}
	var part []string
	for _, b := range by {
		if i := strings.LastIndex(b, " AS "); i >= 0 {
			return "", unsupported("computed by keys with "+strings.ToLower(fn.text)+"()", fn)
		}
		part = append(part, b)
	}
	sel := "*"
	if !star {
		sel = strings.Join(append(append(append([]string{}, by...), x), cols...), ", ")
	}
	over := "ORDER BY " + x + " " + dir + " NULLS LAST"
	if len(part) > 0 {
		over = "PARTITION BY " + strings.Join(part, ", ") + " " + over
	}
	return "SELECT " + sel + " FROM " + prev + " QUALIFY row_number() OVER (" + over + ") = 1", nil
}

var joinKinds = map[string]string{"innerunique": "JOIN", "inner": "JOIN", "leftouter": "LEFT JOIN", "rightouter": "RIGHT JOIN",
	"fullouter": "FULL JOIN", "leftsemi": "SEMI JOIN", "leftanti": "ANTI JOIN", "anti": "ANTI JOIN", "leftantisemi": "ANTI JOIN",
	"rightsemi": "SEMI JOIN", "rightanti": "ANTI JOIN", "rightantisemi": "ANTI JOIN", "semi": "SEMI JOIN"}

// join reads "join [kind=K] [hint.x=y] (right) on keys". innerunique (the
// default) keeps one left row per key, as Kusto does.
func (p *parser) join(op token, prev string) (string, error) {
	kind := "innerunique"
	for p.peek().kind == tIdent && p.ahead(1).text == "=" || p.peek().kind == tIdent && strings.HasPrefix(strings.ToLower(p.peek().text), "hint") && p.ahead(1).text == "." {
		k := p.next()
		if strings.EqualFold(k.text, "kind") {
			p.next() // =
			v := p.next()
			kind = strings.ToLower(v.text)
			if _, ok := joinKinds[kind]; !ok {
				return "", unsupported("join kind="+v.text, v)
			}
			continue
		}
		// hint.strategy=shuffle and the like: no meaning here.
		for !p.is("=") && p.peek().kind != tEOF {
			p.next()
		}
		p.next()
		p.next()
	}
	right, k, err := p.joinRight()
	if err != nil {
		return "", err
	}
	using, conds, leftKeys := k.using, k.conds, k.left
	left := prev
	if kind == "innerunique" {
		left = "(SELECT DISTINCT ON (" + strings.Join(leftKeys, ", ") + ") * FROM " + prev + ")"
	}
	on := " ON " + strings.Join(conds, " AND ")
	if strings.HasPrefix(kind, "right") && kind != "rightouter" {
		return "SELECT * FROM " + right + ` AS "$right" ` + joinKinds[kind] + " " + left + ` AS "$left"` + on, nil
	}
	sel := "*"
	if !strings.Contains(kind, "semi") && !strings.Contains(kind, "anti") {
		s, err := p.joinColumns(prev, right, nil)
		if err != nil {
			return "", err
		}
		if s == "" && len(using) == len(conds) {
			on = " USING (" + strings.Join(using, ", ") + ")"
		}
		if s != "" {
			sel = s
		}
	}
	return "SELECT " + sel + " FROM " + left + ` AS "$left" ` + joinKinds[kind] + " " + right + ` AS "$right"` + on, nil
}

// joinColumns is the select list of a join as Kusto names it: every left
// column, then every right column, a right column whose name is taken
// renamed Name1 (Name2 where Name1 is taken too), keys included. It is ""
// without Describe: then DuckDB keeps one copy of "on Col" keys and names
// other duplicates Name_1.
func (p *parser) joinColumns(left, right string, skip map[string]bool) (string, error) {
	lc, err := p.columns(left)
	if err != nil || lc == nil {
		return "", err
	}
	rc, err := p.columns(right)
	if err != nil {
		return "", err
	}
	used := map[string]bool{}
	var sel []string
	for _, c := range lc {
		used[strings.ToLower(c.Name)] = true
		sel = append(sel, `"$left".`+ident(c.Name))
	}
	for _, c := range rc {
		if skip[strings.ToLower(c.Name)] {
			continue
		}
		name := c.Name
		for n := 1; used[strings.ToLower(name)]; n++ {
			name = c.Name + strconv.Itoa(n)
		}
		used[strings.ToLower(name)] = true
		sel = append(sel, `"$right".`+ident(c.Name)+" AS "+ident(name))
	}
	return strings.Join(sel, ", "), nil
}

// keys are a join's "on" keys: the conditions, the left key columns, the
// right ones, and the names of "on Col" keys (the same on both sides).
type keys struct{ conds, left, right, using []string }

// joinRight reads "(right) on keys" of join and lookup.
func (p *parser) joinRight() (string, keys, error) {
	right, err := p.source()
	if err != nil {
		return "", keys{}, err
	}
	if err := p.expect("on"); err != nil {
		return "", keys{}, err
	}
	k, err := p.joinKeys()
	return right, k, err
}

// joinKeys reads "Col, $left.A == $right.B, ..." after on.
func (p *parser) joinKeys() (keys, error) {
	var k keys
	for {
		t := p.peek()
		switch {
		case t.kind == tIdent && (strings.EqualFold(t.text, "$left") || strings.EqualFold(t.text, "$right")):
			a, err := p.sideColumn()
			if err != nil {
				return k, err
			}
			if err := p.expect("=="); err != nil {
				return k, err
			}
			b, err := p.sideColumn()
			if err != nil {
				return k, err
			}
			if a.side == b.side {
				return k, fmt.Errorf("kql: join condition compares two %s columns at %s", a.side, t.pos())
			}
			if a.side == "$right" {
				a, b = b, a
			}
			k.conds = append(k.conds, `"$left".`+ident(a.col)+` = "$right".`+ident(b.col))
			k.left, k.right = append(k.left, ident(a.col)), append(k.right, b.col)
		case t.kind == tIdent:
			p.next()
			k.using = append(k.using, ident(t.text))
			k.conds = append(k.conds, `"$left".`+ident(t.text)+` = "$right".`+ident(t.text))
			k.left, k.right = append(k.left, ident(t.text)), append(k.right, t.text)
		default:
			return k, fmt.Errorf("kql: expected a join key at %s", t.pos())
		}
		if !p.accept(",") && !p.accept("and") {
			return k, nil
		}
	}
}

type sideCol struct{ side, col string }

func (p *parser) sideColumn() (sideCol, error) {
	s := p.next()
	if !strings.EqualFold(s.text, "$left") && !strings.EqualFold(s.text, "$right") {
		return sideCol{}, fmt.Errorf("kql: expected $left or $right at %s", s.pos())
	}
	if err := p.expect("."); err != nil {
		return sideCol{}, err
	}
	c := p.next()
	if c.kind != tIdent {
		return sideCol{}, fmt.Errorf("kql: expected a column name at %s", c.pos())
	}
	return sideCol{strings.ToLower(s.text), c.text}, nil
}

// mvExpand reads "mv-expand Col" or "mv-expand Name = expr" (lists
// separated by commas expand in lockstep, as in Kusto): one row per element
// of the dynamic array, as JSON values.
func (p *parser) mvExpand(op token, prev string) (string, error) {
	var replace, add, names []string
	for {
		t := p.peek()
		name := ""
		if t.kind == tIdent && p.ahead(1).text == "=" {
			name = t.text
			p.i += 2
		}
		start := p.i
		e, err := p.expr()
		if err != nil {
			return "", err
		}
		un := "unnest(CAST(CAST(" + e + " AS JSON) AS JSON[]))"
		if p.accept("to") {
			if !p.is("typeof") || p.ahead(1).text != "(" {
				return "", fmt.Errorf("kql: expected typeof(...) after to at %s", p.peek().pos())
			}
			ty, err := p.typeOf(p.next())
			if err != nil {
				return "", err
			}
			switch t := typeName(ty); t {
			case "JSON":
			case "VARCHAR":
				un = "json_extract_string(" + un + ", '$')"
			default:
				un = "TRY_CAST(json_extract_string(" + un + ", '$') AS " + t + ")"
			}
		}
		switch {
		case name != "":
			add = append(add, un+" AS "+ident(name))
			names = append(names, sqlString(name))
		case p.toks[start].kind == tIdent && p.i == start+1:
			replace = append(replace, un+" AS "+ident(p.toks[start].text))
		default:
			n := p.defaultName(start, false)
			if n == "" {
				n = argName(p.toks, start)
			}
			if n == "" {
				return "", unsupported("mv-expand of an unnamed expression", p.toks[start])
			}
			replace = append(replace, un+" AS "+ident(n))
		}
		if !p.accept(",") {
			break
		}
	}
	if p.is("limit") || p.is("bagexpansion") || p.is("with_itemindex") {
		return "", unsupported("mv-expand "+p.peek().text, p.peek())
	}
	sel := "*"
	if len(replace) > 0 {
		sel = "* REPLACE (" + strings.Join(replace, ", ") + ")"
	}
	if len(add) > 0 && len(replace) > 0 {
		// A named column that exists already is replaced by the expansion.
		cols, err := p.columns(prev)
		if err != nil {
			return "", err
		}
		var exclude []string
		for _, c := range cols {
			for _, n := range names {
				if lit, _ := literal(n); strings.EqualFold(lit, c.Name) {
					exclude = append(exclude, ident(c.Name))
				}
			}
		}
		sel = "*"
		if len(exclude) > 0 {
			sel += " EXCLUDE (" + strings.Join(exclude, ", ") + ")"
		}
		sel += " REPLACE (" + strings.Join(replace, ", ") + "), " + strings.Join(add, ", ")
	} else if len(add) > 0 {
		sel = "COLUMNS(c -> c NOT IN (" + strings.Join(names, ", ") + ")), " + strings.Join(add, ", ")
	}
	return "SELECT " + sel + " FROM " + prev, nil
}

// argName is the column named by todynamic(Col) and the like.
func argName(toks []token, start int) string {
	if start+3 < len(toks) && toks[start+1].text == "(" && toks[start+2].kind == tIdent && toks[start+3].text == ")" {
		return toks[start+2].text
	}
	return ""
}

func (p *parser) sortKeys() (string, error) {
	var keys []string
	for {
		e, err := p.expr()
		if err != nil {
			return "", err
		}
		dir := "DESC" // KQL sorts descending by default
		if p.accept("asc") {
			dir = "ASC"
		} else {
			p.accept("desc")
		}
		nulls := " NULLS LAST"
		if dir == "ASC" {
			nulls = " NULLS FIRST" // Kusto's defaults
		}
		if p.accept("nulls") {
			switch {
			case p.accept("first"):
				nulls = " NULLS FIRST"
			case p.accept("last"):
				nulls = " NULLS LAST"
			default:
				return "", fmt.Errorf("kql: expected first or last at %s", p.peek().pos())
			}
		}
		keys = append(keys, e+" "+dir+nulls)
		if !p.accept(",") {
			return strings.Join(keys, ", "), nil
		}
	}
}
