package kql

import (
	"fmt"
	"regexp"
	"strings"
)

// parse reads "parse [kind=simple|regex|relaxed] [flags=f] Expr with
// elements": a string's parts between constants become columns. It is one
// regular expression over Expr, a capture group a column; where it does not
// match, the columns are empty (parse) or the row goes (parse-where).
func (p *parser) parse(op token, prev string) (string, error) {
	kind, flags := "simple", ""
	for p.peek().kind == tIdent && p.ahead(1).text == "=" && (p.is("kind") || p.is("flags")) {
		k := p.next()
		p.next()
		v := p.next()
		if strings.EqualFold(k.text, "kind") {
			kind = strings.ToLower(v.text)
			if kind != "simple" && kind != "regex" && kind != "relaxed" {
				return "", unsupported("parse kind="+v.text, v)
			}
			continue
		}
		flags = v.text
		if !regexp.MustCompile(`^[imsU]+$`).MatchString(flags) {
			return "", unsupported("parse flags="+v.text, v)
		}
	}
	src, err := p.additive()
	if err != nil {
		return "", err
	}
	if err := p.expect("with"); err != nil {
		return "", err
	}
	var re strings.Builder
	var cols, names []string
	group := 0
	for {
		t := p.peek()
		switch {
		case t.kind == tOp && t.text == "*":
			p.next()
			re.WriteString(".*?")
		case t.kind == tString:
			p.next()
			if kind == "regex" {
				re.WriteString(t.text)
			} else {
				re.WriteString(regexp.QuoteMeta(t.text))
			}
		case t.kind == tIdent && !p.is("with"):
			p.next()
			sqlType := ""
			if p.accept(":") {
				ty := p.next()
				if sqlType = kqlTypes[strings.ToLower(ty.text)]; sqlType == "" {
					return "", unsupported("type "+ty.text, ty)
				}
			}
			last := p.peek().kind != tString && !p.is("*")
			switch {
			case typeRE[sqlType] != "":
				re.WriteString(typeRE[sqlType]) // Kusto matches a typed column by its type
			case last && kind != "regex":
				re.WriteString("(.*)")
			default:
				re.WriteString("(.*?)")
			}
			group++
			e := fmt.Sprintf("regexp_extract(%s, %s, %d)", "__src", "__re", group)
			if sqlType != "" && sqlType != "VARCHAR" {
				e = "TRY_CAST(nullif(" + e + ", '') AS " + sqlType + ")"
			}
			cols = append(cols, e+" AS "+ident(t.text))
			names = append(names, sqlString(t.text))
		default:
			if group == 0 {
				return "", fmt.Errorf("kql: parse wants at least one column to extract at %s", t.pos())
			}
			pattern := "(?s" + flags + ")^" + re.String()
			srcSQL := str(src)
			for i := range cols {
				cols[i] = strings.NewReplacer("__src", srcSQL, "__re", sqlString(pattern)).Replace(cols[i])
			}
			sel := "SELECT COLUMNS(c -> c NOT IN (" + strings.Join(names, ", ") + ")), " + strings.Join(cols, ", ") + " FROM " + prev
			if strings.EqualFold(op.text, "parse-where") {
				sel += " WHERE regexp_matches(" + srcSQL + ", " + sqlString(pattern) + ")"
			}
			return sel, nil
		}
	}
}

// typeRE is what a typed parse column matches.
var typeRE = map[string]string{"BIGINT": `([-+]?[0-9]+)`, "INTEGER": `([-+]?[0-9]+)`, "DOUBLE": `([-+]?[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)`,
	"BOOLEAN": `((?i:true|false))`}
