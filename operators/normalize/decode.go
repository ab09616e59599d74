package normalize

import (
	"bytes"
	"fmt"
	"math"

	"github.com/valyala/fastjson"
)

// maxParserDepth keeps the configured depth limit below fastjson's own
// (fastjson.MaxDepth), leaving room for the envelope's two levels, so that a
// deep record is always reported as too_deep rather than as not_json.
const maxParserDepth = fastjson.MaxDepth - 10

// slot is one converted cell of the scratch row: a record is converted in
// full into slots before anything is appended, so a record that fails midway
// leaves no half row in the builders.
type slot struct {
	set   bool
	null  bool
	empty bool   // null or "" (a suffixed duplicate with a value wins)
	b     []byte // string, dictionary and dynamic columns
	i     int64  // long, int, bool (0/1) and datetime (µs since epoch)
}

func (s *slot) isEmpty() bool { return !s.set || s.empty }

// convert turns v into a cell of kind k: "" when it fits, else the reason
// it does not (wrong_type, or out_of_range for an integer the column cannot
// hold). String values point into the parser's memory or into *buf; both
// stay valid until the next record. Empty strings in typed (non-string)
// columns read as null: export tools write "" for a missing number or time.
func convert(k kind, v *fastjson.Value, buf *[]byte, out *slot) Reason {
	*out = slot{set: true}
	t := v.Type()
	if t == fastjson.TypeNull {
		out.null, out.empty = true, true
		return ""
	}
	switch k {
	case kindString, kindDict, kindDynamic:
		switch t {
		case fastjson.TypeString:
			out.b, _ = v.StringBytes()
		case fastjson.TypeTrue:
			out.b = trueText
		case fastjson.TypeFalse:
			out.b = falseText
		default:
			// Numbers keep their JSON text; objects and arrays (dynamic
			// values, or products that send objects where the schema says
			// string) keep their JSON text.
			start := len(*buf)
			*buf = v.MarshalTo(*buf)
			out.b = (*buf)[start:]
		}
		out.empty = len(out.b) == 0
		return ""
	case kindLong, kindInt:
		lo, hi := int64(math.MinInt64), int64(math.MaxInt64)
		if k == kindInt {
			lo, hi = math.MinInt32, math.MaxInt32
		}
		var r numResult
		switch t {
		case fastjson.TypeNumber:
			// The number's text, converted exactly: never through a float,
			// which would round 9007199254740993.0 or clamp
			// -9223372036854775809 silently.
			start := len(*buf)
			*buf = v.MarshalTo(*buf)
			out.i, r = decimalInt((*buf)[start:], lo, hi)
		case fastjson.TypeString:
			s, _ := v.StringBytes()
			if len(s) == 0 {
				out.null, out.empty = true, true
				return ""
			}
			out.i, r = intText(s, lo, hi)
		default:
			return ReasonWrongType
		}
		return r.reason()
	case kindBool:
		switch t {
		case fastjson.TypeTrue:
			out.i = 1
			return ""
		case fastjson.TypeFalse:
			return ""
		case fastjson.TypeNumber:
			n, err := v.Int64()
			if err != nil || (n != 0 && n != 1) {
				return ReasonWrongType
			}
			out.i = n
			return ""
		case fastjson.TypeString:
			s, _ := v.StringBytes()
			if boolText(s, out) {
				return ""
			}
		}
		return ReasonWrongType
	case kindTime:
		if t != fastjson.TypeString {
			return ReasonWrongType
		}
		s, _ := v.StringBytes()
		if len(s) == 0 {
			out.null, out.empty = true, true
			return ""
		}
		var ok bool
		if out.i, ok = parseTime(s); !ok {
			return ReasonWrongType
		}
		return ""
	}
	return ReasonWrongType
}

// numResult is what decimalInt and intText made of a number.
type numResult uint8

const (
	numOK       numResult = iota
	numBad                // not a number of the accepted form, or not a whole number
	numOutRange           // a number outside the column's range
)

func (r numResult) reason() Reason {
	switch r {
	case numOK:
		return ""
	case numOutRange:
		return ReasonOutOfRange
	}
	return ReasonWrongType
}

// decimalInt converts the text of a JSON number (an optional sign, digits,
// an optional fraction and exponent, as fastjson takes them) exactly into an
// integer in [lo, hi]. A value outside the range, fraction or not
// (-9223372036854775808.5), is numOutRange; a value inside it with a
// fraction (1.5) is numBad; 1e3 and 5.0 are whole numbers. Nothing goes
// through a float.
func decimalInt(s []byte, lo, hi int64) (int64, numResult) {
	neg := false
	if len(s) > 0 && (s[0] == '-' || s[0] == '+') {
		neg = s[0] == '-'
		s = s[1:]
	}
	i := digitsEnd(s, 0)
	intPart := s[:i]
	var fracPart []byte
	if i < len(s) && s[i] == '.' {
		j := digitsEnd(s, i+1)
		fracPart, i = s[i+1:j], j
	}
	if len(intPart)+len(fracPart) == 0 {
		return 0, numBad
	}
	exp := 0
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		eneg := i < len(s) && s[i] == '-'
		if i < len(s) && (s[i] == '-' || s[i] == '+') {
			i++
		}
		j := digitsEnd(s, i)
		if j == i {
			return 0, numBad
		}
		for _, c := range s[i:j] {
			if exp < 1<<40 { // past any record's length of digits: saturate
				exp = exp*10 + int(c-'0')
			}
		}
		if eneg {
			exp = -exp
		}
		i = j
	}
	if i != len(s) {
		return 0, numBad
	}
	// The digits of intPart then fracPart, d(0) ... d(n-1), with the point
	// after len(intPart) of them, shifted by exp.
	n := len(intPart) + len(fracPart)
	d := func(j int) byte {
		if j < len(intPart) {
			return intPart[j]
		}
		if j < n {
			return fracPart[j-len(intPart)]
		}
		return '0'
	}
	first := 0
	for first < n && d(first) == '0' {
		first++
	}
	if first == n {
		return 0, numOK // zero, whatever its sign and exponent
	}
	// The value is 0.d(first)d(first+1)... × 10^wholeDigits.
	wholeDigits := len(intPart) + exp - first
	if wholeDigits > 20 { // at least 10^20: beyond any int64
		return 0, numOutRange
	}
	var whole uint64
	for j := first; j < first+wholeDigits; j++ {
		c := uint64(d(j) - '0')
		if whole > (math.MaxUint64-c)/10 {
			return 0, numOutRange
		}
		whole = whole*10 + c
	}
	hasFrac := false
	for j := max(first, first+wholeDigits); j < n && !hasFrac; j++ {
		hasFrac = d(j) != '0'
	}
	limit := uint64(hi)
	if neg {
		limit = uint64(-(lo + 1)) + 1 // |lo|, which for MinInt64 only fits a uint64
	}
	if whole > limit || whole == limit && hasFrac {
		return 0, numOutRange
	}
	if hasFrac {
		return 0, numBad
	}
	if neg {
		return int64(-whole), numOK // for |MinInt64| the negation wraps to MinInt64, as it should
	}
	return int64(whole), numOK
}

