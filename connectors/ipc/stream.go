package ipc

import (
	"bytes"
	"encoding/binary"
	"errors"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/array"
	arrowipc "github.com/apache/arrow/go/v17/arrow/ipc"
	"github.com/apache/arrow/go/v17/arrow/memory"
)

// Why a writer per schema (issue 14): a fresh arrowipc.Writer per batch, as
// Encode made before, rebuilds the schema flatbuffer and a new LZ4 or zstd
// compressor for every batch, about half of the hunting tap's cost when a
// commit emits one small batch per table and tenant. A schemaWriter keeps one
// Writer per schema: its schema message is captured once and copied in front
// of every batch, and the Writer's compressor lives on. The bytes are the
// ones a fresh Writer makes (TestIPCEncodeMatchesArrowWriter): schema message,
// every dictionary in full, the record batch, end-of-stream.
//
// The one state a long-lived Writer carries from batch to batch is the last
// dictionary it wrote per column: it leaves out a dictionary equal to it (a
// fresh Writer writes them all). So the Writer is given Go-heap copies of the
// batch's dictionaries, spoiled once written (schemaWriter.write), and should
// one be left out all the same (a dictionary with no string bytes, repeated)
// the batch is written again by a fresh Writer.

// maxSchemas bounds the writers an Encoder keeps; past it they are dropped
// and made again as batches come (tenants with promoted columns get a new
// *arrow.Schema per batch, usually with content seen before).
const maxSchemas = 1024

var eos = [8]byte{0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0}

// encodeStream writes rec as a complete IPC stream into e.buf.
func (e *Encoder) encodeStream(rec arrow.Record) error {
	sw := e.writerFor(rec.Schema())
	if sw != nil {
		ok, err := sw.write(&e.buf, rec)
		if err == nil && ok {
			return nil
		}
		e.drop(sw) // its Writer's state is not known any more
		e.buf.Reset()
	}
	e.fresh++
	return e.writeFresh(rec)
}

// writeFresh is one new arrowipc.Writer for rec: the reference encoding.
func (e *Encoder) writeFresh(rec arrow.Record) error {
	w := arrowipc.NewWriter(&e.buf, e.options(rec.Schema())...)
	if err := w.Write(rec); err != nil {
		w.Close()
		return err
	}
	return w.Close()
}

func (e *Encoder) options(schema *arrow.Schema) []arrowipc.Option {
	mem := e.mem
	if mem == nil {
		mem = memory.DefaultAllocator
	}
	opts := []arrowipc.Option{arrowipc.WithSchema(schema), arrowipc.WithAllocator(mem)}
	switch e.codec {
	case None:
	case LZ4:
		opts = append(opts, arrowipc.WithLZ4())
	default:
		opts = append(opts, arrowipc.WithZstd())
	}
	return opts
}

// writerFor finds or makes the schemaWriter of schema; nil when the schema
// is one for fresh writers only.
func (e *Encoder) writerFor(schema *arrow.Schema) *schemaWriter {
	if sw, ok := e.bySchema[schema]; ok {
		return sw
	}
	if e.bySchema == nil || len(e.bySchema) >= maxSchemas {
		e.bySchema = make(map[*arrow.Schema]*schemaWriter)
		e.byPrint = make(map[string][]*schemaWriter)
	}
	// The fingerprint leaves out the schema's and the fields' metadata, and
	// Equal the schema's: both are checked here, since the schema message
	// carries them.
	fp := schema.Fingerprint()
	for _, sw := range e.byPrint[fp] {
		if sw.schema.Equal(schema) && sw.schema.Metadata().Equal(schema.Metadata()) {
			e.bySchema[schema] = sw
			return sw
		}
	}
	sw, err := newSchemaWriter(schema, e.options(schema))
	if err != nil {
		sw = nil // cached as such: fresh writers for this schema
	} else if fp != "" {
		e.byPrint[fp] = append(e.byPrint[fp], sw)
	}
	e.bySchema[schema] = sw
	return sw
}

// drop forgets sw after a failure.
func (e *Encoder) drop(sw *schemaWriter) {
	for k, v := range e.bySchema {
		if v == sw {
			delete(e.bySchema, k)
		}
	}
	for k, list := range e.byPrint {
		for i, v := range list {
			if v == sw {
				e.byPrint[k] = append(list[:i:i], list[i+1:]...)
				break
			}
		}
	}
	sw.w.Close()
}

type schemaWriter struct {
	schema  *arrow.Schema
	w       *arrowipc.Writer
	pw      payloads
	head    []byte // the schema message, framed; nil until the first batch
	dicts   []int  // columns that are dictionaries
	cols    []arrow.Array
	written [][]byte // values of the dictionary copies the Writer holds
}

