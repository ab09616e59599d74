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
// finished to open another), and their row groups buffer about
// MaxBufferedBytes of input together.
//
// How exactly-once works: Write stages rows in files under <dir>/_staging
// (named *.parquet.tmp, invisible to readers). Commit finishes and fsyncs
// them, writes a manifest naming the offset ranges and the files
// (_manifest/<segment>.pending.json, atomically), renames the files into
// their partitions, records the next offset per topic-partition in
// _manifest/offsets.json and only then drops the manifest. A crash before the
// manifest leaves staged files that Open deletes (the rows are re-read from
// Resume); a crash after it is completed by Open, which redoes the renames.
// Either way each input offset lands in the partitions once.
package parquet

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
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
	offsetsFile   = "offsets.json"
	pendingExt    = ".pending.json"
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
// open file holds its encoders and its buffered row group, so this, with
// MaxBufferedBytes, is what bounds the writer's memory whatever the number
// of (table, tenant, hour) partitions a segment touches.
func MaxOpenFiles(n int) Option { return func(c *config) { c.maxOpen = n } }

// MaxBufferedBytes bounds the input bytes buffered in the row groups of the
// open files together (default 64 MiB): past it, the file holding the most
// writes its row group out.
func MaxBufferedBytes(n int64) Option { return func(c *config) { c.maxBuffered = n } }

// OnQuarantine is called for each file of a segment that could not be
// published and was moved to _quarantine instead (file is its partition
// path, reason the error), so the caller can count it.
func OnQuarantine(f func(file, reason string)) Option {
	return func(c *config) { c.quarantined = f }
}

// Clock replaces time.Now (tests).
func Clock(f func() time.Time) Option { return func(c *config) { c.clock = f } }

// Allocator sets the Arrow allocator used by the Parquet encoder.
func Allocator(mem memory.Allocator) Option { return func(c *config) { c.mem = mem } }

// Logger sets the logger (default slog.Default()).
func Logger(l *slog.Logger) Option { return func(c *config) { c.log = l } }

// Writer writes batches into hunting partitions. It is not safe for
// concurrent use; one Writer owns a directory at a time (a lock file enforces
// it).
type Writer struct {
	dir  string
	cfg  config
	lock *os.File

	next map[TopicPartition]int64 // committed: next offset to read

	// The pending segment.
	ranges   map[TopicPartition]*offsetRange
	segID    string
	started  time.Time
	fileSeq  int
	open     map[partKey]*partFile
	finished []manifestFile
	bytes    int64 // approximate bytes staged in this segment
	buffered int64 // input bytes in the open files' row groups (estimated)
	tick     uint64
	evicted  bool // a file was finished early to respect MaxOpenFiles

	hours []int64 // reused per batch

	crashAfterManifest bool // tests only

	broken error // a failed write leaves the segment unusable: Abort or reopen
	closed bool
}

var errCrash = errors.New("parquet: simulated crash")

type partKey struct {
	table, tenant string
	hour          int64 // hours since the Unix epoch, UTC
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

	used     uint64 // w.tick at the last write: the least recently used is closed first
	buffered int64  // input bytes in its current row group (estimated)
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
}

type manifest struct {
	Segment string         `json:"segment"`
	Ranges  []offsetRange  `json:"ranges"`
	Files   []manifestFile `json:"files"`
	Created time.Time      `json:"created"`
}

type offsetsState struct {
	Next []offsetRange `json:"next"` // First holds the next offset; Last is unused
}

// Open opens (creating if needed) the hunting directory dir for writing,
// completes segments a crash left between manifest and renames, and deletes
// staged files that no manifest covers.
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
	}
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.rowGroupRows <= 0 || cfg.rollBytes <= 0 || cfg.maxOpen <= 0 || cfg.maxBuffered <= 0 {
		return nil, fmt.Errorf("parquet: RowGroupRows, RollBytes, MaxOpenFiles and MaxBufferedBytes must be positive")
	}
	for _, d := range []string{dir, filepath.Join(dir, manifestDir), filepath.Join(dir, stagingDir)} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("parquet: open %s: %w", dir, err)
		}
	}
	lock, err := os.OpenFile(filepath.Join(dir, manifestDir, "LOCK"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("parquet: open lock: %w", err)
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		lock.Close()
		return nil, fmt.Errorf("parquet: %s is in use by another writer: %w", dir, err)
	}
	w := &Writer{dir: dir, cfg: cfg, lock: lock, next: map[TopicPartition]int64{}}
	w.resetSegment()
	if err := w.recover(); err != nil {
		lock.Close()
		return nil, err
	}
	return w, nil
}

