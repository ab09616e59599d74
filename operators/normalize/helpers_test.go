package normalize

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/apache/arrow/go/v17/arrow/memory"
)

// sharedData returns the path of the public reference data (../shared/data
// from the module root), skipping the test when it is not there.
func sharedData(t testing.TB, rel string) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			break
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Skip("no go.mod above the package: cannot locate ../shared/data")
		}
		dir = parent
	}
	p := filepath.Join(dir, "..", "shared", "data", rel)
	if _, err := os.Stat(p); err != nil {
		t.Skipf("reference data %s not available: %v", p, err)
	}
	return p
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
