// Package parquet writes normalized batches into hunting partitions: Parquet
// files in a Hive layout that DuckDB, Spark or pyarrow read directly,
//
//	<dir>/<Table>/tenant=<tenantId>/date=YYYY-MM-DD/hour=HH/part-<Table>-<segment hash>-<n>.parquet
//
// exactly once with respect to the Kafka offsets the batches came from.
// The tenant element is the id escaped, or a hashed form for ids that cannot
// be a path element (TenantElement); dates are those of years 0001-9999;
// columns named like a partition column are renamed (RenamedSuffix).
//
// Memory is bounded by configuration, not by the data: at most
// MaxOpenFiles partition files are open (the least recently written is
// finished to open another), and the rows they hold until they write them
// out as a row group take about MaxBufferedBytes together.
//
// Several writers (one per instance of a scaled-out pipeline, Instance)
// may share one directory, a network file system's say: what a writer
// keeps of its progress belongs to the input partition, not to the writer,
// so a Kafka partition that moves between instances continues in place.
//
//	_manifest/partitions/<topic>/<partition>/commit.json  the partition's last commit
//	_manifest/partitions/<topic>/<partition>/LOCK         held by the writer that owns it
//	_staging/<instance>/*.parquet.tmp                     a writer's files being written
//	_staging/<instance>/LOCK                              held by the writer of that instance
//	_manifest/LOCK                                        shared by every writer (see legacy.go)
//
// How exactly-once works: a writer writes only partitions it owns (Own,
// an exclusive lock on the partition's LOCK). Write stages rows in files
// under its staging directory (invisible to readers), one file per table,
// tenant, hour and input partition. Commit finishes and fsyncs them and,
// for each input partition of the segment, atomically writes its
// commit.json: the next offset to read and the files that hold its rows.
// That is the partition's commit point; only then are the files renamed
// into their partitions. A crash before a partition's commit.json leaves
// staged files that the instance's next Open deletes (the rows are read
// again from the offset); a crash after it is completed by whoever owns
// the partition next (Own redoes the renames), or by the instance's next
// Open. Either way each input offset lands in the partitions once.
package parquet

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/array"
	"github.com/apache/arrow/go/v17/arrow/memory"
	pq "github.com/apache/arrow/go/v17/parquet"
	"github.com/apache/arrow/go/v17/parquet/compress"
	"github.com/apache/arrow/go/v17/parquet/pqarrow"

	"github.com/stitch-xdr/stitch/operators/normalize"
)

// Source says where a batch came from. Offset is the highest input offset
// whose rows the batch holds; all batches of one offset must be written
// before the Commit that covers it.
type Source struct {
	Topic     string
	Partition int32
	Offset    int64
}

// TopicPartition names one input partition.
type TopicPartition struct {
	Topic     string
	Partition int32
}

const (
	manifestDir = "_manifest"
	stagingDir  = "_staging"
	// quarantineDir holds the files of committed segments that could not
	// be published, each with a .reason.json beside it.
	quarantineDir = "_quarantine"
	tmpExt        = ".tmp"
)

type config struct {
	rollBytes    int64
	rollAge      time.Duration
	rowGroupRows int64
	maxOpen      int
	maxBuffered  int64
	clock        func() time.Time
	mem          memory.Allocator
	log          *slog.Logger
	quarantined  func(file, reason string)
	instance     string
	hook         func(event string, tp TopicPartition) error
}

// Option configures a Writer.
type Option func(*config)

// RollBytes is the size at which a partition file is finished and a new one
// started (default 128 MiB); it also makes Due report true.
func RollBytes(n int64) Option { return func(c *config) { c.rollBytes = n } }

// RollAge is how long a segment may stay uncommitted before Due reports true
// (default 5m), so that slow streams still become visible to hunters.
func RollAge(d time.Duration) Option { return func(c *config) { c.rollAge = d } }

// RowGroupRows is the number of rows per Parquet row group (default 131072):
// large enough for scan-friendly column chunks, small enough to buffer.
func RowGroupRows(n int) Option { return func(c *config) { c.rowGroupRows = int64(n) } }

// MaxOpenFiles bounds the partition files open at once (default 128): when a
// batch needs another, the least recently written one is finished (its
// footer written; it joins the segment and is published at Commit), and
// Due reports true so the caller commits the segment early. Each
// open file holds its Parquet writer (between row groups, the encoder of
// the last column written) and its pending rows, so this, with
// MaxBufferedBytes, is what bounds the writer's memory whatever the number
// of (table, tenant, hour) partitions a segment touches.
func MaxOpenFiles(n int) Option { return func(c *config) { c.maxOpen = n } }

// MaxBufferedBytes bounds the rows the open files hold until they write
// them out, in Arrow bytes, together (default 64 MiB): past it, the file
// holding the most writes its rows out as a row group. Over the second half
// of a segment (by RollAge or RollBytes) the bound falls to an eighth of
// it, so that the roll has little left to write. A file also writes one
// once it holds RowGroupRows rows, and when it is finished.
func MaxBufferedBytes(n int64) Option { return func(c *config) { c.maxBuffered = n } }

