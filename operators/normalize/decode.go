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

// convert turns v into a cell of kind k. String values point into the
// parser's memory or into *buf; both stay valid until the next record.
// Empty strings in typed (non-string) columns read as null: export tools
// write "" for a missing number or time.
func convert(k kind, v *fastjson.Value, buf *[]byte, out *slot) (ok bool) {
	*out = slot{set: true}
	t := v.Type()
	if t == fastjson.TypeNull {
		out.null, out.empty = true, true
		return true
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
		return true
	case kindLong, kindInt:
		var n int64
		switch t {
		case fastjson.TypeNumber:
			var err error
			if n, err = v.Int64(); err != nil {
				f, err := v.Float64()
				if err != nil || f != math.Trunc(f) || f < math.MinInt64 || f >= math.MaxInt64 {
					return false
				}
				n = int64(f)
			}
		case fastjson.TypeString:
			s, _ := v.StringBytes()
			if len(s) == 0 {
				out.null, out.empty = true, true
				return true
			}
			var ok bool
			if n, ok = parseInt(s); !ok {
				return false
			}
		default:
			return false
		}
		if k == kindInt && (n < math.MinInt32 || n > math.MaxInt32) {
			return false
		}
		out.i = n
		return true
	case kindBool:
		switch t {
		case fastjson.TypeTrue:
			out.i = 1
			return true
		case fastjson.TypeFalse:
			return true
		case fastjson.TypeNumber:
			n, err := v.Int64()
			if err != nil || (n != 0 && n != 1) {
				return false
			}
			out.i = n
			return true
		case fastjson.TypeString:
			s, _ := v.StringBytes()
			return boolText(s, out)
		}
		return false
	case kindTime:
		if t != fastjson.TypeString {
			return false
		}
		s, _ := v.StringBytes()
		if len(s) == 0 {
			out.null, out.empty = true, true
			return true
		}
		var ok bool
		out.i, ok = parseTime(s)
		return ok
	}
	return false
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
