package ipc

import (
	"encoding/binary"
	"errors"
	"fmt"

	flatbuffers "github.com/google/flatbuffers/go"
)

// MaxDecodedBytes bounds what Decode allocates for one message: the
// decompressed size of its buffers. Batches the normalizer emits are a few
// MB (normalize.batch_bytes of input, 4 MiB by default); a value that claims
// more is refused before anything is allocated.
var MaxDecodedBytes int64 = 256 << 20

// checkStream walks the framing and the flatbuffer metadata of an Arrow IPC
// stream before the Arrow reader does. The reader trusts the lengths it
// finds there and allocates them: a corrupt or hostile value that claims a
// billion fields, a body of terabytes or a buffer that decompresses to
// terabytes would kill the process (an out-of-memory is not a panic that
// recover catches). Every length that the reader allocates by is checked
// against the bytes that are really there, and decompressed sizes against
// MaxDecodedBytes. Out-of-range reads of the metadata itself panic and are
// reported as corrupt.
func checkStream(value []byte) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("corrupt metadata: %v", r)
		}
	}()
	var decoded int64
	for i := 0; i < len(value); {
		if len(value)-i < 4 {
			return errors.New("truncated message length")
		}
		n := binary.LittleEndian.Uint32(value[i:])
		i += 4
		if n == 0xFFFFFFFF {
			if len(value)-i < 4 {
				return errors.New("truncated message length")
			}
			n = binary.LittleEndian.Uint32(value[i:])
			i += 4
		}
		if n == 0 {
			return nil // end of stream
		}
		if int64(n) > int64(len(value)-i) || int32(n) < 0 {
			return fmt.Errorf("message metadata of %d bytes, %d left", n, len(value)-i)
		}
		meta := value[i : i+int(n)]
		i += int(n)
		body, err := checkMessage(meta, value[i:], &decoded)
		if err != nil {
			return err
		}
		i += int(body)
	}
	return nil
}

// Field slots (vtable offsets) of the Arrow flatbuffer tables read here
// (format/Message.fbs, format/Schema.fbs).
func slot(i int) flatbuffers.VOffsetT { return flatbuffers.VOffsetT(4 + 2*i) }

const (
	headerSchema          = 1
	headerDictionaryBatch = 2
	headerRecordBatch     = 3
)

// checkMessage checks one Message flatbuffer, whose body starts rest, and
// returns its body length.
func checkMessage(meta, rest []byte, decoded *int64) (int64, error) {
	left := int64(len(rest))
	if len(meta) < 4 {
		return 0, errors.New("message metadata too short")
	}
	m := &flatbuffers.Table{Bytes: meta, Pos: flatbuffers.GetUOffsetT(meta)}
	var body int64
	if o := m.Offset(slot(3)); o != 0 {
		body = m.GetInt64(m.Pos + flatbuffers.UOffsetT(o))
	}
	if body < 0 || body > left {
		return 0, fmt.Errorf("message body of %d bytes, %d left", body, left)
	}
	if err := checkKeyValues(m, slot(4)); err != nil {
		return 0, err
	}
	var header flatbuffers.Table
	if o := m.Offset(slot(2)); o != 0 {
		m.Union(&header, flatbuffers.UOffsetT(o))
	} else {
		return body, nil
	}
	var kind byte
	if o := m.Offset(slot(1)); o != 0 {
		kind = m.GetByte(m.Pos + flatbuffers.UOffsetT(o))
	}
	switch kind {
	case headerSchema:
		return body, checkSchema(&header)
	case headerRecordBatch:
		return body, checkRecordBatch(&header, rest[:body], decoded)
	case headerDictionaryBatch:
		if o := header.Offset(slot(1)); o != 0 {
			rb := flatbuffers.Table{Bytes: header.Bytes, Pos: header.Indirect(header.Pos + flatbuffers.UOffsetT(o))}
			return body, checkRecordBatch(&rb, rest[:body], decoded)
		}
	}
	return body, nil
}

// vector returns the start and length of the vector in slot s of t, after
// checking that length × size bytes are there.
func vector(t *flatbuffers.Table, s flatbuffers.VOffsetT, size int) (flatbuffers.UOffsetT, int, error) {
	o := t.Offset(s)
	if o == 0 {
		return 0, 0, nil
	}
	n := t.VectorLen(flatbuffers.UOffsetT(o))
	start := t.Vector(flatbuffers.UOffsetT(o))
	if n < 0 || uint64(n)*uint64(size) > uint64(len(t.Bytes))-uint64(min(int(start), len(t.Bytes))) {
		return 0, 0, fmt.Errorf("vector of %d entries in %d bytes of metadata", n, len(t.Bytes))
	}
	return start, n, nil
}

func checkKeyValues(t *flatbuffers.Table, s flatbuffers.VOffsetT) error {
	_, _, err := vector(t, s, 4)
	return err
}

// checkSchema checks a Schema table: its fields, recursively.
func checkSchema(s *flatbuffers.Table) error {
	if err := checkKeyValues(s, slot(2)); err != nil {
		return err
	}
	if _, _, err := vector(s, slot(3), 8); err != nil { // features
		return err
	}
	return checkFields(s, slot(1), 0)
}

// checkFields checks the vector of Field tables in slot s of t.
func checkFields(t *flatbuffers.Table, s flatbuffers.VOffsetT, depth int) error {
	if depth > 64 {
		return errors.New("fields nested too deep")
	}
	start, n, err := vector(t, s, 4)
	if err != nil {
		return err
	}
	for j := range n {
		f := flatbuffers.Table{Bytes: t.Bytes, Pos: t.Indirect(start + flatbuffers.UOffsetT(4*j))}
		if err := checkKeyValues(&f, slot(6)); err != nil {
			return err
		}
		if err := checkFields(&f, slot(5), depth+1); err != nil { // children
			return err
		}
	}
	return nil
}

// checkRecordBatch checks a RecordBatch table against its message's body:
// its field nodes and buffers are there, every buffer lies in the body, and
// the buffers, decompressed, hold no more than MaxDecodedBytes in all.
func checkRecordBatch(rb *flatbuffers.Table, body []byte, decoded *int64) error {
	if _, _, err := vector(rb, slot(1), 16); err != nil { // nodes: FieldNode structs
		return err
	}
	if _, _, err := vector(rb, slot(4), 8); err != nil { // variadicBufferCounts
		return err
	}
	start, n, err := vector(rb, slot(2), 16) // buffers: Buffer structs {offset, length}
	if err != nil {
		return err
	}
	compressed := rb.Offset(slot(3)) != 0
	bl := int64(len(body))
	for j := range n {
		p := start + flatbuffers.UOffsetT(16*j)
		off, length := rb.GetInt64(p), rb.GetInt64(p+8)
		if off < 0 || length < 0 || off > bl || length > bl-off {
			return fmt.Errorf("buffer at %d of %d bytes outside a body of %d", off, length, bl)
		}
		size := length
		if compressed && length > 0 {
			// A compressed buffer starts with its decompressed length,
			// -1 when it was left as it is.
			if length < 8 {
				return fmt.Errorf("compressed buffer of %d bytes", length)
			}
			switch u := int64(binary.LittleEndian.Uint64(body[off:])); {
			case u == -1:
				size = length - 8
			case u < 0:
				return fmt.Errorf("compressed buffer claims %d bytes", u)
			default:
				size = u
			}
		}
		if *decoded += size; *decoded > MaxDecodedBytes || *decoded < 0 {
			return fmt.Errorf("buffers of more than the %d bytes a message may hold", MaxDecodedBytes)
		}
	}
	return nil
}
