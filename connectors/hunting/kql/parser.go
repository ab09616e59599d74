package kql

import (
	"fmt"
	"strconv"
	"strings"
)

// parser reads tokens; expressions are emitted directly as DuckDB SQL.
type parser struct {
	toks []token
	i    int
}

func (p *parser) peek() token { return p.toks[p.i] }
func (p *parser) next() token { t := p.toks[p.i]; p.i++; return t }

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
		return fmt.Errorf("kql: expected %q at %s, found %q", text, t.pos(), t.text)
	}
	return nil
}

func unsupported(what string, t token) error {
	return fmt.Errorf("kql: unsupported %s at %s", what, t.pos())
}

func sqlString(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }
func ident(s string) string     { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }

// expr := or
func (p *parser) expr() (string, error) { return p.binary(0) }

var levels = [][]string{{"or"}, {"and"}}

func (p *parser) binary(level int) (string, error) {
	if level == len(levels) {
		return p.comparison()
	}
	left, err := p.binary(level + 1)
	if err != nil {
		return "", err
	}
	for p.is(levels[level][0]) {
		op := strings.ToUpper(p.next().text)
		right, err := p.binary(level + 1)
		if err != nil {
			return "", err
		}
		left = "(" + left + " " + op + " " + right + ")"
	}
	return left, nil
}

func (p *parser) comparison() (string, error) {
	left, err := p.additive()
	if err != nil {
		return "", err
	}
	t := p.peek()
	op := strings.ToLower(t.text)
	neg := false
	if t.kind == tOp && t.text == "!" { // !has, !contains, !in ...
		nt := p.toks[p.i+1]
		if nt.kind == tIdent {
			p.i++
			neg, op, t = true, strings.ToLower(nt.text), nt
		}
	}
	wrap := func(s string) string {
		if neg {
			return "(NOT " + s + ")"
		}
		return s
	}
	switch op {
	case "==", "!=", "<", ">", "<=", ">=":
		p.next()
		right, err := p.additive()
		if err != nil {
			return "", err
		}
		sqlOp := map[string]string{"==": "=", "!=": "<>"}[op]
		if sqlOp == "" {
			sqlOp = op
		}
		return "(" + left + " " + sqlOp + " " + right + ")", nil
	case "=~", "!~":
		p.next()
		right, err := p.additive()
		if err != nil {
			return "", err
		}
		s := "(lower(" + left + ") = lower(" + right + "))"
		if op == "!~" {
			s = "(NOT " + s + ")"
		}
		return s, nil
	case "has", "contains", "has_cs", "contains_cs", "startswith", "endswith":
		p.next()
		right, err := p.additive()
		if err != nil {
			return "", err
		}
		// KQL "has" matches whole terms; DuckDB has no term index, so a
		// case-insensitive substring test stands in (a superset).
		fn := map[string]string{"has": "contains", "contains": "contains", "has_cs": "contains", "contains_cs": "contains",
			"startswith": "starts_with", "endswith": "ends_with"}[op]
		if strings.HasSuffix(op, "_cs") {
			return wrap(fn + "(" + left + ", " + right + ")"), nil
		}
		return wrap(fn + "(lower(" + left + "), lower(" + right + "))"), nil
	case "in", "in~", "has_any":
		p.next()
		list, err := p.list()
		if err != nil {
			return "", err
		}
		if op == "has_any" {
			parts := make([]string, len(list))
			for i, v := range list {
				parts[i] = "contains(lower(" + left + "), lower(" + v + "))"
			}
			return wrap("(" + strings.Join(parts, " OR ") + ")"), nil
		}
		return wrap("(" + left + " IN (" + strings.Join(list, ", ") + "))"), nil
	case "between", "matches", "has_all", "!between":
		return "", unsupported("operator "+op, t)
	}
	if neg {
		return "", unsupported("operator !"+op, t)
	}
	return left, nil
}

func (p *parser) list() ([]string, error) {
	if err := p.expect("("); err != nil {
		return nil, err
	}
	var out []string
	for !p.is(")") {
		if p.peek().kind == tEOF {
			return nil, fmt.Errorf("kql: unterminated list at %s", p.peek().pos())
		}
		v, err := p.additive()
		if err != nil {
			return nil, err
		}
		out = append(out, v)
		if !p.accept(",") {
			break
		}
	}
	return out, p.expect(")")
}

