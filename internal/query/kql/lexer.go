// Package kql translates the Kusto Query Language, as advanced-hunting
// queries use it, into DuckDB SQL over the hunting views.
//
// Statements: let (scalars, dynamic values, tabular expressions, user
// functions and views) followed by one tabular expression.
// Sources: tables (and union's wildcard names), lets, datatable, print,
// range, search, .show tables, function calls.
// Tabular operators: where/filter, project, project-away, project-rename,
// project-reorder, project-keep, extend, summarize (the aggregates of
// functions.go; arg_max/arg_min alone or beside others), distinct, count,
// take/limit, top, top-nested, sort/order by, join (every kind; on Col or
// $left.A == $right.B; Kusto's Name1 columns), lookup, union, parse,
// parse-where, mv-expand (to typeof), make-series, serialize, getschema,
// invoke, render (left out, with a note).
// Expressions: ==, !=, <>, <, >, <=, >=, =~, !~, has, hasprefix,
// hassuffix, contains, startswith, endswith (and their _cs, ! and not
// forms), in, in~, !in, !in~, has_any, has_all, matches regex, between,
// and, or, not(), arithmetic (integer division stays integer), dynamic
// member access (x.a.b, x['a'], x[0]), ['Column Name'] and the functions
// of functions.go, some through the macros of Prelude.
// Anything else is an error naming the construct and its line:column.
package kql

import (
	"fmt"
	"strings"
	"unicode"
)

type tokKind int

const (
	tEOF tokKind = iota
	tIdent
	tString
	tNumber
	tTimespan
	tOp
	tDatetime // datetime(...) literal; text is what is inside the parentheses
)

type token struct {
	kind      tokKind
	text      string
	line, col int
}

func (t token) pos() string { return fmt.Sprintf("%d:%d", t.line, t.col) }

