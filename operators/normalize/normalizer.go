package normalize

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/valyala/fastjson"
)

// Normalizer turns raw records into Arrow batches. It keeps one open batch
// per (table, tenant) and reuses its JSON parser and scratch row between
// records, so it is NOT safe for concurrent use: run one per goroutine
// (per partition), which also keeps batches in offset order.
type Normalizer struct {
	cfg    config
	parser fastjson.Parser
	sub    fastjson.Parser // the fast path's nested property values
	states []*tableState   // by table position, created on first use
	dead   map[Reason]int64
	// recycler is cfg.mem as the builders see it.
	recycler *Recycler

	records, bytes int64

	// Per-record scratch, reset by begin.
	cur        *tableState
	buf        []byte // JSON text of non-string values
	ofbuf      []byte // the ExtraFields object
	extras     []extra
	failReason Reason
	failMsg    string
	visit      func(key []byte, v *fastjson.Value) // n.visitColumn, bound once
	prev       int                                 // column of the previous key, -1 at the start
	elemBuf    []byte
	spans      [][2]int // the fast path's envelope elements
	row        uint64   // counts rows begun: tableState.seen marks a key of this row
	extraSeen  map[string]struct{}
	order      []*pending // byTenant's scratch
}

// extra is a key the record's table does not define.
type extra struct {
	name []byte
	val  slot
}

// New makes a Normalizer; see the With* options for the defaults.
func New(opts ...Option) *Normalizer {
	n := &Normalizer{cfg: defaults(), states: make([]*tableState, len(tables)), dead: map[Reason]int64{}}
	for _, o := range opts {
		o(&n.cfg)
	}
	n.visit = n.visitColumn
	// Each flush lets go of the buffers the next one needs again.
	n.recycler = NewRecycler(n.cfg.mem, recycledBytes)
	n.cfg.mem = n.recycler
	return n
}

// recycledBytes bounds the buffers a Normalizer keeps for its next
// batches: about what one flush of a busy transaction releases.
const recycledBytes = 32 << 20

// Stats counts what a Normalizer has seen. Records counts logical records
// (each element of an envelope is one); every record ends up either
// normalized or dead: Records == sum(Normalized) + sum(Dead).
type Stats struct {
	Records    int64
	Normalized map[string]int64
	Dead       map[Reason]int64
	Inferred   map[string]int64 // import mode: rows whose table was inferred
	Bytes      int64            // input bytes, as given to Add
}

// Stats returns a snapshot of the counters.
func (n *Normalizer) Stats() Stats {
	s := Stats{Records: n.records, Bytes: n.bytes, Normalized: map[string]int64{}, Dead: map[Reason]int64{}, Inferred: map[string]int64{}}
	for _, st := range n.states {
		if st == nil {
			continue
		}
		if st.normalized > 0 {
			s.Normalized[st.t.name] = st.normalized
		}
		if st.inferred > 0 {
			s.Inferred[st.t.name] = st.inferred
		}
	}
	for r, c := range n.dead {
		s.Dead[r] = c
	}
	return s
}

// Schema is the current schema of table for tenant in this Normalizer:
// Schema(table) plus the columns promoted for that tenant (promotion is per
// tenant). Nil for an unknown table.
func (n *Normalizer) Schema(table, tenant string) *arrow.Schema {
	t := tableIndex[table]
	if t == nil {
		return nil
	}
	if st := n.states[t.pos]; st != nil {
		if p := st.pending[tenant]; p != nil {
			return p.schema
		}
	}
	return t.schema
}

func (n *Normalizer) state(t *table) *tableState {
	st := n.states[t.pos]
	if st == nil {
		st = newTableState(t)
		n.states[t.pos] = st
	}
	return st
}

