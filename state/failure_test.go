package state

import (
	"errors"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
)

// A disk that fills up under the store: the commit that cannot be written
// returns an error naming the cause (no panic reaches the caller), every
// later write refuses at once, and what was committed before is intact
// when the store is opened again on a healthy disk.
func TestDiskFullFailsWritesNotTheProcess(t *testing.T) {
	dir := t.TempDir()
	var full atomic.Bool
	fs := errorfs.Wrap(vfs.Default, errorfs.InjectorFunc(func(op errorfs.Op) error {
		if full.Load() && op.Kind.ReadOrWrite() == errorfs.OpIsWrite {
			return syscall.ENOSPC
		}
		return nil
	}))
	s, err := Open(dir, WithFS(fs), WithCacheSize(1<<20), WithMemTableSize(1<<20))
	if err != nil {
		t.Fatal(err)
	}
	key := func(i int) []byte { return AppendString(TenantKey(nil, 'i', "t1"), string(rune('a'+i))) }
	commit := func(i int, sync bool) error {
		b := s.NewBatch()
		if err := b.Set(key(i), []byte("v")); err != nil {
			t.Fatal(err)
		}
		if err := b.SetOffset("facts", 0, int64(i)); err != nil {
			t.Fatal(err)
		}
		return b.Commit(sync)
	}
	for i := range 3 {
		if err := commit(i, true); err != nil {
			t.Fatal(err)
		}
	}
	full.Store(true)
	var failed error
	for i := 3; i < 10 && failed == nil; i++ {
		failed = commit(i, i%2 == 0)
	}
	if failed == nil {
		t.Fatal("commits on a full disk did not fail")
	}
	if !errors.Is(failed, ErrFailed) || !strings.Contains(failed.Error(), "no space left on device") {
		t.Fatalf("error %q: want ErrFailed naming the cause", failed)
	}
	if err := commit(20, true); !errors.Is(err, ErrFailed) {
		t.Fatalf("a write after the failure: %v, want ErrFailed", err)
	}
	if err := s.Set(key(21), nil); !errors.Is(err, ErrFailed) {
		t.Fatalf("Set after the failure: %v, want ErrFailed", err)
	}
	if err := s.Close(); !errors.Is(err, ErrFailed) {
		t.Fatalf("Close after the failure: %v, want the failure", err)
	}

	// Space is freed and the process restarts: everything committed before
	// the disk filled is there, with its offset. (The failed store still
	// holds its directory lock in this process, as it would until a real
	// process exits: the restart opens a copy of the directory.)
	full.Store(false)
	s2, err := Open(copyDir(t, dir), WithCacheSize(1<<20), WithMemTableSize(1<<20))
	if err != nil {
		t.Fatalf("reopen after the failure: %v", err)
	}
	defer s2.Close()
	for i := range 3 {
		if _, ok, err := s2.Get(key(i)); err != nil || !ok {
			t.Fatalf("key %d committed before the failure is lost: %v", i, err)
		}
	}
	offs, err := s2.Offsets()
	if err != nil {
		t.Fatal(err)
	}
	if o := offs[TopicPartition{"facts", 0}]; o < 2 {
		t.Fatalf("offset after reopen %d, want at least 2", o)
	}
}

// copyDir copies a store's directory (not its lock) as a restarted process
// would find it.
func copyDir(t *testing.T, dir string) string {
	t.Helper()
	dst := t.TempDir()
	err := os.CopyFS(dst, os.DirFS(dir))
	if err != nil {
		t.Fatal(err)
	}
	return dst
}

// A manifest that cannot be written in background work (a flush installs
// its table in the manifest on Pebble's own goroutine) fails the store as a
// failed commit does: the process goes on, and the next write says why.
func TestBackgroundFailureFailsTheStoreNotTheProcess(t *testing.T) {
	dir := t.TempDir()
	var broken atomic.Bool
	fs := errorfs.Wrap(vfs.Default, errorfs.InjectorFunc(func(op errorfs.Op) error {
		if broken.Load() && op.Kind.ReadOrWrite() == errorfs.OpIsWrite && strings.Contains(op.Path, "MANIFEST") {
			return syscall.EIO
		}
		return nil
	}))
	s, err := Open(dir, WithFS(fs), WithCacheSize(1<<20), WithMemTableSize(1<<20))
	if err != nil {
		t.Fatal(err)
	}
	val := make([]byte, 4096)
	write := func(i int) error {
		b := s.NewBatch()
		if err := b.Set(AppendInt64(TenantKey(nil, 'i', "t1"), int64(i)), val); err != nil {
			t.Fatal(err)
		}
		return b.Commit(false)
	}
	for i := range 10 {
		if err := write(i); err != nil {
			t.Fatal(err)
		}
	}
	broken.Store(true)
	// Fill memtables until a background flush runs and fails to record its
	// table; writes go on succeeding meanwhile, then refuse with the cause.
	var failed error
	for i := 10; i < 20000 && failed == nil; i++ {
		failed = write(i)
		if failed == nil && s.Failed() != nil {
			failed = write(i + 1)
		}
	}
	if failed == nil {
		t.Fatal("the store never reported the background failure")
	}
	if !errors.Is(failed, ErrFailed) || !strings.Contains(failed.Error(), "input/output error") {
		t.Fatalf("error %q: want ErrFailed naming the cause", failed)
	}
	if err := s.Close(); !errors.Is(err, ErrFailed) {
		t.Fatalf("close after the failure: %v", err)
	}
}
