package detect

import (
	"encoding/base64"
	"fmt"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf16"
)

// A value matcher tests one field value of a row against one value of a
// rule, after the rule's modifiers (sigma-appendix-modifiers.md) were
// applied at load time: encodings and windash expand the value into
// variants, wildcards and contains/startswith/endswith decide the
// comparison, cased keeps case. Sigma compares case-insensitively by
// default, so needles are lowered once here and compared with the row's
// lowered value (lowered once per batch and column, see view).
type op uint8

const (
	opEq op = iota
	opPrefix
	opSuffix
	opContains
	opGlob // wildcards inside: a regular expression over the value
	opRe
	opCIDR
	opLT
	opLTE
	opGT
	opGTE
	opExists
	opAbsent
	opNull     // field null or empty
	opFieldRef // equal to another field of the row
	opTime     // a component of a date (minute ... year) compared as a number (cmp)
)

type valueMatcher struct {
	op   op
	s    string
	re   *regexp.Regexp
	glob *glob
	// pre is a literal every match of re contains (lowered when preFold):
	// a cheap test that rules most values out before the regexp runs.
	pre     string
	preFold bool
	pfx     netip.Prefix
	num     float64
	cased   bool
	ref     int // slot of the referenced field (opFieldRef)
	// part and cmp: opTime's component of the date and comparison (opEq,
	// opLT, ...) with num.
	part string
	cmp  op
}

// fieldMatch is one `Field|modifiers: values` line of a selection.
type fieldMatch struct {
	slot int
	vals []valueMatcher
	all  bool // all values must match (the all modifier)
	neg  bool // neq: no value may match
}

// modifiers that transform a value before comparison, in order.
var encoders = map[string]bool{"base64": true, "base64offset": true, "wide": true, "utf16le": true, "utf16be": true, "utf16": true, "windash": true}

// compileValues builds the matchers of one field line. resolve finds the
// slot of a field named by fieldref.
func compileValues(mods []string, values []any, resolve func(string) (int, error), placeholders map[string][]string) (fieldMatch, error) {
	var fm fieldMatch
	var comparator string
	var cased, exists, fieldref, expand bool
	var timePart string
	var reFlags string
	var transforms []string
	for i, m := range mods {
		switch m {
		case "contains", "startswith", "endswith", "re", "cidr", "lt", "lte", "gt", "gte":
			if comparator != "" {
				return fm, fmt.Errorf("modifiers %s and %s both decide the comparison", comparator, m)
			}
			comparator = m
		case "i", "m", "s":
			if comparator != "re" {
				return fm, fmt.Errorf("modifier %s only follows re", m)
			}
			reFlags += m
		case "all":
			fm.all = true
		case "cased":
			cased = true
		case "exists":
			exists = true
		case "neq":
			fm.neg = true
		case "fieldref":
			fieldref = true
		case "expand":
			expand = true
		case "minute", "hour", "day", "week", "month", "year":
			if timePart != "" {
				return fm, fmt.Errorf("modifiers %s and %s both take a part of the date", timePart, m)
			}
			timePart = m
		default:
			if encoders[m] {
				if comparator == "re" || comparator == "cidr" {
					return fm, fmt.Errorf("modifier %s cannot follow %s", m, comparator)
				}
				transforms = append(transforms, m)
				continue
			}
			return fm, fmt.Errorf("unknown modifier %q (position %d)", m, i+1)
		}
	}
	if len(values) == 0 {
		return fm, fmt.Errorf("no value")
	}
	if fm.all && len(values) == 1 {
		return fm, fmt.Errorf("the all modifier needs a list of values")
	}
	if exists {
		if len(values) != 1 {
			return fm, fmt.Errorf("exists takes one boolean")
		}
		b, ok := values[0].(bool)
		if !ok {
			return fm, fmt.Errorf("exists takes a boolean, not %v", values[0])
		}
		if b {
			fm.vals = []valueMatcher{{op: opExists}}
		} else {
			fm.vals = []valueMatcher{{op: opAbsent}}
		}
		return fm, nil
	}
	if timePart != "" {
		if len(transforms) > 0 || fieldref || (comparator != "" && !strings.HasPrefix(comparator, "l") && !strings.HasPrefix(comparator, "g")) {
			return fm, fmt.Errorf("modifier %s compares a number: only lt, lte, gt, gte may join it", timePart)
		}
		cmp := map[string]op{"": opEq, "lt": opLT, "lte": opLTE, "gt": opGT, "gte": opGTE}[comparator]
		for _, v := range values {
			n, err := strconv.ParseFloat(strings.TrimSpace(fmt.Sprint(v)), 64)
			if err != nil {
				return fm, fmt.Errorf("modifier %s needs a number, not %v", timePart, v)
			}
			fm.vals = append(fm.vals, valueMatcher{op: opTime, part: timePart, cmp: cmp, num: n})
		}
		return fm, nil
	}
	if expand {
		var err error
		if values, err = expandValues(values, placeholders); err != nil {
			return fm, err
		}
	}
	for _, v := range values {
		ms, err := compileValue(v, comparator, reFlags, transforms, cased, fieldref, resolve)
		if err != nil {
			return fm, err
		}
		if fm.all && len(ms) > 1 {
			// one value expanded into variants (windash, base64offset):
			// any variant satisfies that value, so under all the
			// variants become one alternation.
			re, err := alternation(ms)
			if err != nil {
				return fm, err
			}
			ms = []valueMatcher{re}
		}
		fm.vals = append(fm.vals, ms...)
	}
	return fm, nil
}