// lex splits a query into tokens, dropping // comments.
func lex(src string) ([]token, error) {
	var out []token
	line, col := 1, 1
	r := []rune(src)
	for i := 0; i < len(r); {
		c := r[i]
		start := token{line: line, col: col}
		adv := func(n int) {
			for k := 0; k < n; k++ {
				if r[i] == '\n' {
					line, col = line+1, 1
				} else {
					col++
				}
				i++
			}
		}
		switch {
		case unicode.IsSpace(c):
			adv(1)
		case c == '/' && i+1 < len(r) && r[i+1] == '/':
			for i < len(r) && r[i] != '\n' {
				adv(1)
			}
		case c == '[' && bracketName(r, i, out):
			// ['Column Name']: an identifier that is not a plain name.
			j := i + 1
			for r[j] == ' ' {
				j++
			}
			q := r[j]
			e := j + 1
			for r[e] != q {
				e++
			}
			start.kind, start.text = tIdent, string(r[j+1:e])
			e++
			for r[e] == ' ' {
				e++
			}
			adv(e + 1 - i)
			out = append(out, start)
		case c == '"' || c == '\'':
			j := i + 1
			var sb strings.Builder
			for j < len(r) && r[j] != c {
				if r[j] == '\\' && j+1 < len(r) {
					j++
					if e, ok := escapes[r[j]]; ok {
						sb.WriteRune(e)
						j++
						continue
					}
				}
				sb.WriteRune(r[j])
				j++
			}
			if j >= len(r) {
				return nil, fmt.Errorf("kql: unterminated string at %d:%d", line, col)
			}
			start.kind, start.text = tString, sb.String()
			adv(j + 1 - i)
			out = append(out, start)
		case c == '@' && i+1 < len(r) && (r[i+1] == '"' || r[i+1] == '\''):
			// Verbatim: no escapes, a doubled quote is one quote.
			q := r[i+1]
			j := i + 2
			var sb strings.Builder
			for ; j < len(r); j++ {
				if r[j] == q {
					if j+1 < len(r) && r[j+1] == q {
						sb.WriteRune(q)
						j++
						continue
					}
					break
				}
				sb.WriteRune(r[j])
			}
			if j >= len(r) {
				return nil, fmt.Errorf("kql: unterminated string at %d:%d", line, col)
			}
			start.kind, start.text = tString, sb.String()
			adv(j + 1 - i)
			out = append(out, start)
		case (c == 'h' || c == 'H') && i+1 < len(r) && (r[i+1] == '"' || r[i+1] == '\'' || r[i+1] == '@'):
			// h"..." is an obfuscated string: the same value, kept out of logs.
			adv(1)
			continue
		case unicode.IsDigit(c):
			j, dot := i, false
			for j < len(r) && (unicode.IsDigit(r[j]) || !dot && r[j] == '.' && j+1 < len(r) && unicode.IsDigit(r[j+1])) {
				dot = dot || r[j] == '.'
				j++
			}
			k := j
			for k < len(r) && unicode.IsLetter(r[k]) {
				k++
			}
			start.kind, start.text = tNumber, string(r[i:j])
			if k > j {
				start.kind, start.text = tTimespan, string(r[i:k])
			}
			adv(k - i)
			out = append(out, start)
		case unicode.IsLetter(c) || c == '_' || c == '$' && i+1 < len(r) && unicode.IsLetter(r[i+1]):
			j := i + 1
			for j < len(r) && (unicode.IsLetter(r[j]) || unicode.IsDigit(r[j]) || r[j] == '_' || r[j] == '-' && j+1 < len(r) && unicode.IsLetter(r[j+1]) && isDashWord(r, i, j)) {
				j++
			}
			if j < len(r) && r[j] == '~' && strings.EqualFold(string(r[i:j]), "in") {
				j++ // in~
			}
			word := string(r[i:j])
			if strings.EqualFold(word, "datetime") {
				k := j
				for k < len(r) && r[k] == ' ' {
					k++
				}
				if k < len(r) && r[k] == '(' {
					e := k + 1
					for e < len(r) && r[e] != ')' && r[e] != '\n' {
						e++
					}
					if e >= len(r) || r[e] != ')' {
						return nil, fmt.Errorf("kql: unterminated datetime() at %d:%d", line, col)
					}
					start.kind, start.text = tDatetime, strings.TrimSpace(string(r[k+1:e]))
					adv(e + 1 - i)
					out = append(out, start)
					continue
				}
			}
			start.kind, start.text = tIdent, word
			adv(j - i)
			out = append(out, start)
		default:
			ops := []string{"==", "!=", "<>", "<=", ">=", "=~", "!~", "..", "!", "|", "(", ")", ",", "=", "<", ">", "+", "-", "*", "/", ";", "[", "]", ".", ":", "{", "}", "%"}
			matched := ""
			for _, o := range ops {
				if strings.HasPrefix(string(r[i:min(i+len(o), len(r))]), o) {
					matched = o
					break
				}
			}
			if matched == "" {
				return nil, fmt.Errorf("kql: unexpected character %q at %d:%d", c, line, col)
			}
			if matched == "<>" {
				matched = "!=" // Kusto's other spelling
			}
			start.kind, start.text = tOp, matched
			adv(len(matched))
			out = append(out, start)
		}
	}
	out = append(out, token{kind: tEOF, line: line, col: col})
	return out, nil
}

var escapes = map[rune]rune{'n': '\n', 't': '\t', 'r': '\r'}

// bracketName says whether r[i] ('[') starts ['Name'], a column name, and
// not an index into a dynamic value (x['a']), which follows a value.
func bracketName(r []rune, i int, out []token) bool {
	j := i + 1
	for j < len(r) && r[j] == ' ' {
		j++
	}
	if j >= len(r) || r[j] != '\'' && r[j] != '"' {
		return false
	}
	q, e := r[j], j+1
	for e < len(r) && r[e] != q && r[e] != '\n' {
		e++
	}
	if e >= len(r) || r[e] != q {
		return false
	}
	for e++; e < len(r) && r[e] == ' '; e++ {
	}
	if e >= len(r) || r[e] != ']' {
		return false
	}
	if len(out) == 0 {
		return true
	}
	prev := out[len(out)-1]
	switch prev.kind {
	case tString, tNumber, tTimespan, tDatetime:
		return false
	case tOp:
		return prev.text != ")" && prev.text != "]"
	}
	return nameKeywords[strings.ToLower(prev.text)]
}

// nameKeywords are the words after which a column name may stand.
var nameKeywords = map[string]bool{"project": true, "extend": true, "by": true, "where": true, "and": true, "or": true,
	"summarize": true, "distinct": true, "on": true, "project-away": true, "project-rename": true, "project-keep": true,
	"project-reorder": true, "sort": true, "order": true, "filter": true, "mv-expand": true, "not": true, "asc": true, "desc": true}

// isDashWord keeps kind=leftouter style words and "make-series" together.
func isDashWord(r []rune, i, j int) bool {
	w := strings.ToLower(string(r[i:j]))
	return w == "make" || w == "mv" || w == "project" || w == "top" || w == "parse"
}
