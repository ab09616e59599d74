package normalize

import (
	"testing"

	"github.com/apache/arrow/go/v17/arrow/memory"

	"github.com/stitch-xdr/stitch/internal/shareddata"
)

// sharedData returns the path of the public reference data (../shared/data
// from the module root), skipping the test when it is not there.
func sharedData(t testing.TB, rel string) string {
	t.Helper()
	return shareddata.Path(t, rel)
}

// collector gathers what a Normalizer emits and releases it at the end.
type collector struct {
	batches []Batch
	dead    []DeadLetter
}

func (c *collector) emit(b Batch)       { c.batches = append(c.batches, b) }
func (c *collector) deadL(d DeadLetter) { c.dead = append(c.dead, d) }
func (c *collector) release() {
	for _, b := range c.batches {
		b.Release()
	}
	c.batches = nil
}

func (c *collector) rows() int64 {
	var n int64
	for _, b := range c.batches {
		n += b.Record.NumRows()
	}
	return n
}

// newChecked makes a Normalizer on a checked allocator and registers the
// leak check: every test that builds records ends with zero bytes held.
func newChecked(t *testing.T, opts ...Option) (*Normalizer, *collector) {
	t.Helper()
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	n := New(append([]Option{WithAllocator(mem)}, opts...)...)
	c := &collector{}
	t.Cleanup(func() {
		c.release()
		n.Close()
		mem.AssertSize(t, 0)
	})
	return n, c
}

func addString(n *Normalizer, c *collector, s string) {
	n.Add(Input{Topic: "m365d", Partition: 1, Offset: 42, Value: []byte(s)}, c.emit, c.deadL)
}