// OnQuarantine is called for each file of a segment that could not be
// published and was moved to _quarantine instead (file is its partition
// path, reason the error), so the caller can count it.
func OnQuarantine(f func(file, reason string)) Option {
	return func(c *config) { c.quarantined = f }
}

// Instance names this writer among those sharing the directory (the
// pipeline's instance id; default "default"): its staging directory, and
// part of its files' names. Two live writers never share an instance.
func Instance(id string) Option { return func(c *config) { c.instance = id } }

// Hook is called at the points of a commit where a crash matters (tests
// stop the commit, or kill the process, at them), for each partition of
// the segment, from the goroutine that writes its commit.json (several
// write at once), before any file is renamed: "commit" before the
// partition's commit.json is written (an error: it is not), "committed"
// after. After an error the commit stops as after a crash: the partitions
// written stay committed with their files staged, the others are not.
func Hook(f func(event string, tp TopicPartition) error) Option {
	return func(c *config) { c.hook = f }
}

// Clock replaces time.Now (tests).
func Clock(f func() time.Time) Option { return func(c *config) { c.clock = f } }

// Allocator sets the Arrow allocator used by the Parquet encoder.
func Allocator(mem memory.Allocator) Option { return func(c *config) { c.mem = mem } }

// Logger sets the logger (default slog.Default()).
func Logger(l *slog.Logger) Option { return func(c *config) { c.log = l } }

// Writer writes batches into hunting partitions. It is not safe for
// concurrent use; writers of different instances may share a directory,
// each writing the input partitions it owns (lock files enforce it).
type Writer struct {
	dir      string
	cfg      config
	instance string // path element of cfg.instance
	rootLock *os.File
	instLock *os.File
	owned    map[TopicPartition]*os.File // the partitions' LOCKs held

	next map[TopicPartition]int64 // committed: next offset to read (owned: current; others: as last seen)

	// The pending segment.
	ranges   map[TopicPartition]*offsetRange
	started  time.Time
	fileSeq  int
	open     map[partKey]*partFile
	finished []manifestFile
	bytes    int64 // approximate bytes staged in this segment
	buffered int64 // input bytes in the open files' row groups (estimated)
	tick     uint64
	evicted  bool // a file was finished early to respect MaxOpenFiles

	hours []int64   // reused per batch
	out   sharedBuf // the staged files' write buffer (countingWriter)

	crashAfterManifest bool // tests only

	broken error // a failed write leaves the segment unusable: Abort or reopen
	closed bool
}

var errCrash = errors.New("parquet: simulated crash")

// partKey is one file of a segment: the input partition is part of it so
// that each file holds the rows of one input partition, committed (and
// published by a new owner) with it.
type partKey struct {
	table, tenant string
	hour          int64 // hours since the Unix epoch, UTC
	tp            TopicPartition
}

type partFile struct {
	key    partKey
	schema *arrow.Schema
	f      *os.File
	cw     *countingWriter
	fw     *pqarrow.FileWriter
	staged string // relative to dir
	final  string // relative to dir
	rows   int64

	used uint64 // w.tick at the last write: the least recently used is closed first
	// The rows not written out yet: the batches (or their slices of one
	// hour) themselves, retained, written as one row group by flushRows.
	// Writing Arrow's Parquet encoder a few hundred rows at a time cost
	// more per batch than per row, and held a page buffer per column of
	// every open file.
	pending     []arrow.Record
	pendingRows int64
	buffered    int64 // Arrow bytes of pending (a slice: its share by rows)
}

type offsetRange struct {
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
	First     int64  `json:"first"`
	Last      int64  `json:"last"`
}

type manifestFile struct {
	Staged string `json:"staged"`
	Final  string `json:"final"`
	Rows   int64  `json:"rows"`
	Bytes  int64  `json:"bytes"`

	tp TopicPartition // the input partition whose rows it holds
}

// Open opens (creating if needed) the hunting directory dir for writing as
// one instance (Instance), moves a directory of the single-writer layout
// to this one (legacy.go), completes the commits this instance left
// between a partition's commit.json and its renames, and deletes its
// staged files that no commit covers.
func Open(dir string, opts ...Option) (*Writer, error) {
	cfg := config{
		rollBytes:    128 << 20,
		rollAge:      5 * time.Minute,
		rowGroupRows: 128 << 10,
		maxOpen:      DefaultMaxOpenFiles,
		maxBuffered:  DefaultMaxBufferedBytes,
		clock:        time.Now,
		mem:          memory.DefaultAllocator,
		log:          slog.Default(),
		instance:     "default",
	}
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.rowGroupRows <= 0 || cfg.rollBytes <= 0 || cfg.maxOpen <= 0 || cfg.maxBuffered <= 0 {
		return nil, fmt.Errorf("parquet: RowGroupRows, RollBytes, MaxOpenFiles and MaxBufferedBytes must be positive")
	}
	if cfg.instance == "" {
		return nil, fmt.Errorf("parquet: empty instance")
	}
	w := &Writer{dir: dir, cfg: cfg, instance: safeName(cfg.instance), owned: map[TopicPartition]*os.File{}, next: map[TopicPartition]int64{}}
	for _, d := range []string{dir, filepath.Join(dir, manifestDir, partitionsDir), w.stagingDir()} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("parquet: open %s: %w", dir, err)
		}
	}
	w.resetSegment()
	if err := w.attach(); err != nil {
		w.unlock()
		return nil, err
	}
	return w, nil
}

