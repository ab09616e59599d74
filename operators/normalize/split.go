package normalize

import "fmt"

// splitEnvelope handles an Event Hubs envelope too deep for the JSON parser
// to take whole: one element nested past the parser's limit must not take
// its neighbours with it. The elements are found by their brackets and each
// is judged alone: too_deep, not_json, or parsed and normalized as an element
// of a parsed envelope is. False (nothing done) when v is not an envelope
// ({"records":[...]} without a category).
func (n *Normalizer) splitEnvelope(in Input, v []byte, emit func(Batch), dead func(DeadLetter)) bool {
	spans, ok := envelopeSpans(v, n.spans[:0])
	n.spans = spans
	if !ok {
		return false
	}
	per := int64(len(v))
	if len(spans) > 0 {
		per /= int64(len(spans))
	}
	limit := n.cfg.maxDepth
	for idx, sp := range spans {
		e := v[sp[0]:sp[1]]
		if d := jsonDepth(e, limit); d > limit {
			n.records++
			n.deadLetter(in, idx, e, ReasonTooDeep, fmt.Sprintf("nesting depth %d exceeds limit %d", d, limit), dead)
			continue
		}
		ev, err := n.parser.ParseBytes(e)
		if err != nil {
			n.records++
			n.deadLetter(in, idx, e, ReasonNotJSON, err.Error(), dead)
			continue
		}
		n.addRecord(in, idx, ev, nil, per, emit, dead)
	}
	return true
}

// envelopeSpans appends to spans where each element of the records array
// of the envelope v starts and ends, or says v is not an envelope. Only the
// structure is checked (strings, brackets, commas), at any depth: each
// element is validated when it is parsed alone.
func envelopeSpans(v []byte, spans [][2]int) ([][2]int, bool) {
	i := skipSpace(v, 0)
	if i >= len(v) || v[i] != '{' {
		return spans, false
	}
	var keyBuf []byte
	haveRecs := false
	for i = skipSpace(v, i+1); ; {
		if i >= len(v) || v[i] != '"' {
			return spans, false
		}
		j, esc := scanString(v, i+1)
		if j < 0 {
			return spans, false
		}
		key := v[i+1 : j]
		if esc {
			keyBuf = unescapeTo(keyBuf[:0], key)
			key = keyBuf
		}
		if string(key) == "category" {
			return spans, false // a record, not an envelope
		}
		if i = skipSpace(v, j+1); i >= len(v) || v[i] != ':' {
			return spans, false
		}
		i = skipSpace(v, i+1)
		if string(key) == "records" {
			if haveRecs {
				return spans, false // a duplicate key: the envelope is judged whole
			}
			haveRecs = true
			if i >= len(v) || v[i] != '[' {
				return spans, false
			}
			if i = skipSpace(v, i+1); i < len(v) && v[i] == ']' {
				i++
			} else {
				for {
					j := skipAny(v, i)
					if j < 0 {
						return spans, false
					}
					spans = append(spans, [2]int{i, j})
					if i = skipSpace(v, j); i < len(v) && v[i] == ',' {
						i = skipSpace(v, i+1)
						continue
					}
					if i >= len(v) || v[i] != ']' {
						return spans, false
					}
					i++
					break
				}
			}
		} else if i = skipAny(v, i); i < 0 {
			return spans, false
		}
		if i = skipSpace(v, i); i < len(v) && v[i] == ',' {
			i = skipSpace(v, i+1)
			continue
		}
		if i >= len(v) || v[i] != '}' {
			return spans, false
		}
		return spans, haveRecs && skipSpace(v, i+1) == len(v)
	}
}

// skipAny returns the index after the JSON value at v[i], found by its
// quotes and brackets at any depth without checking what is inside, or -1.
func skipAny(v []byte, i int) int {
	if i >= len(v) {
		return -1
	}
	switch v[i] {
	case '"':
		if j, _ := scanString(v, i+1); j >= 0 {
			return j + 1
		}
		return -1
	case '{', '[':
		depth := 0
		for ; i < len(v); i++ {
			switch v[i] {
			case '"':
				j, _ := scanString(v, i+1)
				if j < 0 {
					return -1
				}
				i = j
			case '{', '[':
				depth++
			case '}', ']':
				if depth--; depth == 0 {
					return i + 1
				}
			}
		}
		return -1
	}
	j := i
	for j < len(v) && v[j] != ',' && v[j] != ']' && v[j] != '}' && v[j] != ' ' && v[j] != '\t' && v[j] != '\r' && v[j] != '\n' {
		j++
	}
	if j == i {
		return -1
	}
	return j
}