// newSchemaWriter makes the Writer of schema. Only dictionaries of strings,
// at the top level, are what it knows how to copy; other schemas are left to
// fresh writers.
func newSchemaWriter(schema *arrow.Schema, opts []arrowipc.Option) (*schemaWriter, error) {
	sw := &schemaWriter{schema: schema}
	for i, f := range schema.Fields() {
		if dt, ok := f.Type.(*arrow.DictionaryType); ok {
			if dt.ValueType.ID() != arrow.STRING || nested(dt.IndexType) {
				return nil, errors.New("dictionary of other than strings")
			}
			sw.dicts = append(sw.dicts, i)
			continue
		}
		if nested(f.Type) {
			return nil, errors.New("nested dictionary")
		}
	}
	sw.cols = make([]arrow.Array, schema.NumFields())
	sw.written = make([][]byte, len(sw.dicts))
	sw.w = arrowipc.NewWriterWithPayloadWriter(&sw.pw, opts...)
	return sw, nil
}

// nested reports whether t holds a dictionary anywhere below it.
func nested(t arrow.DataType) bool {
	switch t := t.(type) {
	case *arrow.DictionaryType:
		return true
	case arrow.NestedType:
		for _, f := range t.Fields() {
			if nested(f.Type) {
				return true
			}
		}
	case arrow.ExtensionType:
		return nested(t.StorageType())
	}
	return false
}

// write appends rec's stream to buf; false when the Writer left out a
// dictionary, and buf is then to be written again by a fresh Writer.
//
// The Writer is given rec with its dictionaries copied to the Go heap: it
// holds on to the last dictionary of each column (to leave out an equal one
// next time), and that must not keep the batch's buffers from their
// allocator. Once written, the copies' values are overwritten with 0xFF, so
// that the next batch's dictionaries, valid strings, differ from them and
// are written in full, as a fresh Writer writes them.
func (sw *schemaWriter) write(buf *bytes.Buffer, rec arrow.Record) (bool, error) {
	copy(sw.cols, rec.Columns())
	var made []arrow.Array
	for k, i := range sw.dicts {
		d, ok := sw.cols[i].(*array.Dictionary)
		if !ok {
			return false, errors.New("dictionary column is not a dictionary array")
		}
		dict := d.Dictionary().Data()
		bufs := dict.Buffers()
		cp := make([]*memory.Buffer, len(bufs))
		for j, b := range bufs {
			if b != nil {
				cp[j] = memory.NewBufferBytes(bytes.Clone(b.Bytes()))
			}
		}
		if len(cp) == 3 && cp[2] != nil {
			sw.written[k] = cp[2].Bytes()
		} else {
			sw.written[k] = nil
		}
		dd := array.NewData(dict.DataType(), dict.Len(), cp, nil, dict.NullN(), dict.Offset())
		da := array.MakeFromData(dd)
		dd.Release()
		nd := array.NewDictionaryArray(d.DataType(), d.Indices(), da)
		da.Release()
		made = append(made, nd)
		sw.cols[i] = nd
	}
	r := array.NewRecord(sw.schema, sw.cols, rec.NumRows())
	for _, a := range made {
		a.Release()
	}
	clear(sw.cols)
	if sw.head != nil {
		buf.Write(sw.head)
	}
	start := buf.Len()
	sw.pw.out, sw.pw.n = buf, 0
	err := sw.w.Write(r)
	sw.pw.out = nil
	r.Release()
	for _, v := range sw.written {
		for j := range v {
			v[j] = 0xFF
		}
	}
	if err != nil {
		return false, err
	}
	n := sw.pw.n
	if sw.head == nil {
		// The Writer's first payload is the schema message.
		sw.head = bytes.Clone(buf.Bytes()[start:sw.pw.first])
		n--
	}
	if n != 1+len(sw.dicts) {
		return false, nil
	}
	buf.Write(eos[:])
	return true, nil
}

// payloads frames the Writer's messages as its stream writer does (an
// encapsulated message: continuation, length, flatbuffer padded to 8, body),
// into out, or nowhere while out is nil.
type payloads struct {
	out   *bytes.Buffer
	n     int // messages written since out was set
	first int // length of out after the first of them
}

func (p *payloads) Start() error { return nil }
func (p *payloads) Close() error { return nil }

func (p *payloads) WritePayload(pl arrowipc.Payload) error {
	if p.out == nil {
		return nil
	}
	meta := pl.Meta()
	var l int
	if meta != nil {
		l = meta.Len()
	}
	padded := l + 8
	if r := padded % 8; r != 0 {
		padded += 8 - r
	}
	var hdr [8]byte
	binary.LittleEndian.PutUint32(hdr[:4], 0xFFFFFFFF)
	binary.LittleEndian.PutUint32(hdr[4:], uint32(padded-8))
	p.out.Write(hdr[:])
	if meta != nil {
		p.out.Write(meta.Bytes())
		meta.Release()
	}
	var zeros [8]byte
	p.out.Write(zeros[:padded-8-l])
	if err := pl.SerializeBody(p.out); err != nil {
		return err
	}
	p.n++
	if p.n == 1 {
		p.first = p.out.Len()
	}
	return nil
}
