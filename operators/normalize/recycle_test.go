package normalize

import (
	"sync"
	"testing"

	"github.com/apache/arrow/go/v17/arrow/memory"
)

func TestClassOf(t *testing.T) {
	prev := 0
	for n := recycledMin; n < 1<<22; n += 61 {
		c, size := classOf(n)
		if size < n || size > n+n/4 {
			t.Fatalf("classOf(%d) = size %d: not in [n, 1.25n]", n, size)
		}
		if c < prev {
			t.Fatalf("classOf(%d) = class %d, below the class of a smaller size (%d)", n, c, prev)
		}
		prev = c
		if c2, s2 := classOf(size); c2 != c || s2 != size {
			t.Fatalf("classOf(%d) = %d, %d; of its size %d: %d, %d", n, c, size, size, c2, s2)
		}
	}
}

// TestRecycler: buffers released are handed out again, zeroed, up to the
// bound; Close and buffers released after it leave nothing held in the
// allocator underneath.
func TestRecycler(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	r := NewRecycler(mem, 64<<10)

	small := r.Allocate(100)
	a := r.Allocate(10_000)
	if len(a) != 10_000 || cap(a) < 10_000 {
		t.Fatalf("len %d cap %d", len(a), cap(a))
	}
	for i := range a {
		a[i] = 1
	}
	r.Free(a)
	b := r.Allocate(9_000)
	if &b[:1][0] != &a[:1][0] {
		t.Error("a released buffer of the same class was not handed out again")
	}
	for i, v := range b {
		if v != 0 {
			t.Fatalf("byte %d of a recycled buffer is %d, want 0", i, v)
		}
	}
	b = r.Reallocate(cap(b), b) // in place
	if &b[:1][0] != &a[:1][0] {
		t.Error("growing within the capacity moved the buffer")
	}
	c := r.Reallocate(50_000, b)
	if len(c) != 50_000 {
		t.Fatalf("reallocated to %d bytes", len(c))
	}
	// Over the bound: the rest goes to the allocator underneath.
	var big [][]byte
	for range 4 {
		big = append(big, r.Allocate(40_000))
	}
	for _, x := range big {
		r.Free(x)
	}
	if r.kept > r.limit {
		t.Errorf("keeps %d bytes, bound %d", r.kept, r.limit)
	}
	r.Free(small)

	// Concurrent releases (a batch is released by whichever goroutine saw
	// it last).
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 100 {
				r.Free(r.Allocate(5_000))
			}
		}()
	}
	wg.Wait()
	late := r.Allocate(20_000)
	r.Close()
	r.Free(c)
	r.Free(late) // after Close: straight to the allocator
}
