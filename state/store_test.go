package state

import (
	"bytes"
	"testing"
	"time"
)

func TestBatchOffsetsAndReadYourWrites(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, WithCacheSize(1<<20), WithMemTableSize(1<<20))
	if err != nil {
		t.Fatal(err)
	}
	b := s.NewBatch()
	k := AppendString(TenantKey(nil, 'a', "t1"), "alert-1")
	if err := b.Set(k, []byte("v1")); err != nil {
		t.Fatal(err)
	}
	if v, ok, err := b.Get(k); err != nil || !ok || string(v) != "v1" {
		t.Fatalf("batch does not read its own write: %q %v %v", v, ok, err)
	}
	if _, ok, _ := s.Get(k); ok {
		t.Fatal("uncommitted write visible in store")
	}
	if err := b.SetOffset("alerts", 3, 41); err != nil {
		t.Fatal(err)
	}
	if err := b.Commit(true); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	// Reopen: state and offset survive together.
	s, err = Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if v, ok, err := s.Get(k); err != nil || !ok || string(v) != "v1" {
		t.Fatalf("after reopen: %q %v %v", v, ok, err)
	}
	offs, err := s.Offsets()
	if err != nil {
		t.Fatal(err)
	}
	if got := offs[TopicPartition{"alerts", 3}]; got != 41 || len(offs) != 1 {
		t.Fatalf("offsets = %v", offs)
	}
}

func TestBucketExpiryIsOneRangeDelete(t *testing.T) {
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	const width = time.Hour
	base := time.Date(2024, 5, 1, 0, 0, 0, 0, time.UTC)
	for h := 0; h < 5; h++ {
		for _, tenant := range []string{"t1", "t2"} {
			k := BucketKey(nil, 'x', Bucket(base.Add(time.Duration(h)*width), width), tenant)
			k = AppendString(k, "entity")
			if err := s.Set(k, nil); err != nil {
				t.Fatal(err)
			}
		}
	}
	// Expire the first three hours for all tenants.
	start, end := BucketRange('x', Bucket(base, width), Bucket(base.Add(3*width), width))
	if err := s.DeleteRange(start, end); err != nil {
		t.Fatal(err)
	}
	it, err := s.NewIter([]byte{nsBucketd, 'x'})
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	var left []int64
	for ok := it.First(); ok; ok = it.Next() {
		b, tenant, rest, err := ParseBucketKey(it.Key())
		if err != nil || !bytes.Equal(rest, []byte("entity\x00")) || (tenant != "t1" && tenant != "t2") {
			t.Fatalf("bad key %q: %v", it.Key(), err)
		}
		left = append(left, b-Bucket(base, width))
	}
	if len(left) != 4 || left[0] != 3 || left[3] != 4 {
		t.Fatalf("buckets left = %v, want hours 3,3,4,4", left)
	}
}

func TestBucketOrderAcrossEpoch(t *testing.T) {
	a := BucketPrefix(nil, 'x', -1)
	b := BucketPrefix(nil, 'x', 0)
	if bytes.Compare(a, b) >= 0 {
		t.Fatal("negative bucket does not sort before zero")
	}
	if Bucket(time.Unix(-1, 0), time.Hour) != -1 {
		t.Fatal("bucket is not floored before the epoch")
	}
}

func TestClosedStoreReturnsErrors(t *testing.T) {
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	if _, _, err := s.Get([]byte("k")); err != ErrClosed {
		t.Fatalf("Get after close: %v", err)
	}
	if err := s.Set([]byte("k"), nil); err != ErrClosed {
		t.Fatalf("Set after close: %v", err)
	}
}

func TestOpenFailureIsWrapped(t *testing.T) {
	// A file where the directory should be: Open must fail with an error, not panic.
	f := t.TempDir() + "/file"
	if err := writeFile(f); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(f); err == nil {
		t.Fatal("Open on a regular file succeeded")
	}
}

func TestWatermarkKeys(t *testing.T) {
	for _, p := range []int32{0, 5, 1 << 20} {
		k := WatermarkKey(p)
		if got, ok := ParseWatermarkKey(k); !ok || got != p {
			t.Errorf("ParseWatermarkKey(WatermarkKey(%d)) = %d, %v", p, got, ok)
		}
		if !bytes.HasPrefix(k, WatermarkPrefix) {
			t.Errorf("watermark key %q lacks the prefix", k)
		}
		if _, ok := ParseOffsetKey(k); ok {
			t.Errorf("watermark key %q parses as an offset key", k)
		}
		if _, _, ok := KeyTenant(k); ok {
			t.Errorf("watermark key %q parses as a tenant key", k)
		}
	}
	for _, k := range [][]byte{OffsetKey("facts", 2), TenantKey(nil, 'a', "t1"), {0x02, 0, 0}} {
		if _, ok := ParseWatermarkKey(k); ok {
			t.Errorf("ParseWatermarkKey(%q) accepted", k)
		}
	}
}

// TestBatchCountsItsReadsAndWrites: what bench/correlate_test.go reports
// an alert costs in the store comes from these counts.
func TestBatchCountsItsReadsAndWrites(t *testing.T) {
	s, b := smallStore(t)
	pfx := TenantKey(nil, 'a', "t1")
	for _, id := range []string{"a1", "a2"} {
		if err := b.Set(AppendString(bytes.Clone(pfx), id), []byte("v")); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Delete(AppendString(bytes.Clone(pfx), "a3")); err != nil {
		t.Fatal(err)
	}
	_, _, _ = b.Get(AppendString(bytes.Clone(pfx), "a1"))
	it, err := b.NewIter(pfx)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for ok := it.First(); ok; ok = it.Next() { // Next is not a positioning
		n++
	}
	it.SeekGE(AppendString(bytes.Clone(pfx), "a2"))
	it.Close()
	if want := (Reads{Gets: 1, Iters: 1, Seeks: 2}); b.Reads() != want || n != 2 {
		t.Fatalf("reads %+v over %d keys, want %+v over 2", b.Reads(), n, want)
	}
	if b.Writes() != 3 {
		t.Fatalf("writes %d, want 3 (two sets, one deletion)", b.Writes())
	}
	// A store's own iterator is not a batch's: nothing to count into.
	sit, err := s.NewIter(pfx)
	if err != nil {
		t.Fatal(err)
	}
	sit.First()
	sit.Close()
	if b.Reads().Seeks != 2 {
		t.Fatalf("a store iterator counted into the batch: %+v", b.Reads())
	}
}
