package normalize

import (
	"bytes"
	"encoding/binary"
	"math/bits"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
)

// The fast path: a streaming-API record that is one plain record (not an
// envelope) is converted in a single pass over its bytes, without building a
// fastjson tree. It takes only records whose outcome it is sure of: valid
// JSON of the common shape (category before properties, properties of
// scalars, keys without escapes, no nesting past the limit), every value
// fitting its column and a timestamp. Anything else (a dead letter, an
// envelope, a nested property value, an unusual number) makes fastAdd give
// up before anything is committed, and the record takes the fastjson path,
// which decides it exactly as before. What fastjson accepts is a superset of
// what fastAdd accepts, and values convert the same way on both paths.

// tokKind is the JSON type of a scalar property value.
type tokKind uint8

const (
	tokNull tokKind = iota
	tokTrue
	tokFalse
	tokString // b is the unescaped string
	tokNumber // b is the number's text
	tokJSON   // b is an object or array, as it came
)

// fastResult is what fastRecord made of a record.
type fastResult uint8

const (
	fastNo       fastResult = iota // left to the fastjson path, nothing committed
	fastDone                       // normalized
	fastEnvelope                   // looks like an Event Hubs envelope
)

// fastAdd normalizes a whole Kafka record if it can; false means it
// committed nothing and the caller must take the fastjson path.
func (n *Normalizer) fastAdd(in Input, v []byte, emit func(Batch), dead func(DeadLetter)) bool {
	switch n.fastRecord(v, int64(len(v)), true, emit) {
	case fastDone:
		return true
	case fastEnvelope:
		return n.fastEnvelope(in, v, emit, dead)
	}
	return false
}

// fastEnvelope handles {"records":[...]}. The envelope is checked whole
// first (JSON the fast path takes, no category, nothing nested past the
// limit), as the fastjson path would judge it before its first element;
// then each element takes the fast path, or is parsed alone by fastjson and
// goes through addRecord as an element of the parsed envelope would.
func (n *Normalizer) fastEnvelope(in Input, v []byte, emit func(Batch), dead func(DeadLetter)) bool {
	limit := n.cfg.maxDepth
	n.spans = n.spans[:0]
	i := skipSpace(v, 0)
	if i >= len(v) || v[i] != '{' || limit < 2 {
		return false
	}
	haveRecs := false
	for i = skipSpace(v, i+1); ; {
		key, j, ok := rawKey(v, i)
		if !ok || string(key) == "category" {
			return false
		}
		if i = skipSpace(v, j); i >= len(v) || v[i] != ':' {
			return false
		}
		if i = skipSpace(v, i+1); i >= len(v) {
			return false
		}
		if string(key) == "records" {
			if haveRecs {
				return false // a duplicate key: the fastjson path dead-letters it
			}
			haveRecs = true
			if v[i] != '[' {
				return false
			}
			if i = skipSpace(v, i+1); i < len(v) && v[i] == ']' {
				i++
			} else {
				for {
					j := skipValue(v, i, 2, limit)
					if j < 0 {
						return false
					}
					n.spans = append(n.spans, [2]int{i, j})
					if i = skipSpace(v, j); i >= len(v) {
						return false
					}
					if v[i] == ',' {
						i = skipSpace(v, i+1)
						continue
					}
					if v[i] != ']' {
						return false
					}
					i++
					break
				}
			}
		} else if i = skipValue(v, i, 1, limit); i < 0 {
			return false
		}
		if i = skipSpace(v, i); i >= len(v) {
			return false
		}
		if v[i] == ',' {
			i = skipSpace(v, i+1)
			continue
		}
		if v[i] != '}' {
			return false
		}
		break
	}
	if skipSpace(v, i+1) != len(v) || !haveRecs {
		return false
	}
	// From here on the envelope is ours.
	per := int64(len(v))
	if len(n.spans) > 0 {
		per /= int64(len(n.spans))
	}
	for idx, sp := range n.spans {
		e := v[sp[0]:sp[1]]
		if n.fastRecord(e, per, false, emit) == fastDone {
			continue
		}
		ev, err := n.parser.ParseBytes(e)
		if err != nil { // not expected: the element was checked above
			n.records++
			n.deadLetter(in, idx, e, ReasonNotJSON, err.Error(), dead)
			continue
		}
		n.addRecord(in, idx, ev, nil, per, emit, dead)
	}
	return true
}

