package kql

import (
	"fmt"
	"strconv"
	"strings"
)

// This file holds the tabular operators and sources beyond the pipe's
// basics (translate.go): datatable, print, range, search, lookup,
// project-reorder, project-keep, serialize, render, getschema, top-nested.

// datatable reads "datatable(Name:type, ...) [v, ...]" (after the word).
func (p *parser) datatable(at token) (string, error) {
	if err := p.expect("("); err != nil {
		return "", err
	}
	var names, types []string
	for !p.is(")") {
		n := p.next()
		if n.kind != tIdent {
			return "", fmt.Errorf("kql: expected a column name at %s", n.pos())
		}
		if err := p.expect(":"); err != nil {
			return "", err
		}
		ty := p.next()
		sqlType, ok := kqlTypes[strings.ToLower(ty.text)]
		if !ok {
			return "", unsupported("type "+ty.text, ty)
		}
		names, types = append(names, n.text), append(types, sqlType)
		if !p.accept(",") {
			break
		}
	}
	if err := p.expect(")"); err != nil {
		return "", err
	}
	if err := p.expect("["); err != nil {
		return "", err
	}
	vals, err := p.items("]")
	if err != nil {
		return "", err
	}
	if len(names) == 0 || len(vals)%len(names) != 0 {
		return "", fmt.Errorf("kql: datatable at %s has %d values for %d columns", at.pos(), len(vals), len(names))
	}
	cols := make([]string, len(names))
	for i := range names {
		cols[i] = "CAST(NULL AS " + types[i] + ") AS " + ident(names[i])
	}
	if len(vals) == 0 {
		return p.addCTE("SELECT " + strings.Join(cols, ", ") + " WHERE false"), nil
	}
	var rows []string
	for r := 0; r < len(vals); r += len(names) {
		row := make([]string, len(names))
		for i := range names {
			row[i] = "CAST(" + vals[r+i] + " AS " + types[i] + ")"
		}
		rows = append(rows, "("+strings.Join(row, ", ")+")")
	}
	quoted := make([]string, len(names))
	for i, n := range names {
		quoted[i] = ident(n)
	}
	return p.addCTE("SELECT * FROM (VALUES " + strings.Join(rows, ", ") + ") AS t(" + strings.Join(quoted, ", ") + ")"), nil
}

// print reads "print [name =] expr, ...": one row.
func (p *parser) print() (string, error) {
	var cols []string
	for i := 0; ; i++ {
		e, err := p.assignment(false)
		if err != nil {
			return "", err
		}
		if !strings.Contains(e, " AS ") {
			e += " AS " + ident("print_"+strconv.Itoa(i))
		}
		cols = append(cols, e)
		if !p.accept(",") {
			break
		}
	}
	return p.addCTE("SELECT " + strings.Join(cols, ", ")), nil
}

// rangeSource reads "range x from a to b step s": a, a+s, ... up to b.
func (p *parser) rangeSource() (string, error) {
	name := p.next()
	if name.kind != tIdent {
		return "", fmt.Errorf("kql: expected a column name at %s", name.pos())
	}
	var bounds [3]string
	for i, kw := range []string{"from", "to", "step"} {
		if err := p.expect(kw); err != nil {
			return "", err
		}
		e, err := p.additive()
		if err != nil {
			return "", err
		}
		bounds[i] = e
	}
	return p.addCTE("SELECT generate_series AS " + ident(name.text) + " FROM generate_series(" + strings.Join(bounds[:], ", ") + ")"), nil
}

