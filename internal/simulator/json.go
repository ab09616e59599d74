package simulator

import (
	"math/rand/v2"
	"strconv"
	"time"
)

// rec appends one streaming-API record by hand. encoding/json would cost a
// reflection walk and a map per record; the simulator feeds benchmarks at
// hundreds of thousands of records per second, so every value is appended
// straight into the caller's buffer.
type rec struct {
	b []byte
	n int // properties written so far, to place commas
}

const hexDigits = "0123456789abcdef"

// begin writes the envelope up to the opening brace of properties.
func (r *rec) begin(received int64, tenant, table string) {
	r.b = append(r.b, `{"time":"`...)
	r.b = appendTime(r.b, received)
	r.b = append(r.b, `","tenantId":"`...)
	r.b = append(r.b, tenant...)
	r.b = append(r.b, `","operationName":"Publish","category":"AdvancedHunting-`...)
	r.b = append(r.b, table...)
	r.b = append(r.b, `","properties":{`...)
	r.n = 0
}

func (r *rec) end() { r.b = append(r.b, '}', '}') }

func (r *rec) key(name string) {
	if r.n > 0 {
		r.b = append(r.b, ',')
	}
	r.n++
	r.b = append(r.b, '"')
	r.b = append(r.b, name...)
	r.b = append(r.b, '"', ':')
}

// str writes a string column; the value is escaped.
func (r *rec) str(name, v string) {
	r.key(name)
	r.b = appendString(r.b, v)
}

// strs writes a string column whose value is the concatenation of parts,
// so paths like C:\Users\<name>\Downloads need no temporary string.
func (r *rec) strs(name string, parts ...string) {
	r.key(name)
	r.b = append(r.b, '"')
	for _, p := range parts {
		r.b = appendEscaped(r.b, p)
	}
	r.b = append(r.b, '"')
}

func (r *rec) long(name string, v int64) {
	r.key(name)
	r.b = strconv.AppendInt(r.b, v, 10)
}

func (r *rec) boolean(name string, v bool) {
	r.key(name)
	r.b = strconv.AppendBool(r.b, v)
}

func (r *rec) ts(name string, ns int64) {
	r.key(name)
	r.b = append(r.b, '"')
	r.b = appendTime(r.b, ns)
	r.b = append(r.b, '"')
}

func (r *rec) null(name string) {
	r.key(name)
	r.b = append(r.b, "null"...)
}

// raw writes an already-encoded JSON value (dynamic columns).
func (r *rec) raw(name, json string) {
	r.key(name)
	r.b = append(r.b, json...)
}

// hex writes a string column of n random hex digits (hashes, device ids).
func (r *rec) hex(name string, n int, rnd *rand.Rand) {
	r.key(name)
	r.b = append(r.b, '"')
	r.b = appendHex(r.b, n, rnd)
	r.b = append(r.b, '"')
}

func appendHex(b []byte, n int, rnd *rand.Rand) []byte {
	var v uint64
	for i := range n {
		if i%16 == 0 {
			v = rnd.Uint64()
		}
		b = append(b, hexDigits[v&15])
		v >>= 4
	}
	return b
}

// appendGUID appends a random lower-case GUID (8-4-4-4-12).
func appendGUID(b []byte, rnd *rand.Rand) []byte {
	hi, lo := rnd.Uint64(), rnd.Uint64()
	for i := range 32 {
		switch i {
		case 8, 12, 16, 20:
			b = append(b, '-')
		}
		if i < 16 {
			b = append(b, hexDigits[hi&15])
			hi >>= 4
		} else {
			b = append(b, hexDigits[lo&15])
			lo >>= 4
		}
	}
	return b
}

func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	b = appendEscaped(b, s)
	return append(b, '"')
}

// appendEscaped escapes what JSON requires: quotes, backslashes (Windows
// paths are full of them) and control characters.
func appendEscaped(b []byte, s string) []byte {
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' {
			continue
		}
		b = append(b, s[start:i]...)
		switch c {
		case '"', '\\':
			b = append(b, '\\', c)
		case '\n':
			b = append(b, '\\', 'n')
		case '\t':
			b = append(b, '\\', 't')
		case '\r':
			b = append(b, '\\', 'r')
		default:
			b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&15])
		}
		start = i + 1
	}
	return append(b, s[start:]...)
}

// appendTime appends ns (Unix nanoseconds) as RFC 3339 UTC with 7
// fractional digits, the precision Defender uses ("2024-06-03T08:00:00.1234567Z").
func appendTime(b []byte, ns int64) []byte {
	t := time.Unix(0, ns).UTC()
	y, mo, d := t.Date()
	h, mi, s := t.Clock()
	b = appendDigits(b, y, 4)
	b = append(b, '-')
	b = appendDigits(b, int(mo), 2)
	b = append(b, '-')
	b = appendDigits(b, d, 2)
	b = append(b, 'T')
	b = appendDigits(b, h, 2)
	b = append(b, ':')
	b = appendDigits(b, mi, 2)
	b = append(b, ':')
	b = appendDigits(b, s, 2)
	b = append(b, '.')
	b = appendDigits(b, t.Nanosecond()/100, 7)
	return append(b, 'Z')
}

func appendDigits(b []byte, v, width int) []byte {
	var buf [9]byte
	for i := width - 1; i >= 0; i-- {
		buf[i] = byte('0' + v%10)
		v /= 10
	}
	return append(b, buf[:width]...)
}

// raws writes a dynamic column from already-encoded JSON parts.
func (r *rec) raws(name string, parts ...string) {
	r.key(name)
	for _, p := range parts {
		r.b = append(r.b, p...)
	}
}

// strInt writes a string column prefix+v+suffix (string ReportIds, ids
// inside JSON text) without formatting v into a temporary string.
func (r *rec) strInt(name, prefix string, v int64, suffix string) {
	r.key(name)
	r.b = append(r.b, '"')
	r.b = appendEscaped(r.b, prefix)
	r.b = strconv.AppendInt(r.b, v, 10)
	r.b = appendEscaped(r.b, suffix)
	r.b = append(r.b, '"')
}
