// Package ipc is the record format of the hunting.<Table> Kafka topics: one
// normalized batch per Kafka record, as an Arrow IPC stream (schema message,
// one record batch, end-of-stream) with LZ4 (or zstd, or no) body
// compression, keyed by tenant. See FORMAT.md.
//
// Why Arrow's own body compression rather than a zstd frame around the
// stream: every Arrow implementation (pyarrow, arrow-rs, DuckDB's arrow
// extension, Go) decodes it with no extra step, the schema message stays
// readable uncompressed, and Kafka needs no second codec. The price, measured
// by BenchmarkEncode, is size: per-buffer compression cannot share context
// across columns (FORMAT.md has the numbers).
package ipc

import (
	"sync"
	"unsafe"

	"bytes"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/array"
	arrowipc "github.com/apache/arrow/go/v17/arrow/ipc"
	"github.com/apache/arrow/go/v17/arrow/memory"

	"github.com/stitch-xdr/stitch/operators/normalize"
)

// Header names and the content type, part of the topic contract.
const (
	HeaderContentType   = "content-type"
	HeaderSchemaVersion = "stitch-schema-version"
	HeaderTable         = "stitch-table"
	HeaderTenant        = "stitch-tenant"
	ContentType         = "application/vnd.apache.arrow.stream"
)

// Header is one Kafka record header.
type Header struct {
	Key, Value string
}

// Message is one Kafka record of a hunting topic. Value is owned by the
// caller (a producer may hold it until the broker acknowledges).
type Message struct {
	Key, Value []byte
	Headers    []Header
}

// Encoder encodes batches, reusing its buffer between calls. Not safe for
// concurrent use; the zero value is ready (zstd).
type Encoder struct {
	buf   bytes.Buffer
	mem   memory.Allocator
	codec Compression
	// One Arrow writer per schema, kept between batches (schemaWriter):
	// the schema message is encoded once and the compressor is reused.
	bySchema map[*arrow.Schema]*schemaWriter
	byPrint  map[string][]*schemaWriter // same schema content, another *arrow.Schema
	fresh    int                        // batches written by a fresh Writer (tests)
}

// Compression is the Arrow IPC body compression of the record batches.
// Every Arrow reader decodes all three; they trade CPU for bytes on the
// topic (FORMAT.md has the numbers).
type Compression string

const (
	Zstd Compression = "zstd" // smallest; the dearest to encode by far
	LZ4  Compression = "lz4"  // LZ4 frame: about a quarter of zstd's CPU, twice its bytes
	None Compression = "none" // no compression: Kafka's own batch compression may do it
)

// ParseCompression checks a configured compression name.
func ParseCompression(s string) (Compression, error) {
	switch c := Compression(s); c {
	case Zstd, LZ4, None:
		return c, nil
	}
	return "", fmt.Errorf("%q is not one of zstd, lz4, none", s)
}

// NewEncoder returns an Encoder allocating compression scratch from mem
// (nil: the default allocator) and compressing bodies with codec (empty:
// zstd).
func NewEncoder(mem memory.Allocator, codec Compression) *Encoder {
	return &Encoder{mem: mem, codec: codec}
}

// Encode encodes b into a Message with a fresh Value.
func (e *Encoder) Encode(b normalize.Batch) (Message, error) {
	if b.Record == nil {
		return Message{}, errors.New("ipc: batch without record")
	}
	if b.Tenant == "" || b.Table == "" {
		return Message{}, fmt.Errorf("ipc: batch without table or tenant (%q, %q)", b.Table, b.Tenant)
	}
	e.buf.Reset()
	if err := e.encodeStream(b.Record); err != nil {
		return Message{}, fmt.Errorf("ipc: encode %s batch: %w", b.Table, err)
	}
	version, _ := b.Record.Schema().Metadata().GetValue(normalize.MetaSchemaVersion)
	if version == "" {
		version = strconv.Itoa(normalize.SchemaVersion)
	}
	return Message{
		Key:   []byte(b.Tenant),
		Value: bytes.Clone(e.buf.Bytes()),
		Headers: []Header{
			{HeaderContentType, ContentType},
			{HeaderTable, b.Table},
			{HeaderTenant, b.Tenant},
			{HeaderSchemaVersion, version},
		},
	}, nil
}

// Encode encodes one batch with a throwaway Encoder.
func Encode(b normalize.Batch) (Message, error) {
	var e Encoder
	return e.Encode(b)
}