// search reads "search [in (T, ...)] "term"": the rows where a column has
// the term (case-insensitive, as has), from the given tables (with
// $table) or from prev.
func (p *parser) search(prev string) (string, error) {
	var tables []string
	if p.accept("in") {
		if err := p.expect("("); err != nil {
			return "", err
		}
		for {
			t := p.next()
			if t.kind != tIdent {
				return "", fmt.Errorf("kql: expected a table name at %s", t.pos())
			}
			tables = append(tables, t.text)
			if !p.accept(",") {
				break
			}
		}
		if err := p.expect(")"); err != nil {
			return "", err
		}
	}
	t := p.next()
	if t.kind != tString || p.is("and") || p.is("or") || p.is(":") {
		return "", unsupported("search other than of one term", t)
	}
	term := t.text
	var match string
	switch {
	case strings.HasPrefix(term, "*") && strings.HasSuffix(term, "*") && len(term) > 1:
		match = "contains(%s, " + sqlString(strings.ToLower(strings.Trim(term, "*"))) + ")"
	case strings.Contains(term, "*"):
		return "", unsupported("search wildcard other than *term*", t)
	default:
		match = "regexp_matches(%s, " + sqlString(termRE(term, false, true, true)) + ")"
	}
	where := fmt.Sprintf(match, "lower(concat_ws(chr(1), *COLUMNS(*)))")
	if prev != "" {
		return "SELECT * FROM " + prev + " WHERE " + where, nil
	}
	if len(tables) == 0 {
		tables = p.known
	}
	if len(tables) == 0 {
		return "", fmt.Errorf("kql: search at %s has no tables to search", t.pos())
	}
	parts := make([]string, len(tables))
	for i, name := range tables {
		parts[i] = "SELECT " + sqlString(name) + " AS \"$table\", * FROM (SELECT * FROM " + ident(name) + " WHERE " + where + ")"
	}
	return p.addCTE(strings.Join(parts, " UNION ALL BY NAME ")), nil
}

// lookup reads "lookup [kind=leftouter|inner] (R) on keys": a join that
// keeps each left row (leftouter) and the key columns once.
func (p *parser) lookup(op token, prev string) (string, error) {
	kind := "LEFT JOIN"
	if p.is("kind") && p.ahead(1).text == "=" {
		p.next()
		p.next()
		switch k := p.next(); strings.ToLower(k.text) {
		case "leftouter":
		case "inner":
			kind = "JOIN"
		default:
			return "", unsupported("lookup kind="+k.text, k)
		}
	}
	right, k, err := p.joinRight()
	if err != nil {
		return "", err
	}
	skip := map[string]bool{}
	for _, c := range k.right {
		skip[strings.ToLower(c)] = true
	}
	conds := k.conds
	sel, err := p.joinColumns(prev, right, skip)
	if err != nil {
		return "", err
	}
	if sel == "" {
		return "", unsupported("lookup without the tables' columns (Translate without Describe)", op)
	}
	return "SELECT " + sel + " FROM " + prev + ` AS "$left" ` + kind + " " + right + ` AS "$right" ON ` + strings.Join(conds, " AND "), nil
}

// reorder reads "project-reorder A, B*, C asc" (project-keep: keep only
// those): the named columns first, in that order; a wildcard stands for
// every column that matches it.
func (p *parser) reorder(op token, prev string, keep bool) (string, error) {
	var cols []Column
	var picked []string
	seen := map[string]bool{}
	for {
		t := p.next()
		if t.kind != tIdent && !(t.kind == tOp && t.text == "*") {
			return "", fmt.Errorf("kql: expected a column name at %s", t.pos())
		}
		pattern := t.text
		if t.kind == tOp {
			pattern = ""
		}
		wild := t.kind == tOp || p.is("*") && p.peek().col == t.col+len(t.text)
		if wild && t.kind == tIdent {
			p.next()
		}
		if !wild {
			if !seen[strings.ToLower(pattern)] {
				picked = append(picked, ident(pattern))
				seen[strings.ToLower(pattern)] = true
			}
		} else {
			if cols == nil {
				var err error
				if cols, err = p.columns(prev); err != nil {
					return "", err
				}
				if cols == nil {
					return "", unsupported(op.text+" with a wildcard (Translate without Describe)", t)
				}
			}
			for _, c := range cols {
				if strings.HasPrefix(strings.ToLower(c.Name), strings.ToLower(pattern)) && !seen[strings.ToLower(c.Name)] {
					picked = append(picked, ident(c.Name))
					seen[strings.ToLower(c.Name)] = true
				}
			}
		}
		if p.is("asc") || p.is("desc") || p.is("granny-asc") || p.is("granny-desc") {
			return "", unsupported(op.text+" sorted by name", p.peek())
		}
		if !p.accept(",") {
			break
		}
	}
	if keep {
		return "SELECT " + strings.Join(picked, ", ") + " FROM " + prev, nil
	}
	return "SELECT " + strings.Join(picked, ", ") + ", * EXCLUDE (" + strings.Join(picked, ", ") + ") FROM " + prev, nil
}

