// Package state is stitch's small durable key-value store over Pebble.
//
// It holds operator state (correlation indexes, incidents, identity links,
// prevalence counters) and the Kafka offsets that state reflects, committed in
// one atomic batch so the exactly-once layer can tell how far the store got.
// Keys follow the layout in LAYOUT.md (see keys.go): tenant-prefixed, and
// time-bucketed where state expires, so a whole bucket goes with one
// DeleteRange instead of a scan.
package state

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/bloom"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// Defaults, sized for one operator process sharing a host with others.
const (
	// DefaultCacheSize is the block cache: hot index and incident blocks.
	DefaultCacheSize = 64 << 20
	// DefaultMemTableSize bounds the write buffer before a flush; two of them
	// may be in memory at once.
	DefaultMemTableSize = 16 << 20
)

// ErrClosed is returned by operations on a closed Store.
var ErrClosed = errors.New("state: store closed")

type config struct {
	cacheSize    int64
	memTableSize uint64
	logger       pebble.Logger
	readOnly     bool
	fs           vfs.FS
	shared       *SharedCache
}

// Option configures Open.
type Option func(*config)

// WithCacheSize sets the block cache size in bytes (default DefaultCacheSize)
// of a cache of the store's own; see WithSharedCache.
func WithCacheSize(n int64) Option { return func(c *config) { c.cacheSize = n } }

// WithSharedCache makes the store use c, shared with the other stores opened
// with it, instead of a cache of its own (WithCacheSize is then ignored).
func WithSharedCache(c *SharedCache) Option { return func(cfg *config) { cfg.shared = c } }

// WithMemTableSize sets the memtable size in bytes (default DefaultMemTableSize).
func WithMemTableSize(n uint64) Option { return func(c *config) { c.memTableSize = n } }

// WithLogger routes Pebble's own log lines (compactions, stalls) to l. By
// default they are dropped: the operator reports through metrics instead.
func WithLogger(l pebble.Logger) Option { return func(c *config) { c.logger = l } }

// WithFS puts the store on fs instead of the operating system's file system
// (tests inject disk failures with Pebble's errorfs).
func WithFS(fs vfs.FS) Option { return func(c *config) { c.fs = fs } }

// WithReadOnly opens the store read-only (inspection tools, tests).
func WithReadOnly() Option { return func(c *config) { c.readOnly = true } }

// Store is a Pebble database with stitch's key conventions. It is safe for
// concurrent use; batches are not.
type Store struct {
	db     *pebble.DB
	dir    string
	failed atomic.Pointer[failure]
	dead   chan struct{} // closed when the store failed
	once   sync.Once
	// release gives back the shared cache (WithSharedCache) on Close.
	release func()
}

// fail records the store's failure (the first one wins) and says so to
// commits waiting inside Pebble.
func (s *Store) fail(f failure) {
	s.failed.CompareAndSwap(nil, &f)
	s.once.Do(func() { close(s.dead) })
}

type quietLogger struct{}

func (quietLogger) Infof(string, ...any)  {}
func (quietLogger) Errorf(string, ...any) {}
func (quietLogger) Fatalf(string, ...any) {}

// ErrFailed marks errors of a store that Pebble declared unusable (a write
// to its log failed: a full or failing disk). Nothing more is written; what
// was committed before is intact on disk, and a restart (restoring what is
// missing from the changelogs) is the way on.
var ErrFailed = errors.New("state: store failed")

type failure struct{ cause error }

func (f failure) Error() string   { return "state: store failed: " + f.cause.Error() }
func (f failure) Unwrap() []error { return []error{ErrFailed, f.cause} }

// failingLogger is Pebble's logger. Pebble calls Fatalf when it cannot go on
// (a commit whose log write failed, a WAL it cannot rotate, a manifest it
// cannot write, corruption) and expects it not to return: it records the
// failure on the store and stops the calling goroutine for good, whether it
// is a write of the store's (which then returns the failure: Store.write)
// or Pebble's own background work (a flush or compaction), so a full disk
// stops the pipeline with a message instead of crashing it. The store is
// failed from then on, every write refuses with the cause, and the process
// stops its stage and exits; nothing more reaches the disk, and what was
// committed before is intact (restarting restores what is missing from the
// changelogs).
type failingLogger struct {
	pebble.Logger
	s *Store
}

func (l failingLogger) Fatalf(format string, args ...any) {
	f := failure{fmt.Errorf(format, args...)}
	l.s.fail(f)
	l.Logger.Errorf(format, args...)
	// Pebble expects Fatalf not to return, and panicking out of it is not
	// safe either: some callers hold a mutex they unlock on the way out
	// only when it is held again (a WAL rotation), which a panic turns into
	// a fatal runtime error. So the goroutine stops here for good. Nothing
	// the store does after a failure waits on it: writes run on goroutines
	// of their own and return the failure (Store.write), and Metrics,
	// EstimateDiskUsage and Close check Failed first.
	select {}
}