// Decode reads a Message value back into a Batch holding one reference to
// its record (release it). Table and tenant come from the headers, falling
// back to the schema's stitch.table metadata; MinTime and MaxTime are
// recomputed from the Timestamp column. Corrupt input is an error, never a
// panic.
func Decode(value []byte, headers []Header, mem memory.Allocator) (b normalize.Batch, err error) {
	if mem == nil {
		mem = memory.DefaultAllocator
	}
	for _, h := range headers {
		switch h.Key {
		case HeaderContentType:
			if h.Value != ContentType {
				return b, fmt.Errorf("ipc: content-type %q, want %s", h.Value, ContentType)
			}
		case HeaderTable:
			b.Table = h.Value
		case HeaderTenant:
			b.Tenant = h.Value
		}
	}
	// The Arrow reader trusts flatbuffer offsets; a corrupt message can
	// index out of range. Treat that as the bad input it is, and free what
	// the reader had allocated when it failed (it does not).
	track := &tracked{Allocator: mem, live: map[*byte]int{}}
	mem = track
	defer func() {
		if r := recover(); r != nil {
			if b.Record != nil {
				b.Record.Release()
				b.Record = nil
			}
			err = fmt.Errorf("ipc: corrupt arrow stream: %v", r)
		}
		if err != nil {
			// The reader recovers some of its panics itself, into an
			// error, and leaves their buffers behind too.
			track.freeAll()
		}
	}()
	if err := checkStream(value); err != nil {
		return b, fmt.Errorf("ipc: corrupt arrow stream: %w", err)
	}
	rd, err := arrowipc.NewReader(bytes.NewReader(value), arrowipc.WithAllocator(mem))
	if err != nil {
		return b, fmt.Errorf("ipc: read schema: %w", err)
	}
	defer rd.Release()
	if !rd.Next() {
		if err := rd.Err(); err != nil {
			return b, fmt.Errorf("ipc: read record batch: %w", err)
		}
		return b, errors.New("ipc: stream has no record batch")
	}
	rec := rd.Record()
	rec.Retain()
	b.Record = rec
	if rd.Next() {
		rec.Release()
		b.Record = nil
		return b, errors.New("ipc: stream has more than one record batch")
	}
	if err := rd.Err(); err != nil {
		rec.Release()
		b.Record = nil
		return b, fmt.Errorf("ipc: read stream: %w", err)
	}
	if b.Table == "" {
		b.Table, _ = rec.Schema().Metadata().GetValue(normalize.MetaTable)
	}
	b.Bytes = int64(len(value))
	b.MinTime, b.MaxTime = timeBounds(rec)
	track.stop()
	return b, nil
}

func timeBounds(rec arrow.Record) (min, max time.Time) {
	idx := rec.Schema().FieldIndices("Timestamp")
	if len(idx) != 1 {
		return
	}
	ts, ok := rec.Column(idx[0]).(*array.Timestamp)
	if !ok {
		return
	}
	unit := ts.DataType().(*arrow.TimestampType).Unit
	first := true
	var lo, hi arrow.Timestamp
	for i, v := range ts.TimestampValues() {
		if ts.IsNull(i) {
			continue
		}
		if first || v < lo {
			lo = v
		}
		if first || v > hi {
			hi = v
		}
		first = false
	}
	if first {
		return
	}
	return lo.ToTime(unit).UTC(), hi.ToTime(unit).UTC()
}

// tracked is an allocator that remembers what is allocated through it and
// not yet freed, so that Decode can free it after the Arrow reader panics.
type tracked struct {
	memory.Allocator
	mu   sync.Mutex    // buffers of a decoded record may be freed from any goroutine
	live map[*byte]int // first byte -> capacity, of live allocations
}

func (t *tracked) Allocate(size int) []byte {
	b := t.Allocator.Allocate(size)
	t.note(nil, b)
	return b
}

func (t *tracked) Reallocate(size int, b []byte) []byte {
	nb := t.Allocator.Reallocate(size, b)
	t.note(b, nb)
	return nb
}

func (t *tracked) Free(b []byte) {
	t.note(b, nil)
	t.Allocator.Free(b)
}

// stop ends the tracking once the record is decoded: its buffers are the
// caller's from then on, and are freed one at a time like any others.
func (t *tracked) stop() {
	t.mu.Lock()
	t.live = nil
	t.mu.Unlock()
}

// note records that old is no longer live and b is.
func (t *tracked) note(old, b []byte) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.live == nil {
		return
	}
	if cap(old) > 0 {
		delete(t.live, &old[:1][0])
	}
	if cap(b) > 0 {
		t.live[&b[:1][0]] = cap(b)
	}
}

// freeAll frees every allocation still live.
func (t *tracked) freeAll() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for p, c := range t.live {
		t.Allocator.Free(unsafe.Slice(p, c))
	}
	clear(t.live)
}