func (w *Writer) resetSegment() {
	w.ranges = map[TopicPartition]*offsetRange{}
	w.segID = ""
	w.fileSeq = 0
	w.open = map[partKey]*partFile{}
	w.finished = nil
	w.bytes = 0
	w.buffered = 0
	w.evicted = false
	w.broken = nil
}

func (w *Writer) recover() error {
	mdir := filepath.Join(w.dir, manifestDir)
	if data, err := os.ReadFile(filepath.Join(mdir, offsetsFile)); err == nil {
		var st offsetsState
		if err := json.Unmarshal(data, &st); err != nil {
			return fmt.Errorf("parquet: read %s: %w", offsetsFile, err)
		}
		for _, r := range st.Next {
			w.next[TopicPartition{r.Topic, r.Partition}] = r.First
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("parquet: read offsets: %w", err)
	}
	pending, err := filepath.Glob(filepath.Join(mdir, "*"+pendingExt))
	if err != nil {
		return fmt.Errorf("parquet: list manifests: %w", err)
	}
	sort.Strings(pending)
	for _, p := range pending {
		data, err := os.ReadFile(p)
		if err != nil {
			return fmt.Errorf("parquet: read manifest: %w", err)
		}
		var m manifest
		if err := json.Unmarshal(data, &m); err != nil {
			// A manifest is written to a temporary name and renamed, so a
			// torn one means the disk lied: refuse rather than guess.
			return fmt.Errorf("parquet: manifest %s is corrupt: %w", p, err)
		}
		w.cfg.log.Info("hunting: completing segment left by a crash", "segment", m.Segment, "files", len(m.Files))
		if err := w.complete(p, &m); err != nil {
			return err
		}
	}
	// Whatever is still staged was never covered by a manifest: its offsets
	// will be read again from Resume.
	staged, err := os.ReadDir(filepath.Join(w.dir, stagingDir))
	if err != nil {
		return fmt.Errorf("parquet: list staging: %w", err)
	}
	for _, e := range staged {
		p := filepath.Join(w.dir, stagingDir, e.Name())
		if err := os.Remove(p); err != nil {
			return fmt.Errorf("parquet: drop uncommitted %s: %w", p, err)
		}
		w.cfg.log.Info("hunting: dropped uncommitted file", "file", e.Name())
	}
	return nil
}

// Resume returns, per topic-partition, the next offset to read: everything
// before it is durably in the partitions.
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
// from before Resume adds no rows. Write does not retain b.Record; the
// caller still owns (and releases) it.
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
	if n, ok := w.next[tp]; ok && src.Offset < n {
		return nil
	}
	if r, ok := w.ranges[tp]; ok && src.Offset < r.Last {
		return fmt.Errorf("parquet: offset %d of %s/%d goes back (segment at %d)", src.Offset, src.Topic, src.Partition, r.Last)
	}
	if b.Record != nil && b.Record.NumRows() > 0 {
		if err := checkBatch(b); err != nil {
			return err
		}
		if rec, renamed := safeColumns(b.Record); renamed {
			defer rec.Release()
			b.Record = rec
		}
		if err := w.writeRecord(ctx, src, b); err != nil {
			w.broken = err
			return err
		}
		w.bytes += b.Bytes
	}
	if len(w.ranges) == 0 {
		w.started = w.cfg.clock()
	}
	if r, ok := w.ranges[tp]; ok {
		r.Last = src.Offset
	} else {
		w.ranges[tp] = &offsetRange{Topic: src.Topic, Partition: src.Partition, First: src.Offset, Last: src.Offset}
	}
	return nil
}

