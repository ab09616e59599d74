package kql

import (
	"fmt"
	"path"
	"strings"
)

// union reads "union [kind=outer] [withsource=Col] [isfuzzy=true] legs"
// (op is the union keyword, already read): the rows of every leg, columns
// matched by name, a column missing from a leg null there (Kusto's outer
// union). first is the CTE before "| union", or "".
func (p *parser) union(op token, first string) (string, error) {
	source := ""
	for p.peek().kind == tIdent && p.ahead(1).text == "=" {
		k := p.next()
		p.next()
		v := p.next()
		switch strings.ToLower(k.text) {
		case "kind":
			if !strings.EqualFold(v.text, "outer") {
				return "", unsupported("union kind="+v.text, v)
			}
		case "withsource":
			source = v.text
		case "isfuzzy":
			// A missing table is an error here either way: views exist
			// only for tables with data.
		default:
			return "", unsupported("union "+k.text, k)
		}
	}
	type leg struct{ cte, name string }
	var legs []leg
	if first != "" {
		legs = append(legs, leg{first, ""})
	}
	for {
		t := p.peek()
		if t.kind == tIdent && p.ahead(1).kind == tOp && p.ahead(1).text == "*" && p.ahead(1).col == t.col+len(t.text) {
			p.next()
			p.next()
			var matched []string
			for _, name := range p.known {
				if ok, _ := path.Match(strings.ToLower(t.text)+"*", strings.ToLower(name)); ok {
					matched = append(matched, name)
				}
			}
			if len(matched) == 0 {
				return "", fmt.Errorf("kql: no table matches %s* at %s", t.text, t.pos())
			}
			for _, name := range matched {
				legs = append(legs, leg{p.addCTE("SELECT * FROM " + ident(name)), name})
			}
		} else {
			name := ""
			if t.kind == tIdent {
				name = t.text
			}
			cte, err := p.source()
			if err != nil {
				return "", err
			}
			if name == "" {
				name = fmt.Sprintf("union_arg%d", len(legs))
			}
			legs = append(legs, leg{cte, name})
		}
		if !p.accept(",") {
			break
		}
	}
	parts := make([]string, len(legs))
	for i, l := range legs {
		sel := "*"
		if source != "" {
			sel = sqlString(l.name) + " AS " + ident(source) + ", *"
		}
		parts[i] = "SELECT " + sel + " FROM " + l.cte
	}
	if len(parts) == 1 {
		return p.addCTE(parts[0]), nil
	}
	return p.addCTE(strings.Join(parts, " UNION ALL BY NAME ")), nil
}

// unionSQL is "| union ...": the same, with the rows so far as the first
// leg, returned as the operator's SQL.
func (p *parser) unionSQL(op token, prev string) (string, error) {
	cte, err := p.union(op, prev)
	if err != nil {
		return "", err
	}
	return "SELECT * FROM " + cte, nil
}