// getschema is "| getschema": the columns of the rows so far.
func (p *parser) getschema(op token, prev string) (string, error) {
	cols, err := p.columns(prev)
	if err != nil {
		return "", err
	}
	if cols == nil {
		return "", unsupported("getschema (Translate without Describe)", op)
	}
	rows := make([]string, len(cols))
	for i, c := range cols {
		rows[i] = fmt.Sprintf("(%s, %d, %s, %s)", sqlString(c.Name), i, sqlString(c.Type), sqlString(kustoType(c.Type)))
	}
	return `SELECT * FROM (VALUES ` + strings.Join(rows, ", ") + `) AS t("ColumnName", "ColumnOrdinal", "DataType", "ColumnType")`, nil
}

// kustoType names a DuckDB type as Kusto does.
func kustoType(t string) string {
	switch {
	case t == "VARCHAR":
		return "string"
	case t == "BIGINT" || t == "HUGEINT":
		return "long"
	case t == "INTEGER" || t == "SMALLINT" || t == "TINYINT":
		return "int"
	case t == "DOUBLE" || t == "FLOAT" || strings.HasPrefix(t, "DECIMAL"):
		return "real"
	case t == "BOOLEAN":
		return "bool"
	case strings.HasPrefix(t, "TIMESTAMP"):
		return "datetime"
	case t == "INTERVAL":
		return "timespan"
	}
	return "dynamic"
}

// render draws a chart in Kusto; here the answer is its table, and a note
// says the chart was left out. Its properties are read and ignored.
func (p *parser) render(op token, prev string) (string, error) {
	kind := p.next()
	p.note(fmt.Sprintf("render %s at %s ignored: the answer is the table the chart would draw", kind.text, op.pos()))
	for depth := 0; p.peek().kind != tEOF && (depth > 0 || !p.is("|") && !p.is(";") && !p.is(")")); {
		switch t := p.next(); {
		case t.kind == tOp && t.text == "(":
			depth++
		case t.kind == tOp && t.text == ")":
			depth--
		}
	}
	return "SELECT * FROM " + prev, nil
}

// topNested reads "top-nested N of Col [with others = v] by [Name =] Agg
// [asc|desc], top-nested ...": the top N values of Col by Agg, and within
// each, the top values of the next level. A row per path down the levels,
// each level's Col and its aggregate (Name, or aggregated_Col).
func (p *parser) topNested(op token, prev string) (string, error) {
	type level struct{ n, col, colName, agg, aggName, dir string }
	var levels []level
	for first := true; ; first = false {
		if !first && !p.accept("top-nested") {
			break
		}
		var l level
		if p.peek().kind == tNumber {
			l.n = p.next().text
		}
		if err := p.expect("of"); err != nil {
			return "", err
		}
		name, start := p.named()
		col, err := p.additive()
		if err != nil {
			return "", err
		}
		if name == "" {
			if p.i != start+1 || p.toks[start].kind != tIdent {
				return "", unsupported("top-nested of an unnamed expression", p.toks[start])
			}
			name = p.toks[start].text
		}
		l.col, l.colName = col, name
		if p.is("with") {
			return "", unsupported("top-nested with others", p.peek())
		}
		if err := p.expect("by"); err != nil {
			return "", err
		}
		l.aggName = "aggregated_" + name
		if p.peek().kind == tIdent && p.ahead(1).text == "=" {
			l.aggName = p.next().text
			p.next()
		}
		if l.agg, err = p.additive(); err != nil {
			return "", err
		}
		l.dir = "DESC"
		if p.accept("asc") {
			l.dir = "ASC"
		} else {
			p.accept("desc")
		}
		levels = append(levels, l)
		if !p.accept(",") {
			break
		}
	}
	// Level i groups by the columns of levels 0..i and keeps the top n
	// within each group of levels 0..i-1.
	var keys []string
	sel := ""
	for i, l := range levels {
		parent := append([]string{}, keys...)
		keys = append(keys, ident(l.colName))
		var groupCols []string
		for j := 0; j <= i; j++ {
			groupCols = append(groupCols, levels[j].col+" AS "+ident(levels[j].colName))
		}
		part := ""
		if len(parent) > 0 {
			part = "PARTITION BY " + strings.Join(parent, ", ") + " "
		}
		positions := make([]string, len(groupCols))
		for j := range positions {
			positions[j] = strconv.Itoa(j + 1)
		}
		levelSQL := "SELECT " + strings.Join(groupCols, ", ") + ", " + l.agg + " AS " + ident(l.aggName) + " FROM " + prev + " GROUP BY " + strings.Join(positions, ", ")
		if l.n != "" {
			levelSQL += " QUALIFY row_number() OVER (" + part + "ORDER BY " + ident(l.aggName) + " " + l.dir + ") <= " + l.n
		}
		cte := p.addCTE(levelSQL)
		if sel == "" {
			sel = "SELECT * FROM " + cte
			continue
		}
		prevLevel := p.addCTE(sel)
		sel = "SELECT * FROM " + prevLevel + " JOIN " + cte + " USING (" + strings.Join(parent, ", ") + ")"
	}
	return sel, nil
}

