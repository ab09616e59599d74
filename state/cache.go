package state

import (
	"sync"

	"github.com/cockroachdb/pebble/v2"
)

// SharedCache is one Pebble block cache for every store opened with it
// (WithSharedCache), so that a process's stores together hold at most its
// size in blocks, instead of a cache of that size each. Pebble reserves
// each store's memtables out of the cache they use, so a shared cache
// bounds the memtables' memory too while they fit in it: the blocks give way
// to them (they are never refused, and a store's memtables are at most
// about three times its memtable size).
//
// The cache exists while a store opened with it is open: the first Open
// makes it, the last Close frees it, and a later Open makes a new one.
type SharedCache struct {
	size  int64
	mu    sync.Mutex
	cache *pebble.Cache
	users int
}

// NewSharedCache is a cache of size bytes for the stores opened with it. It
// allocates nothing until a store opens.
func NewSharedCache(size int64) *SharedCache { return &SharedCache{size: size} }

// Size is the cache's bound in bytes.
func (c *SharedCache) Size() int64 { return c.size }

// acquire is the cache for a store about to open; release when it closed.
func (c *SharedCache) acquire() (*pebble.Cache, func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cache == nil {
		c.cache = pebble.NewCache(c.size) // this reference is the users'
	}
	c.users++
	var once sync.Once
	return c.cache, func() { once.Do(c.release) }
}

func (c *SharedCache) release() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.users--
	if c.users == 0 {
		// Each open database holds a reference of its own, so this frees
		// the blocks only once every store closed.
		c.cache.Unref()
		c.cache = nil
	}
}