// fastRecord normalizes one streaming record (top: the whole Kafka record,
// else an envelope element of size bytes) if it can.
func (n *Normalizer) fastRecord(v []byte, size int64, top bool, emit func(Batch)) fastResult {
	n.buf = n.buf[:0]
	i := skipSpace(v, 0)
	if i >= len(v) || v[i] != '{' || n.cfg.maxDepth < 2 {
		return fastNo
	}
	i = skipSpace(v, i+1)
	var (
		st                         *tableState
		tenant, recTime            []byte
		haveCat, haveTen, haveTime bool
		haveProps, ok              bool
		key, s                     []byte
	)
	if i >= len(v) || v[i] == '}' {
		return fastNo
	}
	for {
		if key, i, ok = rawKey(v, i); !ok {
			return fastNo
		}
		if i = skipSpace(v, i); i >= len(v) || v[i] != ':' {
			return fastNo
		}
		if i = skipSpace(v, i+1); i >= len(v) {
			return fastNo
		}
		switch {
		case string(key) == "properties":
			if haveProps {
				return fastNo // a duplicate key: the fastjson path dead-letters it
			}
			haveProps = true
			if v[i] != '{' || st == nil {
				return fastNo
			}
			if i, ok = n.fastProps(v, i+1, st); !ok {
				return fastNo
			}
		case string(key) == "category":
			if haveCat {
				return fastNo
			}
			haveCat = true
			if v[i] != '"' {
				return fastNo
			}
			if s, i, ok = n.fastString(v, i+1); !ok {
				return fastNo
			}
			t := tableIndex[string(trimCategory(s))]
			if t == nil || len(s) <= len(CategoryPrefix) || string(s[:len(CategoryPrefix)]) != CategoryPrefix {
				return fastNo
			}
			st = n.state(t)
		case string(key) == "tenantId", string(key) == "time":
			isTen := string(key) == "tenantId"
			if isTen && haveTen || !isTen && haveTime {
				return fastNo
			}
			if v[i] == '"' {
				if s, i, ok = n.fastString(v, i+1); !ok {
					return fastNo
				}
			} else if s, i, ok = nil, skipValue(v, i, 1, n.cfg.maxDepth), true; i < 0 {
				return fastNo
			}
			if isTen {
				tenant, haveTen = s, true
			} else {
				recTime, haveTime = s, true
			}
		default:
			if top && !haveCat && string(key) == "records" && v[i] == '[' {
				return fastEnvelope
			}
			if i = skipValue(v, i, 1, n.cfg.maxDepth); i < 0 {
				return fastNo
			}
		}
		if i = skipSpace(v, i); i >= len(v) {
			return fastNo
		}
		if v[i] == ',' {
			i = skipSpace(v, i+1)
			continue
		}
		if v[i] != '}' {
			return fastNo
		}
		break
	}
	if skipSpace(v, i+1) != len(v) || !haveProps || !validTenant(tenant) || n.dupExtra() != nil {
		return fastNo
	}
	ts := &st.scratch[st.t.ts]
	if !ts.set || ts.null {
		us, ok := parseTime(recTime)
		if recTime == nil || !ok {
			return fastNo
		}
		*ts = slot{set: true, i: us}
	}
	n.records++
	n.commitRow(st, tenant, size, emit)
	return fastDone
}