// attach locks the directory for this instance and recovers what its
// last run left.
func (w *Writer) attach() error {
	var err error
	if w.rootLock, err = w.lockRoot(); err != nil {
		return err
	}
	if w.instLock, err = lockFile(filepath.Join(w.stagingDir(), lockName)); err != nil {
		if errors.Is(err, errBusy) {
			return fmt.Errorf("parquet: %s is in use by another writer of instance %q (two processes with one instance id?)", w.dir, w.cfg.instance)
		}
		return fmt.Errorf("parquet: lock instance %q: %w", w.cfg.instance, err)
	}
	commits, err := w.readCommits()
	if err != nil {
		return err
	}
	for _, c := range commits {
		w.next[TopicPartition{c.Topic, c.Partition}] = c.Next
	}
	if err := w.recoverOwn(commits); err != nil {
		return err
	}
	// Read again: recoverOwn completed some, and only this instance writes
	// commits that name its staging directory.
	if commits, err = w.readCommits(); err != nil {
		return err
	}
	return w.dropUncommitted(commits)
}

func (w *Writer) resetSegment() {
	w.ranges = map[TopicPartition]*offsetRange{}
	w.fileSeq = 0
	w.open = map[partKey]*partFile{}
	w.finished = nil
	w.bytes = 0
	w.buffered = 0
	w.evicted = false
	w.broken = nil
}

// Resume returns, per topic-partition, the next offset to read: everything
// before it is committed (published, or published by the partition's next
// owner). For partitions this writer does not own it is the offset as last
// seen (at Open); Own returns the current one.
func (w *Writer) Resume() map[TopicPartition]int64 {
	out := make(map[TopicPartition]int64, len(w.next))
	for k, v := range w.next {
		out[k] = v
	}
	return out
}

// Due reports whether the pending segment is old or large enough that the
// caller should Commit (after writing every batch of the offsets it read).
func (w *Writer) Due() bool {
	if len(w.ranges) == 0 {
		return false
	}
	// An eviction says the segment touches more partitions than may be
	// open: committing it now, rather than evicting on every batch of the
	// next polls, keeps the files per partition down.
	return w.bytes >= w.cfg.rollBytes || w.evicted || len(w.finished) >= maxSegmentFiles ||
		w.cfg.clock().Sub(w.started) >= w.cfg.rollAge
}

// Write stages the rows of b, split by the hour of each row's Timestamp.
// A batch whose offset an earlier Commit covered is ignored, so replaying
// from before Resume adds no rows. Write keeps a reference to b.Record
// (Retain) until its rows are written out; the caller still releases its
// own.
func (w *Writer) Write(src Source, b normalize.Batch) error {
	return w.WriteContext(context.Background(), src, b)
}

// WriteContext is Write that gives up when ctx ends: a batch whose rows
// span thousands of hours is thousands of files, so a stop must not wait
// for all of them. It then returns ctx's error and the segment is unusable:
// Abort it (its offsets are read again) or reopen.
func (w *Writer) WriteContext(ctx context.Context, src Source, b normalize.Batch) error {
	if w.closed {
		return errors.New("parquet: write on closed writer")
	}
	if w.broken != nil {
		return fmt.Errorf("parquet: writer unusable after earlier error (Abort or reopen): %w", w.broken)
	}
	tp := TopicPartition{src.Topic, src.Partition}
	if w.owned[tp] == nil {
		// A writer alone in its directory (tests, tools) owns what it
		// writes; the sink owns its partitions on assignment.
		if _, busy, err := w.Own(tp); err != nil {
			return err
		} else if len(busy) > 0 {
			return fmt.Errorf("parquet: %s/%d: %w", tp.Topic, tp.Partition, ErrOwned)
		}
	}
	if n, ok := w.next[tp]; ok && src.Offset < n {
		return nil
	}
	r, ok := w.ranges[tp]
	if ok && src.Offset < r.Last {
		return fmt.Errorf("parquet: offset %d of %s/%d goes back (segment at %d)", src.Offset, src.Topic, src.Partition, r.Last)
	}
	hasRows := b.Record != nil && b.Record.NumRows() > 0
	if hasRows {
		if err := checkBatch(b); err != nil {
			return err
		}
		if rec, renamed := safeColumns(b.Record); renamed {
			defer rec.Release()
			b.Record = rec
		}
	}
	if !ok {
		if len(w.ranges) == 0 {
			w.started = w.cfg.clock()
		}
		// The range first: its first offset names the partition's files.
		r = &offsetRange{Topic: src.Topic, Partition: src.Partition, First: src.Offset, Last: src.Offset}
		w.ranges[tp] = r
	}
	if hasRows {
		if err := w.writeRecord(ctx, src, b); err != nil {
			w.broken = err
			return err
		}
		w.bytes += b.Bytes
	}
	r.Last = src.Offset
	return nil
}

