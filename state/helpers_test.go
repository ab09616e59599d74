package state

import (
	"os"
	"testing"
)

func writeFile(p string) error { return os.WriteFile(p, []byte("x"), 0o600) }

// smallStore is a store with a small cache and memtable, and a batch of
// it, closed when the test ends.
func smallStore(t *testing.T) (*Store, *Batch) {
	t.Helper()
	s, err := Open(t.TempDir(), WithCacheSize(1<<20), WithMemTableSize(1<<20))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	b := s.NewBatch()
	t.Cleanup(func() { b.Close() })
	return s, b
}