// Add normalizes one Kafka record: a streaming-API record, an Event Hubs
// envelope {"records":[...]} whose elements are handled independently, or in
// import mode one export row. Full batches go to emit, bad records to dead;
// neither is called after Add returns. in.Value is not retained.
func (n *Normalizer) Add(in Input, emit func(Batch), dead func(DeadLetter)) {
	v := in.Value
	n.bytes += int64(len(v))
	whole := func(r Reason, msg string) {
		n.records++
		n.deadLetter(in, -1, v, r, msg, dead)
	}
	if len(v) > n.cfg.maxRecord {
		whole(ReasonTooLarge, fmt.Sprintf("record is %d bytes, limit %d", len(v), n.cfg.maxRecord))
		return
	}
	// Checked before parsing: fastjson does not validate UTF-8, and Arrow
	// strings must be valid.
	if !utf8.Valid(v) {
		whole(ReasonInvalidUTF8, "record is not valid UTF-8")
		return
	}
	if !n.cfg.importMode && !n.cfg.noFast && n.fastAdd(in, v, emit, dead) {
		return
	}
	// The fastjson path, for what the fast path leaves: import rows, dead
	// letters, unusual shapes. The depth is judged before parsing, on the
	// bytes, because walking the parsed tree would unescape its keys and
	// strings in place and change how MarshalTo re-encodes them.
	depth := jsonDepth(v, n.cfg.maxDepth)
	deep := depth > n.cfg.maxDepth
	tooDeep := fmt.Sprintf // only formatted on the slow path
	if deep && depth > maxParserDepth {
		if !n.cfg.importMode && n.splitEnvelope(in, v, emit, dead) {
			return
		}
		whole(ReasonTooDeep, tooDeep("nesting depth %d exceeds limit %d", depth, n.cfg.maxDepth))
		return
	}
	root, err := n.parser.ParseBytes(v)
	if err != nil {
		whole(ReasonNotJSON, err.Error())
		return
	}
	if !n.cfg.importMode && root.Type() == fastjson.TypeObject && root.Get("category") == nil {
		if recs := root.Get("records"); recs != nil && recs.Type() == fastjson.TypeArray {
			if o, _ := root.Object(); keyCount(o, "records") > 1 {
				whole(ReasonDuplicateKey, dupKeyMsg([]byte("records"), "the envelope"))
				return
			}
			elems, _ := recs.Array()
			per := int64(len(v))
			if len(elems) > 0 {
				per /= int64(len(elems))
			}
			for i, e := range elems {
				if deep {
					// Judge each element on its own: one deep element must
					// not take its neighbours with it.
					if d := valueDepth(e); d > n.cfg.maxDepth {
						n.records++
						n.deadLetter(in, i, e.MarshalTo(n.elemBuf[:0]), ReasonTooDeep,
							tooDeep("nesting depth %d exceeds limit %d", d, n.cfg.maxDepth), dead)
						continue
					}
				}
				n.addRecord(in, i, e, nil, per, emit, dead)
			}
			return
		}
	}
	if deep {
		whole(ReasonTooDeep, tooDeep("nesting depth %d exceeds limit %d", depth, n.cfg.maxDepth))
		return
	}
	n.addRecord(in, -1, root, v, int64(len(v)), emit, dead)
}

// addRecord normalizes one record (raw is its bytes, or nil for an envelope
// element, re-encoded only if it is dead-lettered).
func (n *Normalizer) addRecord(in Input, idx int, v *fastjson.Value, raw []byte, size int64, emit func(Batch), dead func(DeadLetter)) {
	n.records++
	fail := func(r Reason, msg string) {
		if raw == nil {
			n.elemBuf = v.MarshalTo(n.elemBuf[:0])
			raw = n.elemBuf
		}
		n.deadLetter(in, idx, raw, r, msg, dead)
	}
	o, err := v.Object()
	if err != nil {
		fail(ReasonNotObject, fmt.Sprintf("record is a JSON %s, not an object", v.Type()))
		return
	}
	if n.cfg.importMode {
		n.addExportRow(o, size, emit, fail)
		return
	}
	if k := dupTopKey(o); k != "" {
		fail(ReasonDuplicateKey, dupKeyMsg([]byte(k), "the record"))
		return
	}
	cat := o.Get("category")
	if cat == nil || cat.Type() != fastjson.TypeString {
		fail(ReasonMissingCategory, "record has no category string")
		return
	}
	catb, _ := cat.StringBytes()
	t := tableIndex[string(trimCategory(catb))]
	if t == nil || len(catb) <= len(CategoryPrefix) || string(catb[:len(CategoryPrefix)]) != CategoryPrefix {
		fail(ReasonUnknownCategory, fmt.Sprintf("category %q names no advanced-hunting table", catb))
		return
	}
	var tenant []byte
	if tv := o.Get("tenantId"); tv != nil && tv.Type() == fastjson.TypeString {
		tenant, _ = tv.StringBytes()
	}
	if len(tenant) == 0 {
		fail(ReasonMissingTenant, "record has no tenantId")
		return
	}
	if !validTenant(tenant) {
		fail(ReasonBadTenant, fmt.Sprintf("tenantId %q holds a NUL byte", tenant))
		return
	}
	props := o.Get("properties")
	if props == nil || props.Type() != fastjson.TypeObject {
		fail(ReasonMissingProps, "record has no properties object")
		return
	}
	po, _ := props.Object()
	var recTime []byte
	if tv := o.Get("time"); tv != nil && tv.Type() == fastjson.TypeString {
		recTime, _ = tv.StringBytes()
	}
	n.addRow(n.state(t), tenant, po, recTime, size, emit, fail)
}

