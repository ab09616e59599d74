// Package kql translates a subset of the Kusto Query Language, as used by
// advanced-hunting queries, into DuckDB SQL over the hunting views.
// Supported: a table followed by where, project, extend, summarize ... by
// (count, dcount, min, max, sum, avg, make_set, bin), take/limit, top,
// sort/order by, distinct, count; expressions with ==, !=, <, >, <=, >=, =~,
// !~, has, !has, contains, !contains, startswith, endswith, in, !in,
// has_any, and, or, not, ago(), now(), timespan literals. Anything else is
// an error naming the construct and its line:column.
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
		case c == '"' || c == '\'':
			j := i + 1
			var sb strings.Builder
			for j < len(r) && r[j] != c {
				if r[j] == '\\' && j+1 < len(r) {
					j++
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
			q := r[i+1]
			j := i + 2
			for j < len(r) && r[j] != q {
				j++
			}
			if j >= len(r) {
				return nil, fmt.Errorf("kql: unterminated string at %d:%d", line, col)
			}
			start.kind, start.text = tString, string(r[i+2:j])
			adv(j + 1 - i)
			out = append(out, start)
		case unicode.IsDigit(c):
			j := i
			for j < len(r) && (unicode.IsDigit(r[j]) || r[j] == '.') {
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
		case unicode.IsLetter(c) || c == '_':
			j := i
			for j < len(r) && (unicode.IsLetter(r[j]) || unicode.IsDigit(r[j]) || r[j] == '_' || r[j] == '-' && j+1 < len(r) && unicode.IsLetter(r[j+1]) && isDashWord(r, i, j)) {
				j++
			}
			start.kind, start.text = tIdent, string(r[i:j])
			adv(j - i)
			out = append(out, start)
		default:
			ops := []string{"==", "!=", "<=", ">=", "=~", "!~", "..", "!", "|", "(", ")", ",", "=", "<", ">", "+", "-", "*", "/", ";", "[", "]", "."}
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
			start.kind, start.text = tOp, matched
			adv(len(matched))
			out = append(out, start)
		}
	}
	out = append(out, token{kind: tEOF, line: line, col: col})
	return out, nil
}

// isDashWord keeps kind=leftouter style words and "make-series" together.
func isDashWord(r []rune, i, j int) bool {
	w := strings.ToLower(string(r[i:j]))
	return w == "make" || w == "mv" || w == "project"
}