// fastProps converts the properties object whose '{' is just before v[i]
// into st's scratch row, and returns the index after its '}'.
func (n *Normalizer) fastProps(v []byte, i int, st *tableState) (int, bool) {
	n.beginRow(st)
	if i = skipSpace(v, i); i < len(v) && v[i] == '}' {
		return i + 1, true
	}
	var (
		key []byte
		tok token
		ok  bool
	)
	for {
		// The key that followed the previous column last time is compared
		// in place: when it matches, the key needs neither a scan for its
		// closing quote nor a lookup.
		idx := -1
		if h := &st.next[n.prev+1]; h.plain && i+len(h.name)+1 < len(v) && v[i] == '"' &&
			v[i+1+len(h.name)] == '"' && h.matches(v, i+1) {
			key, idx, n.prev = v[i+1:i+1+len(h.name)], h.idx, h.idx
			i += len(h.name) + 2
		} else if key, i, ok = rawKey(v, i); !ok {
			return 0, false
		}
		if i = skipSpace(v, i); i >= len(v) || v[i] != ':' {
			return 0, false
		}
		if i = skipSpace(v, i+1); i >= len(v) {
			return 0, false
		}
		switch c := v[i]; {
		case c == '"':
			tok.kind = tokString
			if tok.b, i, ok = n.fastString(v, i+1); !ok {
				return 0, false
			}
		case c == 't' || c == 'f' || c == 'n':
			if tok.kind, i = literal(v, i); i < 0 {
				return 0, false
			}
		case c == '{' || c == '[':
			// Kept as text in string columns, re-encoded by fastjson as
			// the fastjson path does; properties is at depth 2.
			tok.kind = tokJSON
			j := skipValue(v, i, 2, n.cfg.maxDepth)
			if j < 0 {
				return 0, false
			}
			tok.b, i = v[i:j], j
		default:
			tok.kind = tokNumber
			j := number(v, i)
			if j < 0 {
				return 0, false
			}
			tok.b, i = v[i:j], j
		}
		if !n.fastCell(key, idx, &tok) {
			return 0, false
		}
		if i = skipSpace(v, i); i >= len(v) {
			return 0, false
		}
		if v[i] == ',' {
			i = skipSpace(v, i+1)
			continue
		}
		if v[i] != '}' {
			return 0, false
		}
		return i + 1, true
	}
}

type token struct {
	kind tokKind
	b    []byte
}

// fastCell is visitColumn for a token (streaming mode only); idx is the
// key's column when the caller knows it, else -1.
func (n *Normalizer) fastCell(key []byte, idx int, t *token) bool {
	st := n.cur
	ok, direct := idx >= 0, idx >= 0
	if !ok {
		idx, ok, direct = n.resolve(key)
	}
	if direct && n.seenKey(idx) {
		return false // a duplicate key: the fastjson path dead-letters it
	}
	if t.kind == tokJSON && (!ok || isText(st.cols[idx].kind)) {
		sv, err := n.sub.ParseBytes(t.b)
		if err != nil {
			return false
		}
		start := len(n.buf)
		n.buf = sv.MarshalTo(n.buf)
		t = &token{kind: tokString, b: n.buf[start:]}
	}
	if !ok {
		var s slot
		convertToken(kindString, t, &s)
		n.extras = append(n.extras, extra{name: key, val: s})
		return true
	}
	dst := &st.scratch[idx]
	if !dst.set {
		return convertToken(st.cols[idx].kind, t, dst)
	}
	var s slot // a repeated key: the rule of setSlot decides
	if !convertToken(st.cols[idx].kind, t, &s) {
		return false
	}
	setSlot(dst, s)
	return true
}

func isText(k kind) bool { return k == kindString || k == kindDict || k == kindDynamic }

// convertToken is convert for a scalar token; false also where convert
// might succeed by a path this one does not take (numbers that are not plain
// integers in integer and bool columns).
func convertToken(k kind, t *token, out *slot) bool {
	*out = slot{set: true}
	if t.kind == tokNull {
		out.null, out.empty = true, true
		return true
	}
	if t.kind == tokJSON {
		return false // fastCell re-encodes it for text columns
	}
	switch k {
	case kindString, kindDict, kindDynamic:
		switch t.kind {
		case tokTrue:
			out.b = trueText
		case tokFalse:
			out.b = falseText
		default: // strings, and numbers as their JSON text
			out.b = t.b
		}
		out.empty = len(out.b) == 0
		return true
	case kindLong, kindInt:
		var v int64
		var ok bool
		switch t.kind {
		case tokNumber:
			v, ok = plainInt(t.b)
		case tokString:
			if len(t.b) == 0 {
				out.null, out.empty = true, true
				return true
			}
			v, ok = parseInt(t.b)
		}
		if !ok || k == kindInt && (v < -1<<31 || v > 1<<31-1) {
			return false
		}
		out.i = v
		return true
	case kindBool:
		switch t.kind {
		case tokTrue:
			out.i = 1
			return true
		case tokFalse:
			return true
		case tokNumber:
			v, ok := plainInt(t.b)
			if !ok || (v != 0 && v != 1) {
				return false
			}
			out.i = v
			return true
		}
		return boolText(t.b, out)
	case kindTime:
		if t.kind != tokString {
			return false
		}
		if len(t.b) == 0 {
			out.null, out.empty = true, true
			return true
		}
		var ok bool
		out.i, ok = parseTime(t.b)
		return ok
	}
	return false
}