// makeSeries reads "make-series [Name =] Agg [default = v], ... on Axis
// [from a] [to b] step s [by cols]": per group, one row whose aggregates
// are arrays over the bins of Axis from a up to b (or the data's first and
// last), a bin without rows holding the default (0 unless given).
func (p *parser) makeSeries(op token, prev string) (string, error) {
	type series struct{ name, agg, def string }
	var aggs []series
	for !p.is("on") {
		name, start := p.named()
		agg, err := p.expr()
		if err != nil {
			return "", err
		}
		if name == "" {
			if name = p.defaultName(start, true); name == "" {
				return "", unsupported("make-series of an unnamed aggregate", p.toks[start])
			}
		}
		def := "0"
		if p.is("default") && p.ahead(1).text == "=" {
			p.next()
			p.next()
			if def, err = p.additive(); err != nil {
				return "", err
			}
		}
		aggs = append(aggs, series{name, agg, def})
		if !p.accept(",") {
			break
		}
	}
	if err := p.expect("on"); err != nil {
		return "", err
	}
	axisTok := p.peek()
	if axisTok.kind != tIdent || p.ahead(1).text == "(" {
		return "", unsupported("make-series on an expression", axisTok)
	}
	p.next()
	axis := ident(axisTok.text)
	var from, to, step string
	var err error
	if p.accept("from") {
		if from, err = p.additive(); err != nil {
			return "", err
		}
	}
	if p.accept("to") {
		if to, err = p.additive(); err != nil {
			return "", err
		}
	}
	if err := p.expect("step"); err != nil {
		return "", err
	}
	if step, err = p.additive(); err != nil {
		return "", err
	}
	var by, byNames []string
	if p.accept("by") {
		if by, err = p.assignments(false); err != nil {
			return "", err
		}
		for _, b := range by {
			if i := strings.LastIndex(b, " AS "); i >= 0 {
				byNames = append(byNames, b[i+4:])
			} else {
				byNames = append(byNames, b)
			}
		}
	}
	// Without from and to, the bins span the data, the first aligned on
	// the step as bin() aligns it.
	if from == "" {
		from = "(SELECT floor(min(" + axis + ") / " + step + ") * " + step + " FROM " + prev + ")"
		if isInterval(step) {
			from = "(SELECT time_bucket(" + step + ", min(" + axis + ")) FROM " + prev + ")"
		}
	}
	if to == "" {
		to = "(SELECT max(" + axis + ") FROM " + prev + ") + " + step
	}
	// Bins start at from, every step, up to (not including) to.
	bin := "(" + from + " + floor((" + axis + " - " + from + ") / " + step + ") * " + step + ")"
	if isInterval(step) {
		bin = "time_bucket(" + step + ", " + axis + ", " + from + ")"
	}
	bins := p.addCTE("SELECT unnest(generate_series(" + from + ", " + to + ", " + step + ")) AS b")
	bins = p.addCTE("SELECT b FROM " + bins + " WHERE b < " + to)
	groupSel := append(append([]string{}, by...), bin+" AS b")
	var vals []string
	for _, a := range aggs {
		vals = append(vals, a.agg+" AS "+ident(a.name))
	}
	data := p.addCTE("SELECT " + strings.Join(append(groupSel, vals...), ", ") + " FROM " + prev + " WHERE " + axis + " >= " + from + " AND " + axis + " < " + to + " GROUP BY ALL")
	grid := "SELECT b FROM " + bins
	using := "b"
	if len(byNames) > 0 {
		grid = "SELECT * FROM (SELECT DISTINCT " + strings.Join(byNames, ", ") + " FROM " + data + ") CROSS JOIN " + bins
		using = strings.Join(byNames, ", ") + ", b"
	}
	var lists []string
	for _, a := range aggs {
		lists = append(lists, "list(coalesce("+ident(a.name)+", "+a.def+") ORDER BY b) AS "+ident(a.name))
	}
	lists = append(lists, "list(b ORDER BY b) AS "+axis)
	sel := append(append([]string{}, byNames...), lists...)
	q := "SELECT " + strings.Join(sel, ", ") + " FROM (" + grid + ") LEFT JOIN " + data + " USING (" + using + ")"
	if len(byNames) > 0 {
		q += " GROUP BY " + strings.Join(byNames, ", ")
	}
	return q, nil
}

