package kql

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// errBeside says arg_max() is not summarize's only aggregate: it is then
// read by aggregates, one DuckDB arg_max() per column.
var errBeside = errors.New("kql: arg_max beside other aggregates")

// aggregates reads summarize's aggregate list. arg_max(X, cols) and
// arg_min() there become X's max (min) and, for each column, its value on
// that row; "(a, b) = arg_max(X, Y)" names them.
func (p *parser) aggregates(prev string) ([]string, error) {
	var out []string
	used := map[string]int{}
	add := func(sql, name string) {
		if n := used[strings.ToLower(name)]; n > 0 {
			name += strconv.Itoa(n)
		}
		used[strings.ToLower(name)]++
		out = append(out, sql+" AS "+ident(name))
	}
	for {
		var names []string
		at := p.i
		if p.is("(") && p.ahead(1).kind == tIdent && (p.ahead(2).text == "," || p.ahead(2).text == ")") {
			p.next()
			for {
				n := p.next()
				if n.kind != tIdent {
					return nil, fmt.Errorf("kql: expected a column name at %s", n.pos())
				}
				names = append(names, n.text)
				if !p.accept(",") {
					break
				}
			}
			if err := p.expect(")"); err != nil {
				return nil, err
			}
			if err := p.expect("="); err != nil {
				return nil, err
			}
		} else if p.peek().kind == tIdent && p.ahead(1).text == "=" {
			names = []string{p.next().text}
			p.next()
		}
		fn := p.peek()
		switch strings.ToLower(fn.text) {
		case "arg_max", "arg_min", "argmax", "argmin":
			if p.ahead(1).text != "(" {
				break
			}
			p.next()
			p.next()
			pick := "arg_max"
			if strings.HasSuffix(strings.ToLower(fn.text), "min") {
				pick = "arg_min"
			}
			xStart := p.i
			x, err := p.expr()
			if err != nil {
				return nil, err
			}
			xName := argName(p.toks, xStart-2)
			if p.i == xStart+1 && p.toks[xStart].kind == tIdent {
				xName = p.toks[xStart].text
			}
			cols := []struct{ sql, name string }{{pick[4:] + "(" + x + ")", xName}}
			for p.accept(",") {
				if p.accept("*") {
					all, err := p.columns(prev)
					if err != nil {
						return nil, err
					}
					if all == nil {
						return nil, unsupported(pick+"(X, *) beside other aggregates", fn)
					}
					for _, c := range all {
						if !strings.EqualFold(c.Name, xName) {
							cols = append(cols, struct{ sql, name string }{pick + "(" + ident(c.Name) + ", " + x + ")", c.Name})
						}
					}
					continue
				}
				cStart := p.i
				c, err := p.expr()
				if err != nil {
					return nil, err
				}
				name := ""
				if p.i == cStart+1 && p.toks[cStart].kind == tIdent {
					name = p.toks[cStart].text
				}
				cols = append(cols, struct{ sql, name string }{pick + "(" + c + ", " + x + ")", name})
			}
			if err := p.expect(")"); err != nil {
				return nil, err
			}
			for i, c := range cols {
				name := c.name
				if i < len(names) {
					name = names[i]
				}
				if name == "" {
					name = fmt.Sprintf("%s%d", pick[4:]+"_", i)
				}
				add(c.sql, name)
			}
			if !p.accept(",") {
				return out, nil
			}
			continue
		}
		if len(names) > 1 {
			return nil, unsupported("assignment of several columns", p.toks[at])
		}
		p.i = at
		item, err := p.assignment(true)
		if err != nil {
			return nil, err
		}
		out = append(out, item)
		if !p.accept(",") {
			return out, nil
		}
	}
}