func (w *Writer) writeRecord(ctx context.Context, src Source, b normalize.Batch) error {
	rec := b.Record
	if w.segID == "" {
		// Deterministic and unique: no other segment can start at this
		// offset, because committing it moves Resume past it.
		w.segID = safeName(fmt.Sprintf("%s-%d-%d", src.Topic, src.Partition, src.Offset))
	}
	hours := rowHours(w.hours, rec, b.MinTime)
	w.hours = hours
	lo := 0
	for lo < len(hours) {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("parquet: write interrupted: %w", err)
		}
		hi := lo + 1
		for hi < len(hours) && hours[hi] == hours[lo] {
			hi++
		}
		key := partKey{table: b.Table, tenant: b.Tenant, hour: hours[lo]}
		pf, err := w.file(key, rec.Schema())
		if err != nil {
			return err
		}
		var part arrow.Record = rec
		if lo != 0 || hi != len(hours) {
			part = rec.NewSlice(int64(lo), int64(hi))
		}
		err = pf.fw.WriteBuffered(part)
		if part != rec {
			part.Release()
		}
		if err != nil {
			return fmt.Errorf("parquet: write %s: %w", pf.final, err)
		}
		pf.rows += int64(hi - lo)
		// The batch's input bytes, shared out by rows, stand for what
		// the row group now buffers.
		est := max(b.Bytes, int64(len(hours))*64) * int64(hi-lo) / int64(len(hours))
		pf.buffered += est
		w.buffered += est
		if pf.cw.n+pf.fw.RowGroupTotalCompressedBytes() >= w.cfg.rollBytes {
			if err := w.finish(pf); err != nil {
				return err
			}
		}
		if w.buffered > w.cfg.maxBuffered {
			w.flushLargest()
		}
		lo = hi
	}
	return nil
}

// flushLargest writes out the row group of the open file that buffers the
// most, so the open files together buffer at most about MaxBufferedBytes.
func (w *Writer) flushLargest() {
	var big *partFile
	for _, pf := range w.open {
		if big == nil || pf.buffered > big.buffered {
			big = pf
		}
	}
	if big == nil || big.buffered == 0 {
		return
	}
	big.fw.NewBufferedRowGroup() // closes (writes out) the current one
	w.buffered -= big.buffered
	big.buffered = 0
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
	// The name carries its own table; the segment (named after the first
	// source it read, often another table's topic) only as a hash, which
	// keeps names unique across segments.
	name := fmt.Sprintf("part-%s-%016x-%04d.parquet", key.table, fnv64(w.segID), w.fileSeq)
	w.fileSeq++
	pf := &partFile{
		key:    key,
		schema: schema,
		staged: filepath.Join(stagingDir, name+tmpExt),
		used:   w.tick,
		final: filepath.Join(key.table, "tenant="+TenantElement(key.tenant),
			"date="+t.Format("2006-01-02"), "hour="+t.Format("15"), name),
	}
	f, err := os.OpenFile(filepath.Join(w.dir, pf.staged), os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		return nil, fmt.Errorf("parquet: stage %s: %w", pf.final, err)
	}
	pf.f = f
	pf.cw = &countingWriter{w: f}
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
	w.buffered -= pf.buffered
	pf.buffered = 0
	err := pf.fw.Close()
	if err == nil {
		err = pf.f.Sync()
	}
	if cerr := pf.f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("parquet: finish %s: %w", pf.final, err)
	}
	w.finished = append(w.finished, manifestFile{Staged: pf.staged, Final: pf.final, Rows: pf.rows, Bytes: pf.cw.n})
	return nil
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
	keys := make([]partKey, 0, len(w.open))
	for k := range w.open {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return w.open[keys[i]].staged < w.open[keys[j]].staged })
	for _, k := range keys {
		if err := w.finish(w.open[k]); err != nil {
			w.broken = err
			return err
		}
	}
	m := manifest{Segment: w.segID, Files: w.finished, Created: w.cfg.clock().UTC()}
	if m.Segment == "" { // only empty batches: still move the offsets on
		r := w.firstRange()
		m.Segment = safeName(fmt.Sprintf("%s-%d-%d", r.Topic, r.Partition, r.First))
	}
	for _, r := range w.ranges {
		m.Ranges = append(m.Ranges, *r)
	}
	sort.Slice(m.Ranges, func(i, j int) bool {
		a, b := m.Ranges[i], m.Ranges[j]
		return a.Topic < b.Topic || a.Topic == b.Topic && a.Partition < b.Partition
	})
	data, err := json.Marshal(&m)
	if err != nil {
		return fmt.Errorf("parquet: encode manifest: %w", err)
	}
	mpath := filepath.Join(w.dir, manifestDir, m.Segment+pendingExt)
	if err := writeAtomic(mpath, data); err != nil {
		w.broken = err
		return err
	}
	if w.crashAfterManifest { // tests: die between manifest and renames
		w.broken = errCrash
		return errCrash
	}
	if err := w.complete(mpath, &m); err != nil {
		w.broken = err
		return err
	}
	var rows int64
	for _, f := range m.Files {
		rows += f.Rows
	}
	w.cfg.log.Debug("hunting: committed segment", "segment", m.Segment, "files", len(m.Files), "rows", rows)
	w.resetSegment()
	return nil
}

