// Package ttlcache is a bounded, sharded cache of values keyed by a secret
// string (a token) with a lifetime per entry. The key itself is never
// kept: entries are found by two independently seeded 64-bit hashes of it,
// with seeds random per process, so nobody can craft a key that collides
// with another's, and a memory dump holds no tokens.
package ttlcache

import (
	"hash/maphash"
	"math"
	"sync"
	"time"
)

const shards = 32

// Cache maps keys to values until each entry's own expiry. The zero of a
// *Cache, nil, is a cache that holds nothing.
type Cache[V any] struct {
	seedA, seedB maphash.Seed
	shards       [shards]shard[V]
	perShard     int
}

type shard[V any] struct {
	mu      sync.RWMutex
	entries map[uint64]*entry[V]
}

type entry[V any] struct {
	check uint64
	until time.Time
	value V
}

// New returns a cache for size entries, or nil when size is 0 or less.
// Keys do not spread evenly over the shards, so each has room for more
// than an even share: a quarter more, or five standard deviations of a
// random spread when that is more (small caches), so that size distinct
// keys fit. Memory is bounded by Bound(size) entries.
func New[V any](size int) *Cache[V] {
	if size <= 0 {
		return nil
	}
	c := &Cache[V]{seedA: maphash.MakeSeed(), seedB: maphash.MakeSeed(), perShard: perShard(size)}
	for i := range c.shards {
		c.shards[i].entries = make(map[uint64]*entry[V])
	}
	return c
}

func perShard(size int) int {
	even := (size + shards - 1) / shards
	return even + max(even/4, int(5*math.Sqrt(float64(even)))) + 1
}

// Bound is the most entries a cache for size keys holds: 1.29 × size for
// the inbound default of 10,000.
func Bound(size int) int {
	if size <= 0 {
		return 0
	}
	return shards * perShard(size)
}

// Get returns the value for key if it is present and now is not past its
// expiry.
func (c *Cache[V]) Get(key string, now time.Time) (V, bool) {
	var zero V
	if c == nil {
		return zero, false
	}
	h := maphash.String(c.seedA, key)
	s := &c.shards[h%shards]
	s.mu.RLock()
	e := s.entries[h]
	s.mu.RUnlock()
	if e == nil || e.check != maphash.String(c.seedB, key) || now.After(e.until) {
		return zero, false
	}
	return e.value, true
}

// Put stores v for key until until. A full shard first drops its expired
// entries, then, if still full, arbitrary ones: the cache bounds memory,
// it does not promise to keep anything.
func (c *Cache[V]) Put(key string, v V, until, now time.Time) {
	if c == nil {
		return
	}
	h := maphash.String(c.seedA, key)
	e := &entry[V]{check: maphash.String(c.seedB, key), until: until, value: v}
	s := &c.shards[h%shards]
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, replace := s.entries[h]; !replace && len(s.entries) >= c.perShard {
		for k, old := range s.entries {
			if now.After(old.until) {
				delete(s.entries, k)
			}
		}
		for k := range s.entries {
			if len(s.entries) < c.perShard {
				break
			}
			delete(s.entries, k)
		}
	}
	s.entries[h] = e
}

// Delete drops key.
func (c *Cache[V]) Delete(key string) {
	if c == nil {
		return
	}
	h := maphash.String(c.seedA, key)
	s := &c.shards[h%shards]
	s.mu.Lock()
	if e := s.entries[h]; e != nil && e.check == maphash.String(c.seedB, key) {
		delete(s.entries, h)
	}
	s.mu.Unlock()
}

// Len returns the number of entries, expired ones included until they are
// dropped.
func (c *Cache[V]) Len() int {
	if c == nil {
		return 0
	}
	n := 0
	for i := range c.shards {
		c.shards[i].mu.RLock()
		n += len(c.shards[i].entries)
		c.shards[i].mu.RUnlock()
	}
	return n
}