func (w *Writer) writeRecord(ctx context.Context, src Source, b normalize.Batch) error {
	rec := b.Record
	tp := TopicPartition{src.Topic, src.Partition}
	hours := rowHours(w.hours, rec, b.MinTime)
	w.hours = hours
	recBytes := max(recordBytes(rec), int64(len(hours)))
	lo := 0
	for lo < len(hours) {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("parquet: write interrupted: %w", err)
		}
		hi := lo + 1
		for hi < len(hours) && hours[hi] == hours[lo] {
			hi++
		}
		key := partKey{table: b.Table, tenant: b.Tenant, hour: hours[lo], tp: tp}
		pf, err := w.file(key, rec.Schema())
		if err != nil {
			return err
		}
		var part arrow.Record = rec
		if lo != 0 || hi != len(hours) {
			part = rec.NewSlice(int64(lo), int64(hi))
		} else {
			rec.Retain()
		}
		n := int64(hi - lo)
		pf.pending = append(pf.pending, part)
		pf.pendingRows += n
		pf.rows += n
		// A slice holds its record's buffers: its share of them by rows
		// stands for what it holds.
		held := recBytes * n / int64(len(hours))
		pf.buffered += held
		w.buffered += held
		if pf.pendingRows >= w.cfg.rowGroupRows {
			if err := w.flushRows(pf); err != nil {
				return err
			}
		}
		// Pending rows count uncompressed: the file rolls a little early
		// rather than late.
		if pf.cw.n+pf.buffered >= w.cfg.rollBytes {
			if err := w.finish(pf); err != nil {
				return err
			}
		}
		for limit := w.bufferLimit(); w.buffered > limit; {
			if err := w.flushLargest(); err != nil {
				return err
			}
		}
		lo = hi
	}
	return nil
}

// bufferLimit is MaxBufferedBytes, lowered over the second half of the
// segment (by age or by bytes, whichever is further along) to an eighth of
// it at the roll. A roll writes out every pending row at once, all files
// together; a steady stream keeps the buffer full, so without the ramp
// each roll encoded a whole buffer in one burst that took both cores for
// most of a second and held up every other stage (the incident latency's
// p99: bench/RESULTS.md). With it the same rows are written out as the
// roll nears, a file at a time.
func (w *Writer) bufferLimit() int64 {
	limit := w.cfg.maxBuffered
	if len(w.ranges) == 0 {
		return limit
	}
	left := 1.0 // of the ramp: 1 at the segment's midpoint, 0 at its roll
	if age := w.cfg.rollAge; age > 0 {
		left = min(left, 2*float64(age-w.cfg.clock().Sub(w.started))/float64(age))
	}
	if size := w.cfg.rollBytes; size > 0 {
		left = min(left, 2*float64(size-w.bytes)/float64(size))
	}
	floor := limit / rampFloor
	return floor + int64(float64(limit-floor)*max(left, 0))
}

// rampFloor: at its roll a segment holds at most 1/rampFloor of
// MaxBufferedBytes pending (bufferLimit).
const rampFloor = 8

// flushRows writes the pending rows of a file out as one row group (or
// several of RowGroupRows), then lets the batches go.
func (w *Writer) flushRows(pf *partFile) error {
	err := pf.writePending(w.cfg.mem)
	w.buffered -= pf.buffered
	pf.buffered = 0
	if err != nil {
		return fmt.Errorf("parquet: write %s: %w", pf.final, err)
	}
	return nil
}

// writePending writes pf's pending rows out and releases them. It touches
// nothing but pf: files may write theirs at once (finishAll).
func (pf *partFile) writePending(mem memory.Allocator) error {
	if len(pf.pending) == 0 {
		return nil
	}
	rec, err := concatRecords(mem, pf.schema, pf.pending)
	if err == nil {
		err = pf.fw.Write(rec)
		if err == nil {
			err = pf.cw.flush()
		}
		rec.Release()
	}
	pf.releasePending()
	return err
}

// releasePending lets pf's pending rows go unwritten.
func (pf *partFile) releasePending() {
	for i, r := range pf.pending {
		r.Release()
		pf.pending[i] = nil
	}
	pf.pending = pf.pending[:0]
	pf.pendingRows = 0
}

// dropPending releases the pending rows of a file (an aborted segment).
func (w *Writer) dropPending(pf *partFile) {
	pf.releasePending()
	w.buffered -= pf.buffered
	pf.buffered = 0
}

// flushLargest writes out the pending rows of the open file that holds the
// most, so the open files together hold at most about MaxBufferedBytes.
func (w *Writer) flushLargest() error {
	var big *partFile
	for _, pf := range w.open {
		if big == nil || pf.buffered > big.buffered {
			big = pf
		}
	}
	if big == nil || big.buffered == 0 {
		w.buffered = 0 // nothing holds rows: the count drifted
		return nil
	}
	return w.flushRows(big)
}