// The keys of a streaming record that the normalizer reads. Any of them twice
// is a duplicate_key dead letter on both paths: which one a reader takes
// differs between JSON parsers, so a record that names two tenants or two
// tables is refused rather than resolved.
var topKeys = [...]string{"category", "tenantId", "properties", "time"}

// dupTopKey returns the first key of topKeys that o holds twice, or "".
func dupTopKey(o *fastjson.Object) string {
	var seen [len(topKeys)]bool
	dup := ""
	o.Visit(func(key []byte, _ *fastjson.Value) {
		for i, k := range topKeys {
			if dup == "" && string(key) == k {
				if seen[i] {
					dup = k
				}
				seen[i] = true
			}
		}
	})
	return dup
}

// keyCount is how many times o holds key.
func keyCount(o *fastjson.Object, key string) int {
	n := 0
	o.Visit(func(k []byte, _ *fastjson.Value) {
		if string(k) == key {
			n++
		}
	})
	return n
}

// validTenant is state.ValidTenant (non-empty, no NUL byte: the tenant
// prefixes the correlation state's keys, ended by a NUL) on bytes; a test
// keeps the two in step.
func validTenant(t []byte) bool { return len(t) > 0 && bytes.IndexByte(t, 0) < 0 }

func trimCategory(c []byte) []byte {
	if len(c) > len(CategoryPrefix) {
		return c[len(CategoryPrefix):]
	}
	return nil
}

// addExportRow normalizes one advanced-hunting export row.
func (n *Normalizer) addExportRow(o *fastjson.Object, size int64, emit func(Batch), fail func(Reason, string)) {
	var t *table
	if n.cfg.importTbl != "" {
		if t = tableIndex[n.cfg.importTbl]; t == nil {
			fail(ReasonUnknownTable, fmt.Sprintf("import table %q is not an advanced-hunting table", n.cfg.importTbl))
			return
		}
	} else if t = inferTable(o); t == nil {
		fail(ReasonUnknownTable, "cannot infer the table of the export row from its columns")
		return
	}
	st := n.state(t)
	if n.addRow(st, []byte(n.cfg.tenant), o, nil, size, emit, fail) && n.cfg.importTbl == "" {
		st.inferred++
	}
}

// addRow converts the columns of props into the table's scratch row and, if
// every value fits, appends the row to the (table, tenant) batch. recTime is
// the record's time, used when the row has no Timestamp.
func (n *Normalizer) addRow(st *tableState, tenant []byte, props *fastjson.Object, recTime []byte, size int64, emit func(Batch), fail func(Reason, string)) bool {
	n.buf = n.buf[:0]
	n.beginRow(st)
	props.Visit(n.visit)
	if n.failReason == "" {
		if k := n.dupExtra(); k != nil {
			n.failReason, n.failMsg = ReasonDuplicateKey, dupKeyMsg(k, "properties")
		}
	}
	if n.failReason != "" {
		fail(n.failReason, n.failMsg)
		return false
	}
	ts := &st.scratch[st.t.ts]
	if !ts.set || ts.null {
		if recTime == nil {
			fail(ReasonBadTimestamp, "record has neither properties.Timestamp nor time")
			return false
		}
		us, ok := parseTime(recTime)
		if !ok {
			fail(ReasonBadTimestamp, fmt.Sprintf("time %q is not a timestamp", recTime))
			return false
		}
		*ts = slot{set: true, i: us}
	}
	n.commitRow(st, tenant, size, emit)
	return true
}

