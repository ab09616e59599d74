package normalize

import (
	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/array"
	"github.com/apache/arrow/go/v17/arrow/bitutil"
	"github.com/apache/arrow/go/v17/arrow/memory"
)

// strBuilder builds a utf8 column straight into its three Arrow buffers
// (validity, int32 offsets, data). Most cells of a row are strings, and
// array.StringBuilder spends more on its per-value bookkeeping (a reserve
// check, an offset appended through a generic buffer builder, a bitmap call)
// than on copying the bytes; here a cell is a copy, a store and a bit.
type strBuilder struct {
	mem               memory.Allocator
	valid, offs, data *memory.Buffer
	vb                []byte  // valid's whole capacity
	ob                []int32 // offs' whole capacity; ob[n] is the end of the data
	db                []byte  // data's whole capacity
	n, nulls          int
}

func newStrBuilder(mem memory.Allocator) *strBuilder {
	s := &strBuilder{mem: mem}
	s.reset()
	return s
}

// reset starts new, empty buffers; nothing is allocated until the first
// append or reserve.
func (s *strBuilder) reset() {
	s.valid, s.offs, s.data = memory.NewResizableBuffer(s.mem), memory.NewResizableBuffer(s.mem), memory.NewResizableBuffer(s.mem)
	s.vb, s.ob, s.db = nil, nil, nil
	s.n, s.nulls = 0, 0
}

// reserve makes room for rows more values and data more bytes.
func (s *strBuilder) reserve(rows, data int) {
	if s.n+rows >= len(s.ob) {
		s.growRows(s.n + rows)
	}
	if end := s.dataLen(); end+data > len(s.db) {
		s.data.Reserve(end + data)
		s.db = s.data.Buf()
	}
}

func (s *strBuilder) growRows(rows int) {
	s.offs.Reserve((rows + 1) * arrow.Int32SizeBytes)
	s.ob = arrow.Int32Traits.CastFromBytes(s.offs.Buf())
	if s.n == 0 {
		s.ob[0] = 0
	}
	// The capacity checks read len(s.ob), which the allocator's padding can
	// make larger than asked: size the bitmap for every row it allows, or a
	// batch that outgrows its presized buffers writes past the bitmap.
	old := len(s.vb)
	s.valid.Reserve(int(bitutil.BytesForBits(int64(len(s.ob)))))
	s.vb = s.valid.Buf()
	clear(s.vb[old:]) // the allocator need not zero
}

func (s *strBuilder) room() {
	s.growRows(max(2*len(s.ob), 32))
}

func (s *strBuilder) append(b []byte) {
	if s.n+1 >= len(s.ob) {
		s.room()
	}
	end := int(s.ob[s.n])
	if end+len(b) > len(s.db) {
		s.data.Reserve(max(2*len(s.db), end+len(b), 1024))
		s.db = s.data.Buf()
	}
	copy(s.db[end:], b)
	s.vb[s.n>>3] |= 1 << (s.n & 7)
	s.n++
	s.ob[s.n] = int32(end + len(b))
}

func (s *strBuilder) appendNull() {
	if s.n+1 >= len(s.ob) {
		s.room()
	}
	s.ob[s.n+1] = s.ob[s.n]
	s.n++
	s.nulls++
}

func (s *strBuilder) appendNulls(k int) {
	for range k {
		s.appendNull()
	}
}

func (s *strBuilder) dataLen() int {
	if s.ob == nil {
		return 0
	}
	return int(s.ob[s.n])
}

// newArray hands the buffers to a String array and starts new, empty ones.
func (s *strBuilder) newArray() arrow.Array {
	if s.ob == nil {
		s.growRows(0)
	}
	rows, dlen := s.n, s.dataLen()
	s.valid.ResizeNoShrink(int(bitutil.BytesForBits(int64(rows))))
	s.offs.ResizeNoShrink((rows + 1) * arrow.Int32SizeBytes)
	s.data.ResizeNoShrink(dlen)
	d := array.NewData(arrow.BinaryTypes.String, rows, []*memory.Buffer{s.valid, s.offs, s.data}, nil, s.nulls, 0)
	a := array.NewStringData(d)
	d.Release()
	s.release()
	s.reset()
	return a
}

func (s *strBuilder) release() {
	for _, b := range []*memory.Buffer{s.valid, s.offs, s.data} {
		if b != nil {
			b.Release()
		}
	}
	s.valid, s.offs, s.data = nil, nil, nil
	s.vb, s.ob, s.db = nil, nil, nil
}