// concatRecords makes one record of several of one schema (a copy), or
// returns the only one, retained.
func concatRecords(mem memory.Allocator, schema *arrow.Schema, recs []arrow.Record) (arrow.Record, error) {
	if len(recs) == 1 {
		recs[0].Retain()
		return recs[0], nil
	}
	var rows int64
	for _, r := range recs {
		rows += r.NumRows()
	}
	cols := make([]arrow.Array, len(schema.Fields()))
	defer func() {
		for _, c := range cols {
			if c != nil {
				c.Release()
			}
		}
	}()
	parts := make([]arrow.Array, len(recs))
	for i := range cols {
		for j, r := range recs {
			parts[j] = r.Column(i)
		}
		c, err := array.Concatenate(parts, mem)
		if err != nil {
			return nil, fmt.Errorf("concatenate column %s: %w", schema.Field(i).Name, err)
		}
		cols[i] = c
	}
	return array.NewRecord(schema, cols, rows), nil
}

// recordBytes is the size of the buffers a record holds, dictionaries and
// children included.
func recordBytes(rec arrow.Record) int64 {
	var n int64
	for _, c := range rec.Columns() {
		n += dataBytes(c.Data())
	}
	return n
}

func dataBytes(d arrow.ArrayData) int64 {
	var n int64
	for _, b := range d.Buffers() {
		if b != nil {
			n += int64(b.Len())
		}
	}
	for _, c := range d.Children() {
		n += dataBytes(c)
	}
	if d.DataType().ID() == arrow.DICTIONARY {
		if dict := d.Dictionary(); dict != nil {
			n += dataBytes(dict)
		}
	}
	return n
}

// The partitions a timestamp may land in: years 0001 to 9999, so that every
// date= directory parses as YYYY-MM-DD. The normalizer dead-letters rows
// outside them; a row from elsewhere is clamped to the first or last hour.
var (
	minHour = time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC).Unix() / 3600
	maxHour = time.Date(9999, 12, 31, 23, 0, 0, 0, time.UTC).Unix() / 3600
)

// rowHours returns, per row, the UTC hour (since the epoch) of its Timestamp,
// clamped to [minHour, maxHour]. A row without one (the normalizer
// dead-letters those, so this is a guard) goes to the hour of the batch's
// MinTime.
func rowHours(dst []int64, rec arrow.Record, minTime time.Time) []int64 {
	n := int(rec.NumRows())
	hours := dst[:0]
	if cap(hours) < n {
		hours = make([]int64, n)
	}
	hours = hours[:n]
	fallback := clampHour(minTime.UTC().Unix() / 3600)
	var ts *array.Timestamp
	var unit arrow.TimeUnit
	for i, f := range rec.Schema().Fields() {
		if f.Name == "Timestamp" {
			if tt, ok := f.Type.(*arrow.TimestampType); ok {
				ts, _ = rec.Column(i).(*array.Timestamp)
				unit = tt.Unit
			}
			break
		}
	}
	if ts == nil {
		for i := range hours {
			hours[i] = fallback
		}
		return hours
	}
	perHour := int64(time.Hour / unit.Multiplier())
	vals := ts.TimestampValues()
	for i := range hours {
		if ts.IsNull(i) {
			hours[i] = fallback
			continue
		}
		v := int64(vals[i])
		h := v / perHour
		if v < 0 && v%perHour != 0 {
			h-- // floor, for the rare pre-1970 value
		}
		hours[i] = clampHour(h)
	}
	return hours
}

func clampHour(h int64) int64 { return min(max(h, minHour), maxHour) }

// file returns the open file of a partition, starting one when there is
// none or when the schema changed (schema evolution rolls the file, so each
// file has one schema and readers union them by name).
func (w *Writer) file(key partKey, schema *arrow.Schema) (*partFile, error) {
	w.tick++
	if pf, ok := w.open[key]; ok {
		if pf.schema.Equal(schema) {
			pf.used = w.tick
			return pf, nil
		}
		if err := w.finish(pf); err != nil {
			return nil, err
		}
	}
	for len(w.open) >= w.cfg.maxOpen {
		var lru *partFile
		for _, pf := range w.open {
			if lru == nil || pf.used < lru.used {
				lru = pf
			}
		}
		if err := w.finish(lru); err != nil {
			return nil, err
		}
		w.evicted = true
	}
	t := time.Unix(key.hour*3600, 0).UTC()
	// The name carries its own table; the instance and the partition's
	// segment (its input partition and first offset) only as a hash, which
	// keeps names unique across segments and instances: no other segment
	// of the partition starts at that offset (committing it moves Resume
	// past it), and the partition has one owner at a time.
	seg := w.segment(key.tp)
	name := fmt.Sprintf("part-%s-%016x-%04d.parquet", key.table, fnv64(w.instance+"/"+seg), w.fileSeq)
	w.fileSeq++
	pf := &partFile{
		key:    key,
		schema: schema,
		staged: filepath.Join(stagingDir, w.instance, name+tmpExt),
		used:   w.tick,
		final: filepath.Join(key.table, "tenant="+TenantElement(key.tenant),
			"date="+t.Format("2006-01-02"), "hour="+t.Format("15"), name),
	}
	f, err := os.OpenFile(filepath.Join(w.dir, pf.staged), os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		return nil, fmt.Errorf("parquet: stage %s: %w", pf.final, err)
	}
	pf.f = f
	pf.cw = &countingWriter{f: f, out: &w.out}
	wopts := []pq.WriterProperty{
		pq.WithCompression(compress.Codecs.Zstd),
		pq.WithMaxRowGroupLength(w.cfg.rowGroupRows),
		// Parquet dictionary pages only for the columns the normalizer
		// made Arrow dictionaries (low cardinality): on high-cardinality
		// strings Arrow Go's dictionary encoder is 5x slower than plain
		// pages plus zstd, for a few percent of size (bench/RESULTS.md).
		pq.WithDictionaryDefault(false),
		pq.WithStats(true),
		pq.WithAllocator(w.cfg.mem),
		pq.WithCreatedBy("stitch"),
	}
	for _, f := range schema.Fields() {
		if f.Type.ID() == arrow.DICTIONARY {
			wopts = append(wopts, pq.WithDictionaryFor(f.Name, true))
		}
	}
	props := pq.NewWriterProperties(wopts...)
	// The stored Arrow schema keeps dictionary columns, the UTC zone and the
	// stitch.* metadata when Arrow readers read the file back.
	aprops := pqarrow.NewArrowWriterProperties(pqarrow.WithStoreSchema(), pqarrow.WithAllocator(w.cfg.mem))
	fw, err := pqarrow.NewFileWriter(schema, pf.cw, props, aprops)
	if err != nil {
		f.Close()
		os.Remove(filepath.Join(w.dir, pf.staged))
		return nil, fmt.Errorf("parquet: start %s: %w", pf.final, err)
	}
	pf.fw = fw
	w.open[key] = pf
	return pf, nil
}

