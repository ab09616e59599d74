package kql

import (
	"fmt"
	"strconv"
	"strings"
)

// Translate returns the DuckDB SQL for a KQL query: each tabular operator
// becomes one CTE reading the previous one, so operators compose exactly as
// the KQL pipe does.
func Translate(q string) (string, error) {
	toks, err := lex(q)
	if err != nil {
		return "", err
	}
	p := &parser{toks: toks}
	if p.is("let") {
		return "", unsupported("let statement", p.peek())
	}
	src := p.next()
	if src.kind != tIdent {
		return "", fmt.Errorf("kql: expected a table name at %s", src.pos())
	}
	ctes := []string{"SELECT * FROM " + ident(src.text)}
	for p.accept("|") {
		op := p.next()
		sql, err := p.operator(op, fmt.Sprintf("s%d", len(ctes)-1))
		if err != nil {
			return "", err
		}
		ctes = append(ctes, sql)
	}
	p.accept(";")
	if t := p.peek(); t.kind != tEOF {
		return "", fmt.Errorf("kql: unexpected %q at %s", t.text, t.pos())
	}
	var b strings.Builder
	b.WriteString("WITH ")
	for i, c := range ctes {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "s%d AS (%s)", i, c)
	}
	fmt.Fprintf(&b, " SELECT * FROM s%d", len(ctes)-1)
	return b.String(), nil
}

func (p *parser) operator(op token, prev string) (string, error) {
	switch strings.ToLower(op.text) {
	case "where", "filter":
		e, err := p.expr()
		return "SELECT * FROM " + prev + " WHERE " + e, err
	case "project":
		cols, err := p.assignments()
		return "SELECT " + strings.Join(cols, ", ") + " FROM " + prev, err
	case "extend":
		cols, err := p.assignments()
		return "SELECT *, " + strings.Join(cols, ", ") + " FROM " + prev, err
	case "take", "limit":
		n, err := p.count()
		return "SELECT * FROM " + prev + " LIMIT " + n, err
	case "count":
		return "SELECT count(*) AS \"Count\" FROM " + prev, nil
	case "distinct":
		cols, err := p.assignments()
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
		var aggs, by []string
		if !p.is("by") {
			var err error
			if aggs, err = p.assignments(); err != nil {
				return "", err
			}
		}
		if p.accept("by") {
			var err error
			if by, err = p.assignments(); err != nil {
				return "", err
			}
		}
		sel := append(append([]string{}, by...), aggs...)
		s := "SELECT " + strings.Join(sel, ", ") + " FROM " + prev
		if len(by) > 0 {
			s += " GROUP BY ALL"
		}
		return s, nil
	}
	return "", unsupported("operator "+op.text, op)
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

// assignments reads "a, b = expr, expr" lists; unnamed expressions on a
// column keep its name (bin(Timestamp, 1h) stays Timestamp, as in KQL).
func (p *parser) assignments() ([]string, error) {
	var out []string
	for {
		t := p.peek()
		name := ""
		if t.kind == tIdent && p.toks[p.i+1].text == "=" && p.toks[p.i+1].kind == tOp {
			name = t.text
			p.i += 2
		}
		e, err := p.expr()
		if err != nil {
			return nil, err
		}
		if name == "" && t.kind == tIdent && p.toks[p.i-1] != t && strings.EqualFold(t.text, "bin") && len(p.toks) > 0 {
			// bin(Col, span) is named after Col.
			name = p.toks[indexAfter(p.toks, t)+2].text
		}
		if name != "" {
			e += " AS " + ident(name)
		}
		out = append(out, e)
		if !p.accept(",") {
			return out, nil
		}
	}
}

func indexAfter(toks []token, t token) int {
	for i := range toks {
		if toks[i] == t {
			return i
		}
	}
	return 0
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
		keys = append(keys, e+" "+dir)
		if !p.accept(",") {
			return strings.Join(keys, ", "), nil
		}
	}
}
