package pipeline

import (
	"fmt"
	"testing"

	"github.com/stitch-xdr/stitch/state"
)

// state.cache_bytes bounds the block cache of the process, not of each
// store: two stores of one pipeline read through one cache, so what one
// store's reads bring into it is the other's cache too, and the cache
// stays within the budget whatever the number of stores.
func TestStoresOfAPipelineShareOneCache(t *testing.T) {
	cfg := Default()
	cfg.State.Dir = t.TempDir()
	cfg.State.CacheBytes = 4 << 20
	cfg.State.MemtableBytes = 1 << 20
	p, err := New(cfg, WithBrokers([]string{"127.0.0.1:1"}), WithInstance("cache-test"))
	if err != nil {
		t.Fatal(err)
	}
	sc := &StageContext{Name: "test", Config: cfg, Metrics: p.metrics, p: p, stores: &stateful{},
		info: StageInfo{Stores: []StoreInfo{{Name: "one"}, {Name: "two"}}}}
	defer func() {
		for i := len(sc.closers) - 1; i >= 0; i-- {
			sc.closers[i]()
		}
	}()
	one, err := sc.OpenStore("one")
	if err != nil {
		t.Fatal(err)
	}
	two, err := sc.OpenStore("two")
	if err != nil {
		t.Fatal(err)
	}
	// 6 MiB in each store, on disk, then read back: more than the budget.
	val := make([]byte, 1024)
	for _, st := range []*state.Store{one, two} {
		b := st.NewBatch()
		for i := range 6 << 10 {
			val[0], val[1] = byte(i), byte(i>>8)
			if err := b.Set(fmt.Appendf(nil, "k%06d", i), val); err != nil {
				t.Fatal(err)
			}
		}
		if err := b.Commit(false); err != nil {
			t.Fatal(err)
		}
		if err := st.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 6 << 10 {
		if _, ok, err := one.Get(fmt.Appendf(nil, "k%06d", i)); !ok || err != nil {
			t.Fatalf("store one, key %d: %v %v", i, ok, err)
		}
	}
	m1, m2 := one.Metrics(), two.Metrics()
	if m1.CacheBytes == 0 || m1.CacheBytes != m2.CacheBytes {
		t.Fatalf("after reads of store one only, its cache holds %d bytes and store two's %d: the stores have caches of their own", m1.CacheBytes, m2.CacheBytes)
	}
	for i := range 6 << 10 {
		if _, ok, err := two.Get(fmt.Appendf(nil, "k%06d", i)); !ok || err != nil {
			t.Fatalf("store two, key %d: %v %v", i, ok, err)
		}
	}
	if m := two.Metrics(); m.CacheBytes > cfg.State.CacheBytes {
		t.Fatalf("after reading 12 MiB of two stores the cache holds %d bytes, over state.cache_bytes %d", m.CacheBytes, cfg.State.CacheBytes)
	}
}