func (w *Writer) firstRange() *offsetRange {
	var first *offsetRange
	for _, r := range w.ranges {
		if first == nil || r.Topic < first.Topic || r.Topic == first.Topic && r.Partition < first.Partition {
			first = r
		}
	}
	return first
}

// complete does the part of a commit that is safe to redo: renames, the
// offsets checkpoint, and dropping the manifest.
func (w *Writer) complete(mpath string, m *manifest) error {
	dirs := map[string]bool{}
	for _, f := range m.Files {
		staged, final := filepath.Join(w.dir, f.Staged), filepath.Join(w.dir, f.Final)
		if err := renameInto(staged, final); err != nil {
			if errors.Is(err, os.ErrNotExist) {
				if _, serr := os.Stat(final); serr == nil {
					continue // renamed before the crash
				}
				// Neither staged nor final: retention removed the partition.
				w.cfg.log.Warn("hunting: committed file is gone", "file", f.Final)
				continue
			}
			// A file that cannot be published must not stop the pipeline
			// (nor every restart, which would redo this manifest): it is
			// set aside with its reason. Only when even that fails (the
			// disk itself) is the commit an error, retried by a restart.
			if qerr := w.quarantine(m.Segment, f, err); qerr != nil {
				return fmt.Errorf("parquet: publish %s: %w (quarantine: %v)", f.Final, err, qerr)
			}
			continue
		}
		for d := filepath.Dir(final); d != w.dir && len(d) > len(w.dir); d = filepath.Dir(d) {
			dirs[d] = true
		}
	}
	dirs[w.dir] = true
	dirs[filepath.Join(w.dir, stagingDir)] = true
	for d := range dirs {
		if err := syncDir(d); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("parquet: sync %s: %w", d, err)
		}
	}
	for _, r := range m.Ranges {
		tp := TopicPartition{r.Topic, r.Partition}
		if n, ok := w.next[tp]; !ok || r.Last+1 > n {
			w.next[tp] = r.Last + 1
		}
	}
	if err := w.saveOffsets(); err != nil {
		return err
	}
	if err := os.Remove(mpath); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("parquet: drop manifest: %w", err)
	}
	return nil
}

func (w *Writer) saveOffsets() error {
	st := offsetsState{Next: make([]offsetRange, 0, len(w.next))}
	for tp, n := range w.next {
		st.Next = append(st.Next, offsetRange{Topic: tp.Topic, Partition: tp.Partition, First: n})
	}
	sort.Slice(st.Next, func(i, j int) bool {
		a, b := st.Next[i], st.Next[j]
		return a.Topic < b.Topic || a.Topic == b.Topic && a.Partition < b.Partition
	})
	data, err := json.Marshal(&st)
	if err != nil {
		return fmt.Errorf("parquet: encode offsets: %w", err)
	}
	return writeAtomic(filepath.Join(w.dir, manifestDir, offsetsFile), data)
}

// Abort drops the pending segment: staged files are deleted and Resume is
// unchanged. Use it after a failed Write before writing again.
func (w *Writer) Abort() error {
	var errs []error
	for _, pf := range w.open {
		pf.fw.Close()
		pf.f.Close()
		errs = append(errs, removeIfExists(filepath.Join(w.dir, pf.staged)))
	}
	for _, f := range w.finished {
		errs = append(errs, removeIfExists(filepath.Join(w.dir, f.Staged)))
	}
	w.resetSegment()
	return errors.Join(errs...)
}

// Close commits the pending segment and releases the directory.
func (w *Writer) Close() error {
	if w.closed {
		return nil
	}
	err := w.Commit()
	if err != nil {
		err = errors.Join(err, w.Abort())
	}
	w.closed = true
	return errors.Join(err, w.lock.Close())
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

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
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
