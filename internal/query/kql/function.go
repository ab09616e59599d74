package kql

import (
	"fmt"
	"strings"
)

// A user-defined function: "let f = (a:string, T:(Col:type)) { body };".
// A call expands the body in place, its parameters bound to the
// arguments: a scalar parameter to the argument's SQL, a tabular one to the
// argument's rows. "T | invoke f(x)" passes T as the first parameter.
type function struct {
	params []param
	body   []token
	// tabular says the body's last statement is a tabular expression.
	tabular bool
}

// maxCalls bounds how deep user functions may call each other.
const maxCalls = 32

type param struct {
	name    string
	tabular bool
	def     []token // default value, if any
}

// letFunction reads a function's parameters and body, after "let f =".
func (p *parser) defineFunction(name token) error {
	p.next() // (
	var fn function
	for !p.is(")") {
		n := p.next()
		if n.kind != tIdent {
			return fmt.Errorf("kql: expected a parameter name at %s", n.pos())
		}
		if err := p.expect(":"); err != nil {
			return err
		}
		par := param{name: n.text}
		if p.is("(") {
			par.tabular = true
			if err := p.skipBalanced("(", ")"); err != nil {
				return err
			}
		} else {
			p.next() // the type
		}
		if p.accept("=") {
			for !p.is(",") && !p.is(")") && p.peek().kind != tEOF {
				par.def = append(par.def, p.next())
			}
		}
		fn.params = append(fn.params, par)
		if !p.accept(",") {
			break
		}
	}
	if err := p.expect(")"); err != nil {
		return err
	}
	if !p.is("{") {
		return fmt.Errorf("kql: expected the body of %s at %s", name.text, p.peek().pos())
	}
	start := p.i + 1
	if err := p.skipBalanced("{", "}"); err != nil {
		return err
	}
	fn.body = append([]token{}, p.toks[start:p.i-1]...)
	fn.tabular = p.bodyIsTabular(fn)
	if p.funcs == nil {
		p.funcs = map[string]*function{}
	}
	p.funcs[name.text] = &fn
	delete(p.scalars, name.text)
	delete(p.tables, name.text)
	return nil
}

// skipBalanced skips from open to its matching close.
func (p *parser) skipBalanced(open, close string) error {
	at := p.peek()
	depth := 0
	for {
		t := p.next()
		switch {
		case t.kind == tEOF:
			return fmt.Errorf("kql: unbalanced %s at %s", open, at.pos())
		case t.kind == tOp && t.text == open:
			depth++
		case t.kind == tOp && t.text == close:
			depth--
			if depth == 0 {
				return nil
			}
		}
	}
}

// bodyIsTabular: the last statement of the body pipes, or starts with a
// tabular parameter, a tabular let or a table-like name.
func (p *parser) bodyIsTabular(fn function) bool {
	last := 0
	depth := 0
	for i, t := range fn.body {
		if t.kind == tOp && (t.text == "(" || t.text == "{" || t.text == "[") {
			depth++
		} else if t.kind == tOp && (t.text == ")" || t.text == "}" || t.text == "]") {
			depth--
		} else if depth == 0 && t.kind == tOp && t.text == ";" && i+1 < len(fn.body) {
			last = i + 1
		}
	}
	stmt := fn.body[last:]
	depth = 0
	for _, t := range stmt {
		if t.kind == tOp && t.text == "(" {
			depth++
		} else if t.kind == tOp && t.text == ")" {
			depth--
		} else if depth == 0 && t.kind == tOp && t.text == "|" {
			return true
		}
	}
	if len(stmt) == 0 || stmt[0].kind != tIdent {
		return false
	}
	for _, par := range fn.params {
		if par.tabular && par.name == stmt[0].text {
			return true
		}
	}
	return p.tables[stmt[0].text] != ""
}