func (p *parser) additive() (string, error) {
	left, err := p.unary()
	if err != nil {
		return "", err
	}
	for p.is("+") || p.is("-") || p.is("*") || p.is("/") {
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
	case t.kind == tIdent && strings.EqualFold(t.text, "not") && p.toks[p.i+1].text == "(":
		p.next()
		e, err := p.primary()
		return "(NOT " + e + ")", err
	case t.kind == tOp && t.text == "-":
		p.next()
		e, err := p.primary()
		return "(-" + e + ")", err
	}
	return p.primary()
}

func timespan(t token) (string, error) {
	units := map[string]string{"d": "day", "h": "hour", "m": "minute", "min": "minute", "s": "second", "ms": "millisecond"}
	i := strings.IndexFunc(t.text, func(r rune) bool { return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' })
	n, unit := t.text[:i], units[strings.ToLower(t.text[i:])]
	if _, err := strconv.ParseFloat(n, 64); err != nil || unit == "" {
		return "", unsupported("timespan "+t.text, t)
	}
	return fmt.Sprintf("INTERVAL '%s %s'", n, unit), nil
}

func (p *parser) primary() (string, error) {
	t := p.next()
	switch t.kind {
	case tString:
		return sqlString(t.text), nil
	case tNumber:
		return t.text, nil
	case tTimespan:
		return timespan(t)
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
		case "true", "false":
			return strings.ToUpper(t.text), nil
		case "dynamic", "datetime", "timespan", "toscalar":
			if p.is("(") {
				return "", unsupported(t.text+"()", t)
			}
		}
		if p.is("(") {
			return p.call(t)
		}
		if p.is("[") || p.is(".") {
			return "", unsupported("dynamic member access", p.peek())
		}
		return ident(t.text), nil
	}
	return "", fmt.Errorf("kql: unexpected end of query at %s", t.pos())
}

// call translates the supported scalar and aggregate functions.
func (p *parser) call(name token) (string, error) {
	p.next() // (
	var args []string
	for !p.is(")") {
		a, err := p.expr()
		if err != nil {
			return "", err
		}
		args = append(args, a)
		if !p.accept(",") {
			break
		}
	}
	if err := p.expect(")"); err != nil {
		return "", err
	}
	arg := func(i int) string {
		if i < len(args) {
			return args[i]
		}
		return "NULL"
	}
	switch fn := strings.ToLower(name.text); fn {
	case "ago":
		return "(now() - " + arg(0) + ")", nil
	case "now":
		return "now()", nil
	case "count":
		return "count(*)", nil
	case "countif":
		return "count(*) FILTER (WHERE " + arg(0) + ")", nil
	case "dcount":
		return "count(DISTINCT " + arg(0) + ")", nil
	case "min", "max", "sum", "avg":
		return fn + "(" + arg(0) + ")", nil
	case "make_set":
		return "list_distinct(list(" + arg(0) + "))", nil
	case "make_list":
		return "list(" + arg(0) + ")", nil
	case "any", "take_any":
		return "any_value(" + arg(0) + ")", nil
	case "bin":
		if strings.HasPrefix(arg(1), "INTERVAL") {
			return "time_bucket(" + arg(1) + ", " + arg(0) + ")", nil
		}
		return "(floor(" + arg(0) + " / " + arg(1) + ") * " + arg(1) + ")", nil
	case "tostring":
		return "CAST(" + arg(0) + " AS VARCHAR)", nil
	case "tolower":
		return "lower(" + arg(0) + ")", nil
	case "toupper":
		return "upper(" + arg(0) + ")", nil
	case "strlen":
		return "length(" + arg(0) + ")", nil
	case "isempty":
		return "(" + arg(0) + " IS NULL OR CAST(" + arg(0) + " AS VARCHAR) = '')", nil
	case "isnotempty":
		return "(" + arg(0) + " IS NOT NULL AND CAST(" + arg(0) + " AS VARCHAR) <> '')", nil
	case "isnull":
		return "(" + arg(0) + " IS NULL)", nil
	case "isnotnull":
		return "(" + arg(0) + " IS NOT NULL)", nil
	}
	return "", unsupported("function "+name.text+"()", name)
}