// Open opens (creating if needed) the store in dir.
func Open(dir string, opts ...Option) (*Store, error) {
	cfg := config{cacheSize: DefaultCacheSize, memTableSize: DefaultMemTableSize, logger: quietLogger{}}
	for _, o := range opts {
		o(&cfg)
	}
	s := &Store{dir: dir, dead: make(chan struct{}), release: func() {}}
	var cache *pebble.Cache
	if cfg.shared != nil {
		cache, s.release = cfg.shared.acquire()
	} else {
		cache = pebble.NewCache(cfg.cacheSize)
		defer cache.Unref() // Open takes its own reference.
	}
	po := &pebble.Options{
		Cache:        cache,
		MemTableSize: cfg.memTableSize,
		// Ask for the newest stable on-disk format explicitly: the default is
		// the oldest supported one, which lacks columnar blocks and cheaper
		// range deletions that bucket expiry relies on.
		FormatMajorVersion: pebble.FormatNewest,
		Logger:             failingLogger{Logger: cfg.logger, s: s},
		ReadOnly:           cfg.readOnly,
	}
	tune(po)
	if cfg.fs != nil {
		po.FS = cfg.fs
	}
	db, err := pebble.Open(dir, po)
	if err != nil {
		s.release()
		return nil, fmt.Errorf("state: open %s: %w", dir, err)
	}
	s.db = db
	return s, nil
}

// tune sets the LSM options for stitch's state, whose keys are mostly hashes
// (incident ids, file hashes) spread over the whole key range, so every
// memtable flush overlaps every file below it:
//
//   - A Bloom filter (10 bits a key, ~1% false positives) in every table,
//     L0 included: a point Get that misses (a new (file, device) pair of
//     respond, a partner incident not in the upper levels) probes a filter
//     instead of reading a data block of each L0 sublevel and level. The
//     filters are cached in the shared block cache, within its budget.
//     (Pebble's Get does not consult the last level's filters; L6 has them
//     as measured, dropping them there is untried.)
//   - L0 is compacted at 6 sublevels (Pebble's default is 2) and writes stop
//     at 24 (default 12): each L0 → Lbase compaction rewrites the whole
//     overlapping base level whatever it brings, so letting three times as
//     many flushes ride on one rewrite cuts compaction CPU by about half
//     (bench/RESULTS.md, "Pebble settings"). The price is more L0 sublevels
//     for iterators' seeks; Gets skip them by their filters.
//
// Options apply to tables written from now on: a store written with the old
// settings opens as is, and its tables get filters as compactions rewrite
// them (TestOpensStoreWrittenWithoutFilters).
func tune(po *pebble.Options) {
	for i := range po.Levels {
		po.Levels[i].FilterPolicy = bloom.FilterPolicy(10)
		po.Levels[i].FilterType = pebble.TableFilter
	}
	po.L0CompactionThreshold = 12
	po.L0StopWritesThreshold = 24
}

// Failed is the failure that made the store unusable, or nil.
func (s *Store) Failed() error {
	if f := s.failed.Load(); f != nil {
		return *f
	}
	return nil
}

// guard turns Pebble's panics during a write (it panics with the error when
// a commit cannot be written to its log) into the store's failure.
func (s *Store) guard(err *error) {
	r := recover()
	if r == nil {
		return
	}
	switch v := r.(type) {
	case error:
		// Pebble panics with the error itself when a commit cannot be
		// written to its log: the store is as failed as after a Fatalf.
		s.fail(failure{v})
		*err = *s.failed.Load()
	default:
		panic(r)
	}
}

func (s *Store) writable() error {
	if s.db == nil {
		return ErrClosed
	}
	return s.Failed()
}

// Dir is the directory the store lives in.
func (s *Store) Dir() string { return s.dir }

// Close flushes nothing extra (committed batches are in the WAL) and releases
// the database.
func (s *Store) Close() error {
	if s.db == nil {
		return ErrClosed
	}
	defer s.release()
	if f := s.Failed(); f != nil {
		// Pebble cannot close after a failed commit (it would wait on the
		// lock the commit left held). The process is expected to exit: what
		// was committed before the failure is on disk, and the directory
		// lock goes with the process.
		s.db = nil
		return f
	}
	err := s.db.Close()
	s.db = nil
	if err != nil {
		return fmt.Errorf("state: close %s: %w", s.dir, err)
	}
	return nil
}

// Get returns a copy of the value of key; ok is false when the key is absent.
func (s *Store) Get(key []byte) (val []byte, ok bool, err error) {
	if s.db == nil {
		return nil, false, ErrClosed
	}
	return get(s.db, key)
}

type getter interface {
	Get([]byte) ([]byte, io.Closer, error)
}

