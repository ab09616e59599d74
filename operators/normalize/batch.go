package normalize

import (
	"encoding/binary"
	"math"
	"strings"
	"time"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/array"
	"github.com/apache/arrow/go/v17/arrow/memory"
)

// colBuilder is one column's Arrow builder with its concrete type resolved
// once, so appending a cell is a switch, not an interface assertion. String
// and dynamic columns use str (b is nil), the others an Arrow builder.
type colBuilder struct {
	kind kind
	b    array.Builder
	str  *strBuilder
	dict *array.BinaryDictionaryBuilder
	i64  *array.Int64Builder
	i32  *array.Int32Builder
	bl   *array.BooleanBuilder
	ts   *array.TimestampBuilder
}

func newColBuilder(mem memory.Allocator, k kind) colBuilder {
	if k == kindString || k == kindDynamic {
		return colBuilder{kind: k, str: newStrBuilder(mem)}
	}
	b := array.NewBuilder(mem, arrowType(k))
	c := colBuilder{kind: k, b: b}
	switch k {
	case kindDict:
		c.dict = b.(*array.BinaryDictionaryBuilder)
	case kindLong:
		c.i64 = b.(*array.Int64Builder)
	case kindInt:
		c.i32 = b.(*array.Int32Builder)
	case kindBool:
		c.bl = b.(*array.BooleanBuilder)
	case kindTime:
		c.ts = b.(*array.TimestampBuilder)
	}
	return c
}

func (c *colBuilder) append(s *slot) {
	if c.str != nil {
		if !s.set || s.null {
			c.str.appendNull()
		} else {
			c.str.append(s.b)
		}
		return
	}
	if !s.set || s.null {
		c.b.AppendNull()
		return
	}
	switch c.kind {
	case kindDict:
		if err := c.dict.Append(s.b); err != nil {
			c.dict.AppendNull() // cannot happen for utf8 values; never lose the row
		}
	case kindLong:
		c.i64.Append(s.i)
	case kindInt:
		c.i32.Append(int32(s.i))
	case kindBool:
		c.bl.Append(s.i != 0)
	case kindTime:
		c.ts.Append(arrow.Timestamp(s.i))
	}
}

func (c *colBuilder) appendNulls(n int) {
	if c.str != nil {
		c.str.appendNulls(n)
		return
	}
	c.b.AppendNulls(n)
}

func (c *colBuilder) reserve(rows, data int) {
	if c.str != nil {
		c.str.reserve(rows, data)
		return
	}
	c.b.Reserve(rows)
}

func (c *colBuilder) dataLen() int {
	if c.str != nil {
		return c.str.dataLen()
	}
	return 0
}

func (c *colBuilder) newArray() arrow.Array {
	if c.str != nil {
		return c.str.newArray()
	}
	a := c.b.NewArray()
	if c.dict != nil {
		// The memo table otherwise keeps every value ever seen, and each
		// batch would carry the dictionary of all previous ones.
		c.dict.ResetFull()
	}
	return a
}

func (c *colBuilder) release() {
	if c.str != nil {
		c.str.release()
		return
	}
	c.b.Release()
}

// pending is the open batch of one (table, tenant), with the columns this
// tenant promoted: promotion is per tenant, so a key only one tenant sends
// never becomes a column of another's batches, and each tenant has its own
// budget of MaxExtraColumns.
type pending struct {
	tenant     string
	cols       []colBuilder // the table's defined columns, then extras
	extras     []columnDef  // promoted columns, in order
	extraIndex map[string]int
	extraCol   int    // index in extras of ExtraFieldsColumn, -1 until needed
	scratch    []slot // the current row's extras
	version    int
	schema     *arrow.Schema
	rows       int
	bytes      int64
	first      time.Time // arrival (clock) of the oldest row, for FlushDue
	minT, maxT int64
	// lastRows and lastData size the builders of the next batch like the
	// previous one, so a batch costs one allocation per buffer instead of
	// a doubling series of reallocations.
	lastRows int
	lastData []int
}

// reserve presizes p's builders from the previous batch.
func (p *pending) reserve() {
	if p.lastRows == 0 {
		return
	}
	// An eighth more than last time: batches cut by input bytes vary in
	// rows and data, and outgrowing a buffer copies it whole into one
	// twice its size.
	for i := range p.cols {
		data := 0
		if i < len(p.lastData) {
			data = p.lastData[i] + p.lastData[i]/8
		}
		p.cols[i].reserve(p.lastRows+p.lastRows/8, data)
	}
}

// tableState is a Normalizer's view of a table: the defined columns, and
// the open batches per tenant (which hold the columns each tenant promoted).
type tableState struct {
	t       *table
	cols    []columnDef
	index   map[string]int
	scratch []slot
	seen    []uint64 // seen[c] is the Normalizer's row whose own key set column c
	// next[c+1] is the key that followed column c in the last record (c is
	// -1 at the start of a record): visitColumn's guess for the next key.
	next    []keyHint
	pending map[string]*pending

	normalized, inferred int64
}