// unsupportedError marks a rule the engine cannot evaluate though it may be
// valid Sigma.
type unsupportedError struct{ why string }

func (e unsupportedError) Error() string { return e.why }

func compileValue(v any, comparator, reFlags string, transforms []string, cased, fieldref bool, resolve func(string) (int, error)) ([]valueMatcher, error) {
	if v == nil {
		if comparator != "" || len(transforms) > 0 {
			return nil, fmt.Errorf("null cannot take modifiers")
		}
		return []valueMatcher{{op: opNull}}, nil
	}
	var s string
	switch x := v.(type) {
	case string:
		s = x
	case int:
		s = strconv.Itoa(x)
	case int64:
		s = strconv.FormatInt(x, 10)
	case uint64:
		s = strconv.FormatUint(x, 10)
	case float64:
		s = strconv.FormatFloat(x, 'f', -1, 64)
	case bool:
		s = strconv.FormatBool(x)
	default:
		return nil, fmt.Errorf("value %v (%T) is not a string, number, boolean or null", v, v)
	}
	if fieldref {
		if comparator != "" || len(transforms) > 0 {
			return nil, unsupportedError{"fieldref with other modifiers than neq and cased is not supported"}
		}
		slot, err := resolve(s)
		if err != nil {
			return nil, err
		}
		return []valueMatcher{{op: opFieldRef, ref: slot, cased: cased}}, nil
	}
	switch comparator {
	case "re":
		if len(transforms) > 0 {
			return nil, fmt.Errorf("re cannot follow %s", strings.Join(transforms, ","))
		}
		flags := reFlags
		if flags != "" {
			flags = "(?" + flags + ")"
		}
		re, err := regexp.Compile(flags + s)
		if err != nil {
			return nil, unsupportedError{fmt.Sprintf("regular expression %q: %v", s, err)}
		}
		m := valueMatcher{op: opRe, re: re, cased: true}
		m.pre, m.preFold = requiredLiteral(flags + s)
		return []valueMatcher{m}, nil
	case "cidr":
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return nil, fmt.Errorf("cidr %q: %v", s, err)
		}
		return []valueMatcher{{op: opCIDR, pfx: p.Masked()}}, nil
	case "lt", "lte", "gt", "gte":
		n, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return nil, fmt.Errorf("%s needs a number, not %q", comparator, s)
		}
		o := map[string]op{"lt": opLT, "lte": opLTE, "gt": opGT, "gte": opGTE}[comparator]
		return []valueMatcher{{op: o, num: n}}, nil
	}
	// String comparison: wildcards, then the variants the transforms make.
	var variants [][]seg
	encoded := false
	variants = [][]seg{parseWildcards(s)}
	for _, t := range transforms {
		var next [][]seg
		for _, v := range variants {
			switch t {
			case "windash":
				next = append(next, windash(v)...)
			default:
				lit, ok := literal(v)
				if !ok {
					return nil, fmt.Errorf("modifier %s on a value with wildcards", t)
				}
				for _, e := range encode(t, lit) {
					next = append(next, []seg{{lit: e}})
				}
				encoded = true
			}
		}
		if len(next) > 4096 {
			return nil, fmt.Errorf("value %q expands into more than 4096 variants", s)
		}
		variants = next
	}
	if encoded {
		cased = true // encoded bytes compare as they are
	}
	out := make([]valueMatcher, 0, len(variants))
	for _, v := range variants {
		switch comparator {
		case "contains":
			v = append(append([]seg{{wild: '*'}}, v...), seg{wild: '*'})
		case "startswith":
			v = append(v, seg{wild: '*'})
		case "endswith":
			v = append([]seg{{wild: '*'}}, v...)
		}
		m, err := compilePattern(v, cased)
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	return out, nil
}

// seg is a literal run or a wildcard (* or ?) of a Sigma string.
type seg struct {
	lit  string
	wild byte
}

// parseWildcards splits a Sigma string: * and ? are wildcards, \* \? and
// \\ escape them and the backslash; any other backslash is a backslash.
func parseWildcards(s string) []seg {
	var out []seg
	var b strings.Builder
	flush := func() {
		if b.Len() > 0 {
			out = append(out, seg{lit: b.String()})
			b.Reset()
		}
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\\' && i+1 < len(s) && (s[i+1] == '*' || s[i+1] == '?' || s[i+1] == '\\'):
			b.WriteByte(s[i+1])
			i++
		case c == '*' || c == '?':
			flush()
			out = append(out, seg{wild: c})
		default:
			b.WriteByte(c)
		}
	}
	flush()
	return out
}

func literal(v []seg) (string, bool) {
	var b strings.Builder
	for _, s := range v {
		if s.wild != 0 {
			return "", false
		}
		b.WriteString(s.lit)
	}
	return b.String(), true
}

