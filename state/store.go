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

	"github.com/cockroachdb/pebble/v2"
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
}

// Option configures Open.
type Option func(*config)

// WithCacheSize sets the block cache size in bytes (default DefaultCacheSize).
func WithCacheSize(n int64) Option { return func(c *config) { c.cacheSize = n } }

// WithMemTableSize sets the memtable size in bytes (default DefaultMemTableSize).
func WithMemTableSize(n uint64) Option { return func(c *config) { c.memTableSize = n } }

// WithLogger routes Pebble's own log lines (compactions, stalls) to l. By
// default they are dropped: the operator reports through metrics instead.
func WithLogger(l pebble.Logger) Option { return func(c *config) { c.logger = l } }

// WithReadOnly opens the store read-only (inspection tools, tests).
func WithReadOnly() Option { return func(c *config) { c.readOnly = true } }

// Store is a Pebble database with stitch's key conventions. It is safe for
// concurrent use; batches are not.
type Store struct {
	db  *pebble.DB
	dir string
}

type quietLogger struct{}

func (quietLogger) Infof(string, ...any)  {}
func (quietLogger) Errorf(string, ...any) {}
func (quietLogger) Fatalf(format string, args ...any) {
	// Pebble calls Fatalf on corruption; it must not continue, so neither do we.
	panic(fmt.Sprintf(format, args...))
}

// Open opens (creating if needed) the store in dir.
func Open(dir string, opts ...Option) (*Store, error) {
	cfg := config{cacheSize: DefaultCacheSize, memTableSize: DefaultMemTableSize, logger: quietLogger{}}
	for _, o := range opts {
		o(&cfg)
	}
	cache := pebble.NewCache(cfg.cacheSize)
	defer cache.Unref() // Open takes its own reference.
	po := &pebble.Options{
		Cache:        cache,
		MemTableSize: cfg.memTableSize,
		// Ask for the newest stable on-disk format explicitly: the default is
		// the oldest supported one, which lacks columnar blocks and cheaper
		// range deletions that bucket expiry relies on.
		FormatMajorVersion: pebble.FormatNewest,
		Logger:             cfg.logger,
		ReadOnly:           cfg.readOnly,
	}
	db, err := pebble.Open(dir, po)
	if err != nil {
		return nil, fmt.Errorf("state: open %s: %w", dir, err)
	}
	return &Store{db: db, dir: dir}, nil
}

// Dir is the directory the store lives in.
func (s *Store) Dir() string { return s.dir }

// Close flushes nothing extra (committed batches are in the WAL) and releases
// the database.
func (s *Store) Close() error {
	if s.db == nil {
		return ErrClosed
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
	if s.db == nil {
		return ErrClosed
	}
	if err := s.db.Set(key, val, pebble.Sync); err != nil {
		return fmt.Errorf("state: set %q: %w", key, err)
	}
	return nil
}

// Delete removes key durably.
func (s *Store) Delete(key []byte) error {
	if s.db == nil {
		return ErrClosed
	}
	if err := s.db.Delete(key, pebble.Sync); err != nil {
		return fmt.Errorf("state: delete %q: %w", key, err)
	}
	return nil
}

// DeleteRange removes every key in [start, end) durably.
func (s *Store) DeleteRange(start, end []byte) error {
	if s.db == nil {
		return ErrClosed
	}
	if err := s.db.DeleteRange(start, end, pebble.Sync); err != nil {
		return fmt.Errorf("state: delete range %q..%q: %w", start, end, err)
	}
	return nil
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
	// CacheBytes is memory held by the block cache.
	CacheBytes int64
	// Compactions is the number of compactions since Open.
	Compactions int64
	// ReadAmp is the read amplification (sublevels + L0 files); high values
	// mean compactions are falling behind.
	ReadAmp int
}

// Metrics reports the store's size.
func (s *Store) Metrics() Metrics {
	if s.db == nil {
		return Metrics{}
	}
	m := s.db.Metrics()
	return Metrics{
		DiskBytes:     m.DiskSpaceUsage(),
		LiveBytes:     m.Table.Local.LiveSize,
		MemTableBytes: m.MemTable.Size,
		CacheBytes:    m.BlockCache.Size,
		Compactions:   m.Compact.Count,
		ReadAmp:       m.ReadAmp(),
	}
}

// EstimateDiskUsage estimates the on-disk bytes of keys in [start, end).
func (s *Store) EstimateDiskUsage(start, end []byte) (uint64, error) {
	if s.db == nil {
		return 0, ErrClosed
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