func newTableState(t *table) *tableState {
	st := &tableState{
		t: t, cols: append([]columnDef(nil), t.columns...), index: make(map[string]int, len(t.columns)),
		scratch: make([]slot, len(t.columns)), seen: make([]uint64, len(t.columns)), pending: map[string]*pending{},
		next: make([]keyHint, len(t.columns)+1),
	}
	for i := range st.next {
		st.next[i].idx = -1
	}
	for k, v := range t.index {
		st.index[k] = v
	}
	return st
}

// keyHint is a key and its column; idx is -1 when there is no hint.
type keyHint struct {
	name  string
	idx   int
	plain bool      // name has no '"' or '\\': the fast path may compare it in place
	w     [3]uint64 // name[0:8], name[8:16], name[len-8:] when 8 <= len <= 24
}

func newKeyHint(name string, idx int) keyHint {
	h := keyHint{name: name, idx: idx, plain: !strings.ContainsAny(name, "\"\\")}
	if l := len(name); l >= 8 && l <= 24 {
		h.w[0] = binary.LittleEndian.Uint64([]byte(name[:8]))
		h.w[2] = binary.LittleEndian.Uint64([]byte(name[l-8:]))
		if l > 16 {
			h.w[1] = binary.LittleEndian.Uint64([]byte(name[8:16]))
		}
	}
	return h
}

func (st *tableState) newPending(tenant string, mem memory.Allocator) *pending {
	p := &pending{tenant: tenant, extraCol: -1, version: SchemaVersion, schema: st.t.schema}
	st.ensureCols(p, mem)
	return p
}

// ensureCols gives p builders again after it was idle (flush).
func (st *tableState) ensureCols(p *pending, mem memory.Allocator) {
	if p.cols != nil {
		return
	}
	p.cols = make([]colBuilder, 0, len(st.cols)+len(p.extras))
	for _, c := range st.cols {
		p.cols = append(p.cols, newColBuilder(mem, c.kind))
	}
	for _, c := range p.extras {
		p.cols = append(p.cols, newColBuilder(mem, c.kind))
	}
}

// promote adds an undefined column to p's tenant as nullable utf8 (null for
// the rows p already holds) and bumps the tenant's schema version. It
// returns the column's index in p.extras.
func (st *tableState) promote(p *pending, name string, mem memory.Allocator) int {
	idx := len(p.extras)
	p.extras = append(p.extras, columnDef{name: name, kind: kindString})
	if p.extraIndex == nil {
		p.extraIndex = map[string]int{}
	}
	p.extraIndex[name] = idx
	p.scratch = append(p.scratch, slot{})
	c := newColBuilder(mem, kindString)
	c.appendNulls(p.rows)
	p.cols = append(p.cols, c)
	p.version++
	p.schema = buildSchema(st.t.name, append(append([]columnDef(nil), st.cols...), p.extras...), p.version)
	return idx
}

// promoted is the number of p's promoted columns, ExtraFieldsColumn aside.
func (p *pending) promoted() int {
	n := len(p.extras)
	if p.extraCol >= 0 {
		n--
	}
	return n
}

// appendRow moves the scratch row (the defined columns' from st, the
// extras' from p) into p.
func (st *tableState) appendRow(p *pending, ts int64) {
	def := len(st.cols)
	for i := range def {
		p.cols[i].append(&st.scratch[i])
	}
	for i := range p.scratch {
		p.cols[def+i].append(&p.scratch[i])
	}
	clear(p.scratch)
	if p.rows == 0 {
		p.minT, p.maxT = math.MaxInt64, math.MinInt64
	}
	p.minT, p.maxT = min(p.minT, ts), max(p.maxT, ts)
	p.rows++
}

// flush turns p's rows into a Batch and emits it; p stays open, empty. A
// p without rows since its last flush (a tenant quiet for a whole
// transaction) releases its builders, keeping only its promoted columns:
// a tenant seen once does not hold a batch's buffers for good.
func (st *tableState) flush(p *pending, mem memory.Allocator, emit func(Batch)) {
	if p.rows == 0 {
		p.release()
		return
	}
	arrs := make([]arrow.Array, len(p.cols))
	p.lastRows = p.rows
	p.lastData = p.lastData[:0]
	for i := range p.cols {
		p.lastData = append(p.lastData, p.cols[i].dataLen())
		arrs[i] = p.cols[i].newArray()
	}
	rec := array.NewRecord(p.schema, arrs, int64(p.rows))
	for _, a := range arrs {
		a.Release()
	}
	b := Batch{
		Table: st.t.name, Tenant: p.tenant, Record: rec, Bytes: p.bytes,
		MinTime: time.UnixMicro(p.minT).UTC(), MaxTime: time.UnixMicro(p.maxT).UTC(),
	}
	p.rows, p.bytes = 0, 0
	emit(b)
}

func (p *pending) release() {
	for i := range p.cols {
		p.cols[i].release()
	}
	p.cols = nil
}
