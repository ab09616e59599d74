package normalize

import (
	"math/bits"
	"sync"

	"github.com/apache/arrow/go/v17/arrow/memory"
)

// Recycler is an Arrow allocator that keeps the buffers released to it,
// up to a bound, and hands them out again. A stage builds and lets go of
// about the same batches every transaction; from Go's allocator each is a
// fresh, zeroed span the collector must then find and free, and in a drain
// that was a fifth of the normalizer's CPU (bench/RESULTS.md). Buffers of
// 4 KiB and more are recycled, in sizes a little larger than asked
// (classOf); smaller ones, and any beyond the bound, go to the allocator
// underneath.
//
// A Recycler is safe for concurrent use: a batch may be released by any
// goroutine. Close gives what it keeps back to the allocator underneath;
// buffers released after Close go straight to it.
type Recycler struct {
	mem   memory.Allocator
	limit int

	mu     sync.Mutex
	free   [4 * bits.UintSize][][]byte // by size class (classOf)
	kept   int                         // bytes in free
	closed bool
}

// recycledMin is the smallest buffer recycled: below it Go's allocator
// is cheap.
const recycledMin = 4 << 10

// classOf returns the size class of a buffer of n bytes (n >= recycledMin)
// and the class's size: four classes per power of two (2^k times 1.25,
// 1.5, 1.75, 2), so a buffer is at most a quarter larger than asked.
func classOf(n int) (class, size int) {
	k := bits.Len(uint(n-1)) - 1 // 2^k < n <= 2^(k+1)
	step := 1 << (k - 2)
	q := (n - 1<<k + step - 1) / step // 1..4
	return 4*k + q, 1<<k + q*step
}

// NewRecycler returns a Recycler over mem that keeps at most limit bytes
// of released buffers.
func NewRecycler(mem memory.Allocator, limit int64) *Recycler {
	return &Recycler{mem: mem, limit: int(limit)}
}

// recycled says whether b was allocated as a recycled buffer: its
// capacity is the size of its class.
func recycled(b []byte) bool {
	c := cap(b)
	if c < recycledMin {
		return false
	}
	_, size := classOf(c)
	return size == c
}

// Allocate returns a zeroed buffer of size bytes.
func (r *Recycler) Allocate(size int) []byte {
	if size < recycledMin {
		return r.mem.Allocate(size)
	}
	c, csize := classOf(size)
	r.mu.Lock()
	if l := r.free[c]; len(l) > 0 {
		b := l[len(l)-1]
		l[len(l)-1] = nil
		r.free[c] = l[:len(l)-1]
		r.kept -= cap(b)
		r.mu.Unlock()
		b = b[:size]
		clear(b) // Arrow's allocators hand out zeroed memory
		return b
	}
	r.mu.Unlock()
	return r.mem.Allocate(csize)[:size:csize]
}

// Reallocate resizes b, in place when its capacity allows.
func (r *Recycler) Reallocate(size int, b []byte) []byte {
	if recycled(b) && size <= cap(b) {
		old := len(b)
		b = b[:size]
		if size > old {
			clear(b[old:])
		}
		return b
	}
	if !recycled(b) && size < recycledMin {
		return r.mem.Reallocate(size, b)
	}
	nb := r.Allocate(size)
	copy(nb, b)
	r.Free(b)
	return nb
}

// Free keeps b for reuse, or gives it to the allocator underneath.
func (r *Recycler) Free(b []byte) {
	if !recycled(b) {
		r.mem.Free(b)
		return
	}
	b = b[:cap(b)]
	r.mu.Lock()
	if r.closed || r.kept+len(b) > r.limit {
		r.mu.Unlock()
		r.mem.Free(b)
		return
	}
	c, _ := classOf(len(b))
	r.free[c] = append(r.free[c], b)
	r.kept += len(b)
	r.mu.Unlock()
}

// Close gives the kept buffers back to the allocator underneath.
func (r *Recycler) Close() {
	r.mu.Lock()
	free := r.free
	r.free = [4 * bits.UintSize][][]byte{}
	r.kept = 0
	r.closed = true
	r.mu.Unlock()
	for _, l := range free {
		for _, b := range l {
			r.mem.Free(b)
		}
	}
}
