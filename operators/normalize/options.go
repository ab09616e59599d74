package normalize

import (
	"time"

	"github.com/apache/arrow/go/v17/arrow/memory"
)

// DefaultTenant is the tenant of export rows, which carry none.
const DefaultTenant = "00000000-0000-0000-0000-000000000000"

type config struct {
	mem        memory.Allocator
	batchRows  int
	batchBytes int64
	batchAge   time.Duration
	maxRecord  int
	maxDepth   int
	dlLimit    int
	importMode bool
	importTbl  string
	tenant     string
	clock      func() time.Time
	noFast     bool // tests: every record takes the fastjson path
}

func defaults() config {
	return config{
		mem:        memory.DefaultAllocator,
		batchRows:  8192,
		batchBytes: 4 << 20,
		batchAge:   time.Second,
		maxRecord:  1 << 20,
		maxDepth:   32,
		dlLimit:    16 << 10,
		tenant:     DefaultTenant,
		clock:      time.Now,
	}
}

// Option configures a Normalizer.
type Option func(*config)

// WithAllocator sets the Arrow allocator of the builders (tests pass a
// memory.CheckedAllocator to catch leaks).
func WithAllocator(mem memory.Allocator) Option {
	return func(c *config) {
		if mem != nil {
			c.mem = mem
		}
	}
}

// WithBatchRows emits a batch once it holds n rows (default 8192).
func WithBatchRows(n int) Option {
	return func(c *config) {
		if n > 0 {
			c.batchRows = n
		}
	}
}

// WithBatchBytes emits a batch once the input that produced it reaches n
// bytes (default 4 MiB).
func WithBatchBytes(n int64) Option {
	return func(c *config) {
		if n > 0 {
			c.batchBytes = n
		}
	}
}

// WithBatchAge makes FlushDue emit a batch whose oldest row arrived more than
// d ago (default 1s), so a quiet stream still reaches the writers.
func WithBatchAge(d time.Duration) Option {
	return func(c *config) {
		if d > 0 {
			c.batchAge = d
		}
	}
}

// WithMaxRecordBytes dead-letters records larger than n bytes as too_large
// (default 1 MiB).
func WithMaxRecordBytes(n int) Option {
	return func(c *config) {
		if n > 0 {
			c.maxRecord = n
		}
	}
}

// WithMaxDepth dead-letters records nested deeper than n as too_deep
// (default 32). It is capped below the JSON parser's own limit so that ours,
// with its clear reason, always fires first.
func WithMaxDepth(n int) Option {
	return func(c *config) {
		if n > 0 {
			c.maxDepth = min(n, maxParserDepth)
		}
	}
}

// WithDeadLetterValueLimit truncates the original value kept in a dead
// letter to n bytes (default 16 KiB); Size and SHA256 still describe the whole.
func WithDeadLetterValueLimit(n int) Option {
	return func(c *config) {
		if n >= 0 {
			c.dlLimit = n
		}
	}
}

// WithImport switches to import mode: each Input is one advanced-hunting
// export row (no envelope, no category, no tenant). The table is the given
// one, or inferred per row from its columns when table is "".
func WithImport(table string) Option {
	return func(c *config) {
		c.importMode = true
		c.importTbl = table
	}
}

// WithDefaultTenant sets the tenant of export rows (default DefaultTenant).
func WithDefaultTenant(t string) Option {
	return func(c *config) {
		if t != "" {
			c.tenant = t
		}
	}
}

// WithClock sets the clock used for batch age and dead-letter times.
func WithClock(now func() time.Time) Option {
	return func(c *config) {
		if now != nil {
			c.clock = now
		}
	}
}