// finish writes the footer of a staged file and fsyncs it; it joins the
// segment's file list and is renamed at Commit.
func (w *Writer) finish(pf *partFile) error {
	delete(w.open, pf.key)
	err := pf.close(w.cfg.mem)
	w.buffered -= pf.buffered
	pf.buffered = 0
	if err != nil {
		return err
	}
	w.finished = append(w.finished, pf.manifest())
	return nil
}

// close writes out pf's pending rows and footer and makes the file
// durable. It touches nothing but pf: several files may close at once
// (finishAll).
func (pf *partFile) close(mem memory.Allocator) error {
	err := pf.writePending(mem)
	if cerr := pf.fw.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = pf.cw.flush()
	}
	if err == nil {
		err = pf.f.Sync()
	}
	if cerr := pf.f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("parquet: finish %s: %w", pf.final, err)
	}
	return nil
}

func (pf *partFile) manifest() manifestFile {
	return manifestFile{Staged: pf.staged, Final: pf.final, Rows: pf.rows, Bytes: pf.cw.n, tp: pf.key.tp}
}

// finishers bounds the files a commit finishes at once: finishing is the
// encoding of their pending rows (CPU) and an fsync each (the disk), and a
// drained stream's last commit finishes every file of the segment.
const finishers = 4

// finishAll finishes every open file, several at once, each with a write
// buffer of its own. A file that fails stays open, for Abort to remove.
func (w *Writer) finishAll() error {
	files := make([]*partFile, 0, len(w.open))
	for _, pf := range w.open {
		files = append(files, pf)
	}
	sort.Slice(files, func(i, j int) bool { return files[i].staged < files[j].staged })
	// The shared buffer may hold bytes of one of them.
	if err := w.out.flush(); err != nil {
		return fmt.Errorf("parquet: write a staged file: %w", err)
	}
	errs := make([]error, len(files))
	var wg sync.WaitGroup
	next := make(chan int)
	for range min(finishers, len(files)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out := &sharedBuf{}
			for i := range next {
				files[i].cw.out = out
				errs[i] = files[i].close(w.cfg.mem)
			}
		}()
	}
	for i := range files {
		next <- i
	}
	close(next)
	wg.Wait()
	for i, pf := range files {
		if errs[i] != nil {
			continue
		}
		delete(w.open, pf.key)
		w.buffered -= pf.buffered
		pf.buffered = 0
		w.finished = append(w.finished, pf.manifest())
	}
	return errors.Join(errs...)
}