// encode applies an encoding modifier to a literal.
func encode(t, s string) []string {
	switch t {
	case "base64":
		return []string{base64.StdEncoding.EncodeToString([]byte(s))}
	case "base64offset":
		// pySigma's three shifts: the stable middle of the encoding of s
		// behind 0, 1 and 2 bytes.
		start := []int{0, 2, 3}
		end := []int{0, -3, -2}
		var out []string
		for i := 0; i < 3; i++ {
			e := base64.StdEncoding.EncodeToString(append([]byte(strings.Repeat(" ", i)), s...))
			hi := len(e) + end[(len(s)+i)%3]
			if start[i] <= hi {
				out = append(out, e[start[i]:hi])
			}
		}
		return out
	case "wide", "utf16le":
		return []string{utf16String(s, false, false)}
	case "utf16be":
		return []string{utf16String(s, true, false)}
	case "utf16":
		return []string{utf16String(s, false, true)}
	}
	return []string{s}
}

func utf16String(s string, be, bom bool) string {
	var b []byte
	if bom {
		b = append(b, 0xFF, 0xFE)
	}
	for _, u := range utf16.Encode([]rune(s)) {
		if be {
			b = append(b, byte(u>>8), byte(u))
		} else {
			b = append(b, byte(u), byte(u>>8))
		}
	}
	return string(b)
}

// windashChars are the characters windash makes interchangeable.
var windashChars = []string{"-", "/", "–", "—", "―"}

// windash expands every - or / that starts a word (pySigma's \B[-/]\b)
// into each dash character.
func windash(v []seg) [][]seg {
	out := [][]seg{nil}
	for _, s := range v {
		if s.wild != 0 {
			for i := range out {
				out[i] = append(out[i], s)
			}
			continue
		}
		start := 0
		for i := 0; i < len(s.lit); i++ {
			c := s.lit[i]
			if c != '-' && c != '/' {
				continue
			}
			prevWord := i > 0 && isWord(s.lit[i-1])
			nextWord := i+1 < len(s.lit) && isWord(s.lit[i+1])
			if prevWord || !nextWord {
				continue
			}
			pre := s.lit[start:i]
			var next [][]seg
			for _, o := range out {
				for _, d := range windashChars {
					n := append(append([]seg(nil), o...), seg{lit: pre + d})
					next = append(next, n)
				}
			}
			out = next
			start = i + 1
		}
		if start < len(s.lit) {
			for i := range out {
				out[i] = append(out[i], seg{lit: s.lit[start:]})
			}
		}
	}
	return out
}

func isWord(c byte) bool {
	return c == '_' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}

// compilePattern turns segments into the cheapest comparison.
func compilePattern(v []seg, cased bool) (valueMatcher, error) {
	// merge adjacent literals (windash splits them)
	var merged []seg
	for _, s := range v {
		if s.wild == 0 && len(merged) > 0 && merged[len(merged)-1].wild == 0 {
			merged[len(merged)-1].lit += s.lit
			continue
		}
		merged = append(merged, s)
	}
	v = merged
	fold := func(s string) string {
		if cased {
			return s
		}
		return strings.ToLower(s)
	}
	lead := len(v) > 0 && v[0].wild == '*'
	trail := len(v) > 1 && v[len(v)-1].wild == '*'
	inner := v
	if lead {
		inner = inner[1:]
	}
	if trail {
		inner = inner[:len(inner)-1]
	}
	if lit, ok := literal(inner); ok {
		m := valueMatcher{s: fold(lit), cased: cased}
		switch {
		case lead && trail:
			m.op = opContains
		case lead:
			m.op = opSuffix
		case trail:
			m.op = opPrefix
		default:
			m.op = opEq
		}
		if len(v) == 1 && v[0].wild == '*' {
			m.op = opContains // "*" matches any value
		}
		return m, nil
	}
	folded := make([]seg, len(v))
	for i, s := range v {
		folded[i] = seg{lit: fold(s.lit), wild: s.wild}
	}
	return valueMatcher{op: opGlob, glob: newGlob(folded), cased: cased}, nil
}

// alternation joins literal variants of one value into one matcher.
func alternation(ms []valueMatcher) (valueMatcher, error) {
	var parts []string
	cased := true
	for _, m := range ms {
		cased = cased && m.cased
	}
	for _, m := range ms {
		var p string
		switch m.op {
		case opEq:
			p = "^" + regexp.QuoteMeta(m.s) + "$"
		case opPrefix:
			p = "^" + regexp.QuoteMeta(m.s)
		case opSuffix:
			p = regexp.QuoteMeta(m.s) + "$"
		case opContains:
			p = regexp.QuoteMeta(m.s)
		case opGlob:
			p = m.glob.regexp()
		default:
			return valueMatcher{}, fmt.Errorf("cannot combine variants with all")
		}
		parts = append(parts, "(?:"+p+")")
	}
	re, err := regexp.Compile("(?s)" + strings.Join(parts, "|"))
	if err != nil {
		return valueMatcher{}, err
	}
	return valueMatcher{op: opRe, re: re, cased: cased}, nil
}