// plainInt parses -?[0-9]{1,17}, which fastjson's Int64 parses to the same
// value; anything else is left to the fastjson path.
func plainInt(b []byte) (int64, bool) {
	d := b
	if len(d) > 0 && d[0] == '-' {
		d = d[1:]
	}
	if len(d) > 17 || len(d) > 0 && d[0] == '+' {
		return 0, false
	}
	return parseInt(b)
}

func skipSpace(v []byte, i int) int {
	if i < len(v) && v[i] > ' ' {
		return i
	}
	for i < len(v) && (v[i] == ' ' || v[i] == '\n' || v[i] == '\t' || v[i] == '\r') {
		i++
	}
	return i
}

// rawKey reads an object key at v[i] ('"'), refusing keys with escapes.
func rawKey(v []byte, i int) ([]byte, int, bool) {
	if i >= len(v) || v[i] != '"' {
		return nil, 0, false
	}
	j := quoteOrBackslash(v, i+1)
	if j < 0 || v[j] != '"' {
		return nil, 0, false
	}
	return v[i+1 : j], j + 1, true
}

// matches says whether v holds h.name at i (the caller checked the length).
// Names of 8 to 24 bytes are compared as words loaded from v, the last one
// overlapping, instead of through a call of memequal.
func (h *keyHint) matches(v []byte, i int) bool {
	l := len(h.name)
	if l < 8 || l > 24 {
		return string(v[i:i+l]) == h.name
	}
	return binary.LittleEndian.Uint64(v[i:]) == h.w[0] &&
		binary.LittleEndian.Uint64(v[i+l-8:]) == h.w[2] &&
		(l <= 16 || binary.LittleEndian.Uint64(v[i+8:]) == h.w[1])
}

const (
	lsb = 0x0101010101010101
	msb = 0x8080808080808080
)

// quoteOrBackslash returns the index of the first '"' or '\' in v from i,
// or -1, eight bytes at a time: strings and keys are mostly short, where
// this beats two calls of the assembly IndexByte.
func quoteOrBackslash(v []byte, i int) int {
	for ; i+8 <= len(v); i += 8 {
		x := binary.LittleEndian.Uint64(v[i:])
		q := x ^ (lsb * '"')
		b := x ^ (lsb * '\\')
		// A byte of q or b is zero where x holds the character; the lowest
		// flagged byte is exact (only bytes above a zero can be flagged
		// falsely).
		if m := ((q-lsb)&^q | (b-lsb)&^b) & msb; m != 0 {
			return i + bits.TrailingZeros64(m)/8
		}
	}
	for ; i < len(v); i++ {
		if v[i] == '"' || v[i] == '\\' {
			return i
		}
	}
	return -1
}

// scanString finds the end of the string whose contents start at v[i]: the
// index of its closing quote (-1 if none) and whether it has escapes.
func scanString(v []byte, i int) (int, bool) {
	j := quoteOrBackslash(v, i)
	if j < 0 {
		return -1, false
	}
	if v[j] == '"' {
		return j, false
	}
	return stringEnd(v, j), true
}

// stringEnd returns the index of the quote that closes the string whose
// contents start at v[i], as fastjson finds it, or -1.
func stringEnd(v []byte, i int) int {
	for {
		k := bytes.IndexByte(v[i:], '"')
		if k < 0 {
			return -1
		}
		j := i + k
		bs := 0
		for p := j - 1; p >= 0 && v[p] == '\\'; p-- {
			bs++
		}
		if bs%2 == 0 {
			return j
		}
		i = j + 1
	}
}

// fastString reads the string whose contents start at v[i], unescaped
// (into n.buf when it has escapes), and returns the index after its quote.
func (n *Normalizer) fastString(v []byte, i int) ([]byte, int, bool) {
	j, esc := scanString(v, i)
	if j < 0 {
		return nil, 0, false
	}
	raw := v[i:j]
	if !esc {
		return raw, j + 1, true
	}
	start := len(n.buf)
	n.buf = unescapeTo(n.buf, raw)
	return n.buf[start:], j + 1, true
}