func get(g getter, key []byte) ([]byte, bool, error) {
	v, closer, err := g.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("state: get %q: %w", key, err)
	}
	out := bytes.Clone(v)
	if out == nil {
		out = []byte{}
	}
	_ = closer.Close()
	return out, true, nil
}

// Set writes key=val durably (synced).
func (s *Store) Set(key, val []byte) error {
	return s.write(func() error {
		if err := s.db.Set(key, val, pebble.Sync); err != nil {
			return fmt.Errorf("state: set %q: %w", key, err)
		}
		return nil
	})
}

// Delete removes key durably.
func (s *Store) Delete(key []byte) error {
	return s.write(func() error {
		if err := s.db.Delete(key, pebble.Sync); err != nil {
			return fmt.Errorf("state: delete %q: %w", key, err)
		}
		return nil
	})
}

// DeleteRange removes every key in [start, end) durably.
func (s *Store) DeleteRange(start, end []byte) error {
	return s.write(func() error {
		if err := s.db.DeleteRange(start, end, pebble.Sync); err != nil {
			return fmt.Errorf("state: delete range %q..%q: %w", start, end, err)
		}
		return nil
	})
}

// write runs one write into Pebble on a goroutine of its own and returns
// its result, or the store's failure if the store fails first: Pebble may
// stop that goroutine for good (failingLogger) or leave it waiting behind
// work that will never finish.
func (s *Store) write(fn func() error) error {
	if err := s.writable(); err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() {
		var err error
		defer func() { done <- err }()
		defer s.guard(&err)
		err = fn()
	}()
	select {
	case err := <-done:
		return err
	case <-s.dead:
		select {
		case err := <-done:
			return err
		default:
			return s.Failed()
		}
	}
}

// NewIter iterates the keys starting with prefix in order.
func (s *Store) NewIter(prefix []byte) (*Iter, error) {
	if s.db == nil {
		return nil, ErrClosed
	}
	return newIter(s.db, prefix)
}

// NewBatch starts an atomic batch. It reads its own writes (Get and NewIter
// see uncommitted changes), which operators need to apply many facts at once.
func (s *Store) NewBatch() *Batch {
	return &Batch{b: s.db.NewIndexedBatch(), s: s}
}

// Metrics is a summary of the store's size and health.
type Metrics struct {
	// DiskBytes is the space the store uses on disk (tables and WAL).
	DiskBytes uint64
	// LiveBytes is the size of live tables only.
	LiveBytes uint64
	// MemTableBytes is memory held by memtables.
	MemTableBytes uint64
	// CacheBytes is memory held by the block cache: of every store sharing
	// it, with WithSharedCache.
	CacheBytes int64
	// Compactions is the number of compactions since Open.
	Compactions int64
	// CacheHits and CacheMisses count block cache lookups since Open (of
	// every store sharing the cache, with WithSharedCache): a miss is a
	// block read from a file and decompressed.
	CacheHits, CacheMisses int64
	// ReadAmp is the read amplification (sublevels + L0 files); high values
	// mean compactions are falling behind.
	ReadAmp int
}

// Metrics reports the store's size.
func (s *Store) Metrics() Metrics {
	if s.db == nil {
		return Metrics{}
	}
	if s.Failed() != nil {
		return Metrics{}
	}
	m := s.db.Metrics()
	return Metrics{
		DiskBytes:     m.DiskSpaceUsage(),
		LiveBytes:     m.Table.Local.LiveSize,
		MemTableBytes: m.MemTable.Size,
		CacheBytes:    m.BlockCache.Size,
		Compactions:   m.Compact.Count,
		CacheHits:     m.BlockCache.Hits,
		CacheMisses:   m.BlockCache.Misses,
		ReadAmp:       m.ReadAmp(),
	}
}

// EstimateDiskUsage estimates the on-disk bytes of keys in [start, end).
func (s *Store) EstimateDiskUsage(start, end []byte) (uint64, error) {
	if s.db == nil {
		return 0, ErrClosed
	}
	if err := s.writable(); err != nil {
		return 0, err
	}
	n, err := s.db.EstimateDiskUsage(start, end)
	if err != nil {
		return 0, fmt.Errorf("state: estimate disk usage: %w", err)
	}
	return n, nil
}

// Flush writes memtables to tables (tests and size measurements).
func (s *Store) Flush() error {
	if s.db == nil {
		return ErrClosed
	}
	if err := s.db.Flush(); err != nil {
		return fmt.Errorf("state: flush: %w", err)
	}
	return nil
}

// Compact compacts everything, dropping deleted ranges (size measurements).
func (s *Store) Compact() error {
	if s.db == nil {
		return ErrClosed
	}
	if err := s.db.Compact(context.Background(), []byte{0}, []byte{0xff, 0xff, 0xff, 0xff}, true); err != nil {
		return fmt.Errorf("state: compact: %w", err)
	}
	return nil
}