// beginRow starts converting a row of st into its scratch row.
func (n *Normalizer) beginRow(st *tableState) {
	n.cur, n.prev = st, -1
	n.row++
	clear(st.scratch)
	n.extras, n.failReason, n.failMsg = n.extras[:0], "", ""
}

// commitRow appends the scratch row, whose timestamp is set and every value
// fits, to the (table, tenant) batch.
func (n *Normalizer) commitRow(st *tableState, tenant []byte, size int64, emit func(Batch)) {
	ts := &st.scratch[st.t.ts]
	p := st.pending[string(tenant)]
	if p == nil {
		p = st.newPending(string(tenant), n.cfg.mem)
		st.pending[p.tenant] = p
	}
	st.ensureCols(p, n.cfg.mem)
	if len(n.extras) > 0 {
		n.placeExtras(st, p)
	}
	if p.rows == 0 {
		p.first = n.cfg.clock()
		p.reserve()
	}
	st.appendRow(p, ts.i)
	p.bytes += size
	st.normalized++
	if p.rows >= n.cfg.batchRows || p.bytes >= n.cfg.batchBytes {
		st.flush(p, n.cfg.mem, emit)
	}
}

// visitColumn converts one property into the scratch row.
func (n *Normalizer) visitColumn(key []byte, v *fastjson.Value) {
	if n.failReason != "" {
		return
	}
	st := n.cur
	idx, ok, direct := n.resolve(key)
	if direct && n.seenKey(idx) {
		n.failReason, n.failMsg = ReasonDuplicateKey, dupKeyMsg(key, "properties")
		return
	}
	if !ok || idx >= len(st.t.columns) {
		// Not a defined column. Export rows are a union of tables: their
		// empty columns belong to other tables and are dropped.
		if n.cfg.importMode && isEmptyValue(v) {
			return
		}
		if !ok {
			var s slot
			convert(kindString, v, &n.buf, &s)
			n.extras = append(n.extras, extra{name: key, val: s})
			return
		}
	}
	k := st.cols[idx].kind
	dst := &st.scratch[idx]
	var s slot
	out := &s
	if !dst.set {
		out = dst // the common case: convert in place
	}
	if r := convert(k, v, &n.buf, out); r != "" {
		n.failReason, n.failMsg = r, fmt.Sprintf("column %s (%s): cannot take %s", key, kindNames[k], describe(v))
		if r == ReasonOutOfRange {
			n.failMsg = fmt.Sprintf("column %s (%s): %s is out of its range", key, kindNames[k], describe(v))
		} else if idx == st.t.ts {
			n.failReason = ReasonBadTimestamp
		}
		return
	}
	if out == &s {
		setSlot(dst, s)
	}
}

// resolve finds the column of a property key of the current row's table,
// directly or through its export-type suffix.
//
// direct says the key is the column's own name, not an export-suffixed
// variant of it: a direct key twice in one object is
// a duplicate key.
func (n *Normalizer) resolve(key []byte) (idx int, ok, direct bool) {
	st := n.cur
	// Records of a table list their keys in much the same order: the key
	// that followed the previous column last time is tried first, with a
	// plain comparison instead of hashing the key.
	h := &st.next[n.prev+1]
	if h.idx >= 0 && h.name == string(key) {
		n.prev = h.idx
		return h.idx, true, true
	}
	if idx, ok := st.index[string(key)]; ok {
		*h = newKeyHint(st.cols[idx].name, idx)
		n.prev = idx
		return idx, true, true
	}
	if base := stripSuffix(key); base != nil {
		idx, ok := st.t.index[string(base)]
		return idx, ok, false
	}
	return 0, false, false
}

// seenKey marks column idx as set by its own key in the current row and
// says whether it already was: the key is a duplicate.
func (n *Normalizer) seenKey(idx int) bool {
	st := n.cur
	if st.seen[idx] == n.row {
		return true
	}
	st.seen[idx] = n.row
	return false
}

