package pipeline

import (
	"sync/atomic"

	"github.com/apache/arrow/go/v17/arrow/memory"
)

// countingAllocator tracks the bytes Arrow holds, for the
// stitch_arrow_allocated_bytes gauge and the bounded-memory checks, at the
// cost of one atomic add per buffer (not per row).
type countingAllocator struct {
	mem   memory.Allocator
	bytes atomic.Int64
}

func newCountingAllocator(mem memory.Allocator) *countingAllocator {
	return &countingAllocator{mem: mem}
}

func (a *countingAllocator) Allocate(size int) []byte {
	a.bytes.Add(int64(size))
	return a.mem.Allocate(size)
}

func (a *countingAllocator) Reallocate(size int, b []byte) []byte {
	a.bytes.Add(int64(size - len(b)))
	return a.mem.Reallocate(size, b)
}

func (a *countingAllocator) Free(b []byte) {
	a.bytes.Add(-int64(len(b)))
	a.mem.Free(b)
}

// Allocated is the number of bytes currently held.
func (a *countingAllocator) Allocated() int64 { return a.bytes.Load() }