func digitsEnd(s []byte, i int) int {
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	return i
}

// intText converts a numeric string in an integer column: an optional sign
// and decimal digits only (no fraction, no exponent), in [lo, hi].
func intText(s []byte, lo, hi int64) (int64, numResult) {
	d := s
	if len(d) > 0 && (d[0] == '-' || d[0] == '+') {
		d = d[1:]
	}
	if len(d) == 0 {
		return 0, numBad
	}
	for _, c := range d {
		if c < '0' || c > '9' {
			return 0, numBad
		}
	}
	return decimalInt(s, lo, hi)
}

// boolText converts a string in a bool column: "" is null, true/false in
// any case and 1/0 are the values.
func boolText(s []byte, out *slot) bool {
	switch {
	case len(s) == 0:
		out.null, out.empty = true, true
	case bytes.EqualFold(s, trueText) || (len(s) == 1 && s[0] == '1'):
		out.i = 1
	case bytes.EqualFold(s, falseText) || (len(s) == 1 && s[0] == '0'):
	default:
		return false
	}
	return true
}

var (
	trueText  = []byte("true")
	falseText = []byte("false")
)

// parseInt parses a decimal integer with an optional sign, without the
// string conversion strconv would need.
func parseInt(b []byte) (int64, bool) {
	neg := false
	if len(b) > 0 && (b[0] == '-' || b[0] == '+') {
		neg = b[0] == '-'
		b = b[1:]
	}
	if len(b) == 0 || len(b) > 19 {
		return 0, false
	}
	var n uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + uint64(c-'0')
	}
	if neg {
		if n > 1<<63 {
			return 0, false
		}
		return -int64(n), true
	}
	if n > math.MaxInt64 {
		return 0, false
	}
	return int64(n), true
}

// describe names a JSON value for an error message, briefly.
func describe(v *fastjson.Value) string {
	s := v.String()
	if len(s) > 64 {
		s = s[:64] + "..."
	}
	return fmt.Sprintf("%s %s", v.Type(), s)
}

// jsonDepth returns the deepest nesting of objects and arrays in b, a
// pre-parse scan so that the limit fires before the parser's. The common
// case (few brackets at all) is answered by the SIMD-backed bytes.Count.
// Records that take the fast path (fast.go) never get here: it tracks the
// depth as it goes.
func jsonDepth(b []byte, limit int) int {
	if bytes.Count(b, openBrace)+bytes.Count(b, openBracket) <= limit {
		return 0
	}
	depth, maxDepth := 0, 0
	for i := 0; i < len(b); i++ {
		switch b[i] {
		case '"':
			// Jump over the string with the SIMD-backed IndexByte: strings are
			// most of a record's bytes.
			j := i + 1
			for {
				k := bytes.IndexByte(b[j:], '"')
				if k < 0 {
					return maxDepth // unterminated: the parser will reject it
				}
				j += k
				bs := 0
				for p := j - 1; p > i && b[p] == '\\'; p-- {
					bs++
				}
				if bs%2 == 0 {
					break
				}
				j++
			}
			i = j
		case '{', '[':
			depth++
			maxDepth = max(maxDepth, depth)
		case '}', ']':
			depth--
		}
	}
	return maxDepth
}

var (
	openBrace   = []byte("{")
	openBracket = []byte("[")
)

// valueDepth is the nesting depth of a parsed value (1 for an empty object).
// Only used on the slow path, when a whole envelope was deeper than the limit
// and each element is judged on its own.
func valueDepth(v *fastjson.Value) int {
	d := 0
	switch v.Type() {
	case fastjson.TypeObject:
		o, _ := v.Object()
		o.Visit(func(_ []byte, c *fastjson.Value) { d = max(d, valueDepth(c)) })
	case fastjson.TypeArray:
		a, _ := v.Array()
		for _, c := range a {
			d = max(d, valueDepth(c))
		}
	default:
		return 0
	}
	return d + 1
}

// appendJSONString appends s as a JSON string literal.
func appendJSONString(dst, s []byte) []byte {
	const hex = "0123456789abcdef"
	dst = append(dst, '"')
	for _, c := range s {
		switch {
		case c == '"' || c == '\\':
			dst = append(dst, '\\', c)
		case c < 0x20:
			dst = append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		default:
			dst = append(dst, c)
		}
	}
	return append(dst, '"')
}