// dupExtra returns a key that appears twice among the row's undefined
// keys, or nil.
func (n *Normalizer) dupExtra() []byte {
	ex := n.extras
	if len(ex) <= 16 {
		for i := 1; i < len(ex); i++ {
			for j := range i {
				if string(ex[i].name) == string(ex[j].name) {
					return ex[i].name
				}
			}
		}
		return nil
	}
	if n.extraSeen == nil {
		n.extraSeen = map[string]struct{}{}
	}
	defer clear(n.extraSeen)
	for _, e := range ex {
		if _, ok := n.extraSeen[string(e.name)]; ok {
			return e.name
		}
		n.extraSeen[string(e.name)] = struct{}{}
	}
	return nil
}

// dupKeyMsg is the error of a duplicate_key dead letter.
func dupKeyMsg(key []byte, where string) string {
	return fmt.Sprintf("key %q appears more than once in %s", key, where)
}

// setSlot stores s unless it would replace a value with an empty one: the
// export tool writes a column once per type (ReportId_long, ReportId_string)
// and only one of them holds the value.
func setSlot(dst *slot, s slot) {
	if dst.set && !dst.empty && s.empty {
		return
	}
	*dst = s
}

func isEmptyValue(v *fastjson.Value) bool {
	switch v.Type() {
	case fastjson.TypeNull:
		return true
	case fastjson.TypeString:
		s, _ := v.StringBytes()
		return len(s) == 0
	}
	return false
}

// placeExtras puts the row's undefined columns into the columns promoted
// for its tenant, or, once the tenant has MaxExtraColumns of them in this
// table, into the ExtraFields object.
func (n *Normalizer) placeExtras(st *tableState, p *pending) {
	n.ofbuf = n.ofbuf[:0]
	for _, e := range n.extras {
		idx, ok := p.extraIndex[string(e.name)]
		if !ok {
			if p.promoted() >= MaxExtraColumns {
				if len(n.ofbuf) == 0 {
					n.ofbuf = append(n.ofbuf, '{')
				} else {
					n.ofbuf = append(n.ofbuf, ',')
				}
				n.ofbuf = appendJSONString(n.ofbuf, e.name)
				n.ofbuf = append(n.ofbuf, ':')
				if e.val.null {
					n.ofbuf = append(n.ofbuf, "null"...)
				} else {
					n.ofbuf = appendJSONString(n.ofbuf, e.val.b)
				}
				continue
			}
			idx = st.promote(p, string(e.name), n.cfg.mem)
		}
		setSlot(&p.scratch[idx], e.val)
	}
	if len(n.ofbuf) > 0 {
		n.ofbuf = append(n.ofbuf, '}')
		if p.extraCol < 0 {
			p.extraCol = st.promote(p, ExtraFieldsColumn, n.cfg.mem)
		}
		p.scratch[p.extraCol] = slot{set: true, b: n.ofbuf}
	}
}

// FlushDue emits the batches whose oldest row arrived at least the batch age
// before now, so a quiet stream still reaches the writers.
func (n *Normalizer) FlushDue(now time.Time, emit func(Batch)) {
	for _, st := range n.states {
		if st == nil {
			continue
		}
		for _, p := range n.byTenant(st) {
			if p.rows > 0 && now.Sub(p.first) >= n.cfg.batchAge {
				st.flush(p, n.cfg.mem, emit)
			}
		}
	}
}

// Flush emits every open batch.
func (n *Normalizer) Flush(emit func(Batch)) {
	for _, st := range n.states {
		if st == nil {
			continue
		}
		for _, p := range n.byTenant(st) {
			st.flush(p, n.cfg.mem, emit)
		}
	}
}

// byTenant lists st's open batches in tenant order, so that one input gives
// the same output in the same order on every run (a map's order would not):
// a replay, a restart after a crash and a scenario's expected answer all
// rely on it. The slice is scratch, valid until the next call.
func (n *Normalizer) byTenant(st *tableState) []*pending {
	n.order = n.order[:0]
	for _, p := range st.pending {
		n.order = append(n.order, p)
	}
	slices.SortFunc(n.order, func(a, b *pending) int { return strings.Compare(a.tenant, b.tenant) })
	return n.order
}

// Close releases the builders; rows not flushed are dropped. The Normalizer
// must not be used afterwards.
func (n *Normalizer) Close() {
	for _, st := range n.states {
		if st == nil {
			continue
		}
		for k, p := range st.pending {
			p.release()
			delete(st.pending, k)
		}
	}
	n.recycler.Close()
}