// Commit makes the pending segment durable and visible: after it returns,
// Resume is past every offset written so far.
func (w *Writer) Commit() error {
	if w.closed {
		return errors.New("parquet: commit on closed writer")
	}
	if w.broken != nil {
		return fmt.Errorf("parquet: cannot commit after earlier error: %w", w.broken)
	}
	if len(w.ranges) == 0 {
		return nil
	}
	if err := w.finishAll(); err != nil {
		w.broken = err
		return err
	}
	tps := make([]TopicPartition, 0, len(w.ranges))
	for tp := range w.ranges {
		if w.owned[tp] == nil {
			// Release refuses a partition with rows pending, so this is a
			// bug: committing without the lock could race its new owner.
			w.broken = fmt.Errorf("parquet: commit of %s/%d, which this writer does not own", tp.Topic, tp.Partition)
			return w.broken
		}
		tps = append(tps, tp)
	}
	sortPartitions(tps)
	files := map[TopicPartition][]manifestFile{}
	for _, f := range w.finished {
		files[f.tp] = append(files[f.tp], f)
	}
	commits := make([]*partitionCommit, 0, len(tps))
	for _, tp := range tps {
		r := w.ranges[tp]
		commits = append(commits, &partitionCommit{Topic: tp.Topic, Partition: tp.Partition, Next: r.Last + 1, Segment: w.segment(tp),
			Instance: w.cfg.instance, Created: w.cfg.clock().UTC(), Files: files[tp]})
	}
	written, err := w.writeCommits(commits)
	if err != nil {
		w.broken = err
		w.committedSome(written)
		return err
	}
	if w.crashAfterManifest { // tests: die between the commits and the renames
		w.broken = errCrash
		w.committedSome(commits)
		return errCrash
	}
	w.committedSome(commits)
	if _, err := w.publish(commits); err != nil {
		w.broken = err
		return err
	}
	var rows, nfiles int64
	for _, c := range commits {
		for _, f := range c.Files {
			rows += f.Rows
			nfiles++
		}
	}
	w.cfg.log.Debug("hunting: committed segment", "partitions", len(commits), "files", nfiles, "rows", rows)
	w.resetSegment()
	return nil
}

// commitWriters bounds the commit.json files written at once: each is two
// fsyncs (the file, its directory), which a network file system answers
// in parallel far faster than in turn.
const commitWriters = 16

// writeCommits writes the partitions' commit.json files, several at once,
// each its partition's commit point, and returns those written (all,
// unless an error or the hook stopped some).
func (w *Writer) writeCommits(commits []*partitionCommit) ([]*partitionCommit, error) {
	done := make([]bool, len(commits))
	errs := make([]error, len(commits))
	var wg sync.WaitGroup
	next := make(chan int)
	for range min(commitWriters, len(commits)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				c := commits[i]
				tp := TopicPartition{c.Topic, c.Partition}
				if w.cfg.hook != nil {
					if errs[i] = w.cfg.hook("commit", tp); errs[i] != nil {
						continue
					}
				}
				if errs[i] = w.writeCommit(c); errs[i] != nil {
					continue
				}
				done[i] = true
				if w.cfg.hook != nil {
					errs[i] = w.cfg.hook("committed", tp)
				}
			}
		}()
	}
	for i := range commits {
		next <- i
	}
	close(next)
	wg.Wait()
	var written []*partitionCommit
	for i, c := range commits {
		if done[i] {
			written = append(written, c)
		}
	}
	return written, errors.Join(errs...)
}

// committedSome records that the partitions of commits are committed, also
// when the rest of the segment is not: their offsets move on, and their
// files are no longer the segment's to drop (Abort, after a failure
// however late) but the commit's to publish (here, or by whoever owns the
// partition next).
func (w *Writer) committedSome(commits []*partitionCommit) {
	done := map[TopicPartition]bool{}
	for _, c := range commits {
		tp := TopicPartition{c.Topic, c.Partition}
		done[tp] = true
		w.next[tp] = c.Next
		delete(w.ranges, tp)
	}
	kept := w.finished[:0]
	for _, f := range w.finished {
		if !done[f.tp] {
			kept = append(kept, f)
		}
	}
	w.finished = kept
}

// segment names the pending segment's part of a partition: the partition
// and its first offset in it.
func (w *Writer) segment(tp TopicPartition) string {
	first := int64(0)
	if r, ok := w.ranges[tp]; ok {
		first = r.First
	}
	return safeName(fmt.Sprintf("%s-%d-%d", tp.Topic, tp.Partition, first))
}

// publish does the part of a commit that is safe to redo: it renames the
// commits' staged files into their partitions (those still staged) and
// syncs the directories. It returns how many it renamed.
func (w *Writer) publish(commits []*partitionCommit) (int, error) {
	dirs := map[string]bool{}
	renamed := 0
	for _, c := range commits {
		for _, f := range c.Files {
			staged, final := filepath.Join(w.dir, f.Staged), filepath.Join(w.dir, f.Final)
			if _, err := os.Stat(staged); errors.Is(err, os.ErrNotExist) {
				// Published already (or quarantined, or published and then
				// removed by retention): a commit.json keeps naming its
				// files after they are renamed.
				continue
			}
			if err := renameInto(staged, final); err != nil {
				// A file that cannot be published must not stop the
				// pipeline (nor every new owner, which would redo this
				// commit): it is set aside with its reason. Only when even
				// that fails (the disk itself) is the commit an error.
				if qerr := w.quarantine(c.Segment, f, err); qerr != nil {
					return 0, fmt.Errorf("parquet: publish %s: %w (quarantine: %v)", f.Final, err, qerr)
				}
				continue
			}
			renamed++
			dirs[filepath.Dir(staged)] = true
			for d := filepath.Dir(final); d != w.dir && len(d) > len(w.dir); d = filepath.Dir(d) {
				dirs[d] = true
			}
		}
	}
	if renamed == 0 {
		return 0, nil
	}
	dirs[w.dir] = true
	if err := syncDirs(dirs); err != nil {
		return 0, err
	}
	return renamed, nil
}