// callFunction expands a call of fn (at its "(") with input, if not "", as
// its first (tabular) parameter: the body's CTE for a tabular function, its
// SQL for a scalar one.
func (p *parser) callFunction(name token, fn *function, input string) (string, error) {
	if err := p.expect("("); err != nil {
		return "", err
	}
	// Kusto refuses recursion; a function that calls itself would never end.
	if p.calls++; p.calls > maxCalls {
		return "", fmt.Errorf("kql: %s at %s: functions call each other more than %d deep (recursion is not allowed)", name.text, name.pos(), maxCalls)
	}
	defer func() { p.calls-- }()
	params := fn.params
	bound := map[string]string{} // tabular parameter: CTE
	scalars := map[string]string{}
	if input != "" {
		if len(params) == 0 || !params[0].tabular {
			return "", fmt.Errorf("kql: invoke %s at %s: its first parameter is not tabular", name.text, name.pos())
		}
		bound[params[0].name] = input
		params = params[1:]
	}
	for i := 0; !p.is(")"); i++ {
		if i >= len(params) {
			return "", fmt.Errorf("kql: too many arguments to %s at %s", name.text, p.peek().pos())
		}
		if params[i].tabular {
			cte, err := p.pipeline()
			if err != nil {
				return "", err
			}
			bound[params[i].name] = cte
		} else {
			e, err := p.expr()
			if err != nil {
				return "", err
			}
			scalars[params[i].name] = e
		}
		if !p.accept(",") {
			break
		}
	}
	if err := p.expect(")"); err != nil {
		return "", err
	}
	for _, par := range params {
		_, s := scalars[par.name]
		_, t := bound[par.name]
		if !s && !t {
			if par.def == nil {
				return "", fmt.Errorf("kql: %s at %s wants an argument for %s", name.text, name.pos(), par.name)
			}
			e, err := p.inTokens(par.def, p.expr)
			if err != nil {
				return "", err
			}
			scalars[par.name] = e
		}
	}
	// The body sees the lets of the query as they were, and its parameters.
	savedScalars, savedTables := p.scalars, p.tables
	p.scalars, p.tables = map[string]scalarLet{}, map[string]string{}
	for k, v := range savedScalars {
		p.scalars[k] = v
	}
	for k, v := range savedTables {
		p.tables[k] = v
	}
	for k, v := range scalars {
		p.scalars[k] = scalarLet{sql: v}
		delete(p.tables, k)
	}
	for k, v := range bound {
		p.tables[k] = v
		delete(p.scalars, k)
	}
	defer func() { p.scalars, p.tables = savedScalars, savedTables }()
	return p.inTokens(fn.body, func() (string, error) {
		for p.is("let") {
			if err := p.let(); err != nil {
				return "", err
			}
		}
		if fn.tabular {
			return p.pipeline()
		}
		return p.expr()
	})
}

// inTokens runs read over toks instead of the query, then resumes it.
func (p *parser) inTokens(toks []token, read func() (string, error)) (string, error) {
	savedToks, savedI := p.toks, p.i
	end := token{kind: tEOF}
	if len(toks) > 0 {
		end.line, end.col = toks[len(toks)-1].line, toks[len(toks)-1].col
	}
	p.toks, p.i = append(append([]token{}, toks...), end), 0
	defer func() { p.toks, p.i = savedToks, savedI }()
	out, err := read()
	if err != nil {
		return "", err
	}
	for p.accept(";") {
	}
	if t := p.peek(); t.kind != tEOF {
		return "", fmt.Errorf("kql: unexpected %q at %s", t.text, t.pos())
	}
	return out, nil
}

// isFunction says whether the name at p calls a user-defined function.
func (p *parser) isFunction() (*function, bool) {
	t := p.peek()
	if t.kind != tIdent || p.ahead(1).text != "(" || p.funcs == nil {
		return nil, false
	}
	fn, ok := p.funcs[t.text]
	return fn, ok && !strings.HasPrefix(t.text, "$")
}