// literal reads true, false or null at v[i]; -1 for anything else.
func literal(v []byte, i int) (tokKind, int) {
	switch {
	case bytes.HasPrefix(v[i:], trueText):
		return tokTrue, i + 4
	case bytes.HasPrefix(v[i:], falseText):
		return tokFalse, i + 5
	case bytes.HasPrefix(v[i:], nullText):
		return tokNull, i + 4
	}
	return 0, -1
}

var nullText = []byte("null")

// number returns the end of a number at v[i]: a run of the characters
// fastjson takes for numbers, starting with a digit or '-' and a digit
// (fastjson takes more, such as NaN: those go its way). -1 if none.
func number(v []byte, i int) int {
	j := i
	if j < len(v) && v[j] == '-' {
		j++
	}
	if j >= len(v) || v[j] < '0' || v[j] > '9' {
		return -1
	}
	for j < len(v) {
		c := v[j]
		if (c >= '0' && c <= '9') || c == '.' || c == '-' || c == 'e' || c == 'E' || c == '+' {
			j++
			continue
		}
		break
	}
	return j
}

// skipValue checks the JSON value at v[i], held by a container at depth
// depth (1 for a value of the root object), and returns the index after it, or -1 when it is not
// one fastjson would take or nests past limit.
func skipValue(v []byte, i, depth, limit int) int {
	if i >= len(v) {
		return -1
	}
	switch c := v[i]; c {
	case '"':
		if j, _ := scanString(v, i+1); j >= 0 {
			return j + 1
		}
		return -1
	case '{', '[':
		if depth+1 > limit {
			return -1
		}
		closing := byte('}')
		if c == '[' {
			closing = ']'
		}
		if i = skipSpace(v, i+1); i < len(v) && v[i] == closing {
			return i + 1
		}
		for {
			if c == '{' {
				if i >= len(v) || v[i] != '"' {
					return -1
				}
				j, _ := scanString(v, i+1)
				if j < 0 {
					return -1
				}
				if i = skipSpace(v, j+1); i >= len(v) || v[i] != ':' {
					return -1
				}
				i = skipSpace(v, i+1)
			}
			if i = skipValue(v, i, depth+1, limit); i < 0 {
				return -1
			}
			if i = skipSpace(v, i); i >= len(v) {
				return -1
			}
			if v[i] == ',' {
				i = skipSpace(v, i+1)
				continue
			}
			if v[i] != closing {
				return -1
			}
			return i + 1
		}
	case 't', 'f', 'n':
		_, j := literal(v, i)
		return j
	}
	return number(v, i)
}

// unescapeTo appends s unescaped as fastjson's unescapeStringBestEffort
// does: unknown or broken escapes are kept as they are.
func unescapeTo(b, s []byte) []byte {
	for len(s) > 0 {
		k := bytes.IndexByte(s, '\\')
		if k < 0 {
			return append(b, s...)
		}
		b = append(b, s[:k]...)
		s = s[k+1:]
		if len(s) == 0 {
			return b // a trailing backslash: fastjson drops it too
		}
		ch := s[0]
		s = s[1:]
		switch ch {
		case '"', '\\', '/':
			b = append(b, ch)
		case 'b':
			b = append(b, '\b')
		case 'f':
			b = append(b, '\f')
		case 'n':
			b = append(b, '\n')
		case 'r':
			b = append(b, '\r')
		case 't':
			b = append(b, '\t')
		case 'u':
			if len(s) < 4 {
				b = append(b, "\\u"...)
				break
			}
			xs := s[:4]
			x, err := strconv.ParseUint(string(xs), 16, 16)
			if err != nil {
				b = append(b, "\\u"...)
				break
			}
			s = s[4:]
			if !utf16.IsSurrogate(rune(x)) {
				b = utf8.AppendRune(b, rune(x))
				break
			}
			if len(s) < 6 || s[0] != '\\' || s[1] != 'u' {
				b = append(b, "\\u"...)
				b = append(b, xs...)
				break
			}
			x1, err := strconv.ParseUint(string(s[2:6]), 16, 16)
			if err != nil {
				b = append(b, "\\u"...)
				b = append(b, xs...)
				break
			}
			b = utf8.AppendRune(b, utf16.DecodeRune(rune(x), rune(x1)))
			s = s[6:]
		default:
			b = append(b, '\\', ch)
		}
	}
	return b
}