// syncDirs syncs dirs, commitWriters at once: a drained stream's last
// commit renames files into a few hundred partition directories (tables x
// tenants x days x hours, and their parents), one fsync each, which took a
// third of a second in turn on a local disk.
func syncDirs(dirs map[string]bool) error {
	next := make(chan string)
	errs := make(chan error, len(dirs))
	var wg sync.WaitGroup
	for range min(commitWriters, len(dirs)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for d := range next {
				if err := syncDir(d); err != nil && !errors.Is(err, os.ErrNotExist) {
					errs <- fmt.Errorf("parquet: sync %s: %w", d, err)
				}
			}
		}()
	}
	for d := range dirs {
		next <- d
	}
	close(next)
	wg.Wait()
	close(errs)
	var all []error
	for err := range errs {
		all = append(all, err)
	}
	return errors.Join(all...)
}

// Abort drops the pending segment: staged files are deleted and Resume is
// unchanged. Use it after a failed Write before writing again.
func (w *Writer) Abort() error {
	var errs []error
	for _, pf := range w.open {
		w.dropPending(pf)
		pf.fw.Close()
		pf.f.Close()
		errs = append(errs, removeIfExists(filepath.Join(w.dir, pf.staged)))
	}
	for _, f := range w.finished {
		errs = append(errs, removeIfExists(filepath.Join(w.dir, f.Staged)))
	}
	w.out.to = nil // what it held belongs to the files just dropped
	w.resetSegment()
	return errors.Join(errs...)
}

// Close commits the pending segment and releases the directory and the
// partitions it owns.
func (w *Writer) Close() error {
	if w.closed {
		return nil
	}
	err := w.Commit()
	if err != nil {
		err = errors.Join(err, w.Abort())
	}
	w.closed = true
	w.unlock()
	return err
}

func removeIfExists(p string) error {
	if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// renameInto moves a staged file to its partition, creating the partition
// directories; it retries when retention removes an empty directory
// between the mkdir and the rename.
func renameInto(staged, final string) error {
	var err error
	for range 3 {
		if err = os.MkdirAll(filepath.Dir(final), 0o755); err != nil {
			return err
		}
		if err = os.Rename(staged, final); err == nil {
			return nil
		}
		if _, serr := os.Stat(staged); serr != nil {
			return err // the staged file is missing: not a directory race
		}
	}
	return err
}

// writeAtomic writes data to path via a temporary file, fsync and rename,
// then fsyncs the directory, so a reader sees the old or the new content.
func writeAtomic(path string, data []byte) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		return fmt.Errorf("parquet: write %s: %w", path, err)
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err == nil {
		err = syncDir(filepath.Dir(path))
	}
	if err != nil {
		return fmt.Errorf("parquet: write %s: %w", path, err)
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// countingWriter is a staged file as the Parquet encoder writes it: what
// it writes (a page header, a page, a footer at a time) goes through one
// buffer the open files share, so that a row group is a few large writes,
// not two per page. flush writes the buffer out to the file it holds.
type countingWriter struct {
	f   *os.File
	out *sharedBuf
	n   int64
}

type sharedBuf struct {
	to  *os.File // the file whose bytes buf holds
	buf *bufio.Writer
}

func (c *countingWriter) Write(p []byte) (int, error) {
	o := c.out
	if o.to != c.f {
		if err := c.flushOther(); err != nil {
			return 0, err
		}
		if o.buf == nil {
			o.buf = bufio.NewWriterSize(c.f, 256<<10)
		}
		o.buf.Reset(c.f)
		o.to = c.f
	}
	n, err := o.buf.Write(p)
	c.n += int64(n)
	return n, err
}

// flushOther writes out what the buffer holds of another file.
func (c *countingWriter) flushOther() error { return c.out.flush() }

// flush writes out what the buffer holds of this file.
func (c *countingWriter) flush() error {
	if c.out.to != c.f {
		return nil
	}
	return c.out.flush()
}

// flush writes out what the buffer holds, to its file.
func (o *sharedBuf) flush() error {
	if o.to == nil {
		return nil
	}
	err := o.buf.Flush()
	o.to = nil
	return err
}

// escape makes a value safe as one path element, Hive style: bytes outside
// [A-Za-z0-9._-] (and a leading dot) become %XX, which Hive readers decode.
func escape(s string) string {
	safe := true
	for i := 0; i < len(s); i++ {
		if !safeByte(s[i]) {
			safe = false
			break
		}
	}
	if safe && s != "" && s[0] != '.' {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if safeByte(c) && !(i == 0 && c == '.') {
			b.WriteByte(c)
		} else {
			b.WriteString("%" + strings.ToUpper(strconv.FormatUint(uint64(c)|0x100, 16)[1:]))
		}
	}
	return b.String()
}

func safeByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-'
}

// checkName rejects table names that would escape or confuse the layout.
func checkName(what, s string) error {
	if s == "" || escape(s) != s || strings.HasPrefix(s, "_") {
		return fmt.Errorf("parquet: %s name %q is not a plain identifier", what, s)
	}
	return nil
}

// fnv64 is the FNV-1a hash of s.
func fnv64(s string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(s))
	return h.Sum64()
}
