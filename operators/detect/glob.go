package detect

import (
	"regexp"
	"regexp/syntax"
	"strings"
	"unicode/utf8"
)

// glob matches a Sigma value with wildcards inside it without a regular
// expression: with only * the literal runs are found in order (leftmost
// is right for *), with ? a two-pointer match that backtracks to the last
// *.
type glob struct {
	segs []seg
	toks []globTok // the ? form
	// longest is the longest literal run: a value without it cannot match.
	longest string
	// star-only form: parts between the stars, and whether the value
	// must start with the first and end with the last.
	parts        []string
	start, end   bool
	hasQuestions bool
}

type globTok struct {
	r    rune
	wild byte
}

func newGlob(segs []seg) *glob {
	g := &glob{segs: segs}
	for _, s := range segs {
		if s.wild == '?' {
			g.hasQuestions = true
		}
		if len(s.lit) > len(g.longest) {
			g.longest = s.lit
		}
		if s.wild != 0 {
			g.toks = append(g.toks, globTok{wild: s.wild})
			continue
		}
		for _, r := range s.lit {
			g.toks = append(g.toks, globTok{r: r})
		}
	}
	if g.hasQuestions {
		return g
	}
	g.start = len(segs) > 0 && segs[0].wild == 0
	g.end = len(segs) > 0 && segs[len(segs)-1].wild == 0
	for _, s := range segs {
		if s.wild == 0 {
			g.parts = append(g.parts, s.lit)
		}
	}
	return g
}

func (g *glob) match(s string) bool {
	if g.hasQuestions {
		return g.matchTokens(s)
	}
	parts := g.parts
	if g.start {
		if !strings.HasPrefix(s, parts[0]) {
			return false
		}
		s, parts = s[len(parts[0]):], parts[1:]
	}
	last := ""
	if g.end && len(parts) > 0 {
		last, parts = parts[len(parts)-1], parts[:len(parts)-1]
	}
	for _, p := range parts {
		i := strings.Index(s, p)
		if i < 0 {
			return false
		}
		s = s[i+len(p):]
	}
	return !g.end || strings.HasSuffix(s, last)
}

// matchTokens is the general wildcard match over runes.
func (g *glob) matchTokens(s string) bool {
	if !strings.Contains(s, g.longest) {
		return false
	}
	pat := g.toks
	p, i := 0, 0
	starP, starI := -1, 0
	for i < len(s) {
		r, w := utf8.DecodeRuneInString(s[i:])
		switch {
		case p < len(pat) && pat[p].wild == '*':
			starP, starI = p, i
			p++
		case p < len(pat) && (pat[p].wild == '?' || pat[p].wild == 0 && pat[p].r == r):
			p++
			i += w
		case starP >= 0:
			_, sw := utf8.DecodeRuneInString(s[starI:])
			starI += sw
			p, i = starP+1, starI
		default:
			return false
		}
	}
	for p < len(pat) && pat[p].wild == '*' {
		p++
	}
	return p == len(pat)
}

// regexp renders the glob as a regular expression (for alternations).
func (g *glob) regexp() string {
	var b strings.Builder
	b.WriteString("(?s)^")
	for _, s := range g.segs {
		switch s.wild {
		case '*':
			b.WriteString(".*")
		case '?':
			b.WriteString(".")
		default:
			b.WriteString(regexp.QuoteMeta(s.lit))
		}
	}
	b.WriteString("$")
	return b.String()
}

// requiredLiteral finds the longest literal that every match of the
// expression contains, and whether it is case-folded; "" when none.
func requiredLiteral(expr string) (string, bool) {
	re, err := syntax.Parse(expr, syntax.Perl)
	if err != nil {
		return "", false
	}
	best, fold := "", false
	var walk func(r *syntax.Regexp)
	walk = func(r *syntax.Regexp) {
		switch r.Op {
		case syntax.OpLiteral:
			lit := string(r.Rune)
			f := r.Flags&syntax.FoldCase != 0
			if f {
				lit = strings.ToLower(lit)
			}
			if len(lit) > len(best) {
				best, fold = lit, f
			}
		case syntax.OpConcat:
			for _, s := range r.Sub {
				walk(s)
			}
		case syntax.OpCapture, syntax.OpPlus:
			walk(r.Sub[0])
		case syntax.OpRepeat:
			if r.Min > 0 {
				walk(r.Sub[0])
			}
		}
	}
	walk(re)
	if fold && strings.ToLower(best) != best || !utf8.ValidString(best) {
		return "", false
	}
	return best, fold
}