// named reads an optional "Name =" before an expression: the name ("" if
// none) and where the expression starts.
func (p *parser) named() (string, int) {
	if p.peek().kind == tIdent && p.ahead(1).kind == tOp && p.ahead(1).text == "=" {
		name := p.next().text
		p.next()
		return name, p.i
	}
	return "", p.i
}

// maxDerived bounds the columns bag_unpack and pivot may make from data.
const maxDerived = 1000

// evaluate reads "evaluate bag_unpack(Col [, prefix])" and "evaluate
// pivot(Col [, agg] [, by...])". Both make columns from values in the
// data, which Translate reads through Values.
func (p *parser) evaluate(op token, prev string) (string, error) {
	plugin := p.next()
	name := strings.ToLower(plugin.text)
	if (name != "bag_unpack" && name != "pivot") || !p.is("(") {
		return "", unsupported("evaluate "+plugin.text+"()", plugin)
	}
	if p.values == nil {
		return "", unsupported("evaluate "+plugin.text+"() without the data (Translate without Values)", plugin)
	}
	p.next()
	colTok := p.next()
	if colTok.kind != tIdent {
		return "", fmt.Errorf("kql: expected a column name at %s", colTok.pos())
	}
	col := ident(colTok.text)
	var args []string
	for p.accept(",") {
		e, err := p.expr()
		if err != nil {
			return "", err
		}
		args = append(args, e)
	}
	if err := p.expect(")"); err != nil {
		return "", err
	}
	if name == "bag_unpack" {
		prefix := ""
		if len(args) > 0 {
			prefix, _ = literal(args[0])
		}
		keys, err := p.values("SELECT DISTINCT unnest(json_keys(TRY_CAST(" + col + " AS JSON))) FROM " + prev + " ORDER BY 1 LIMIT " + strconv.Itoa(maxDerived+1))
		if err != nil {
			return "", err
		}
		if len(keys) > maxDerived {
			return "", fmt.Errorf("kql: bag_unpack at %s would make more than %d columns", plugin.pos(), maxDerived)
		}
		sel := []string{"* EXCLUDE (" + col + ")"}
		for _, k := range keys {
			sel = append(sel, "json_extract_string("+col+", "+sqlString("$."+jsonKey(k))+") AS "+ident(prefix+k))
		}
		return "SELECT " + strings.Join(sel, ", ") + " FROM " + prev, nil
	}
	// pivot: a column per value of Col, the aggregate (count()) of its rows
	// for each group of the other columns (or of the given ones).
	agg := "count(*)"
	if len(args) > 0 {
		agg = args[0]
	}
	var by []string
	if len(args) > 1 {
		by = args[1:]
	} else {
		cols, err := p.columns(prev)
		if err != nil {
			return "", err
		}
		for _, c := range cols {
			if !strings.EqualFold(c.Name, colTok.text) && !strings.Contains(agg, ident(c.Name)) {
				by = append(by, ident(c.Name))
			}
		}
	}
	vals, err := p.values("SELECT DISTINCT CAST(" + col + " AS VARCHAR) FROM " + prev + " WHERE " + col + " IS NOT NULL ORDER BY 1 LIMIT " + strconv.Itoa(maxDerived+1))
	if err != nil {
		return "", err
	}
	if len(vals) > maxDerived {
		return "", fmt.Errorf("kql: pivot at %s would make more than %d columns", plugin.pos(), maxDerived)
	}
	sel := append([]string{}, by...)
	for _, v := range vals {
		f := agg
		if i := strings.Index(f, "("); i > 0 {
			f = f[:strings.LastIndex(f, ")")] + ") FILTER (WHERE CAST(" + col + " AS VARCHAR) = " + sqlString(v) + ")"
		}
		sel = append(sel, f+" AS "+ident(v))
	}
	q := "SELECT " + strings.Join(sel, ", ") + " FROM " + prev
	if len(by) > 0 {
		q += " GROUP BY ALL"
	}
	return q, nil
}
