package bench

import (
	"fmt"
	"syscall"

	"github.com/stitch-xdr/stitch/internal/simulator"
)

// renderedLoad is BenchmarkLatency's telemetry rendered before the clock
// starts, so that the machine under test spends its CPU on the pipeline and
// the broker, not on writing the load's JSON: the simulator took 11-12% of
// the process's CPU at 20,000 records/s (bench/RESULTS.md), a share a
// deployment's producers never take from stitch's cores.
//
// The records live in one anonymous mapping outside the Go heap (its pages
// are touched only as records are written), indexed by a pointer-free
// slice of offsets, so the collector neither scans them nor counts them
// towards the heap's goal: the pipeline's garbage collection runs as it
// would beside a remote producer. Once the rendered records run out (a
// start-up slower than the allowance) next renders live from the same
// simulator, and counts how many it did so.
type renderedLoad struct {
	sim   *simulator.Simulator
	arena []byte   // mmap'd; nil when nothing was rendered ahead
	offs  []uint32 // record i: value at offs[2i], key at offs[2i+1], up to offs[2i+2]
	next  int
	live  int // records rendered live after the rendered ones ran out
}

// maxRecordBytes bounds what one rendered record (key and value) may take
// of the mapping's address space; the pages it does not use are never
// touched.
const maxRecordBytes = 4096

// renderLoad renders the simulator's next n records (none when n is 0).
func renderLoad(sim *simulator.Simulator, n int) (*renderedLoad, error) {
	l := &renderedLoad{sim: sim}
	if n <= 0 {
		return l, nil
	}
	size := n * maxRecordBytes
	if size >= 1<<32 {
		return nil, fmt.Errorf("rendered load: %d records pass the 4 GiB the offsets can index", n)
	}
	arena, err := syscall.Mmap(-1, 0, size, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE|syscall.MAP_NORESERVE)
	if err != nil {
		return nil, fmt.Errorf("rendered load: map %d bytes: %w", size, err)
	}
	l.arena = arena
	l.offs = make([]uint32, 0, 2*n+1)
	off := 0
	for range n {
		// Next appends the value to what it is given: in place, here.
		k, v := sim.Next(arena[off:off:len(arena)])
		if len(v) > 0 && &v[0] != &arena[off] {
			l.close()
			return nil, fmt.Errorf("rendered load: a record of %d bytes outgrew its place", len(v))
		}
		vEnd := off + len(v)
		if vEnd+len(k) > len(arena) {
			l.close()
			return nil, fmt.Errorf("rendered load: the records outgrew the %d bytes mapped", size)
		}
		copy(arena[vEnd:], k) // the key after its value
		l.offs = append(l.offs, uint32(off), uint32(vEnd))
		off = vEnd + len(k)
	}
	l.offs = append(l.offs, uint32(off))
	return l, nil
}

// record returns the next record: a rendered one while they last (its
// bytes valid until close), then one the simulator renders now.
func (l *renderedLoad) record() (key, value []byte) {
	if i := l.next; 2*i+2 < len(l.offs) {
		l.next++
		v, k, end := l.offs[2*i], l.offs[2*i+1], l.offs[2*i+2]
		return l.arena[k:end:end], l.arena[v:k:k]
	}
	l.live++
	return l.sim.Next(nil)
}

// close unmaps the rendered records: call it once nothing holds them (the
// producer closed).
func (l *renderedLoad) close() {
	if l.arena != nil {
		_ = syscall.Munmap(l.arena)
		l.arena = nil
	}
}
