package inbound

import (
	"hash/maphash"
	"sync"
	"time"
)

// tokenCache remembers tokens whose signature has been verified, so that a
// caller presenting the same token again skips the signature check. What
// depends on the clock or the configuration (expiry, audience, scopes,
// client) is still checked on every request.
//
// Entries are keyed by two independently seeded 64-bit hashes of the
// token: the seeds are random per process, so nobody can craft a token
// that collides with another, and no token is kept in memory.
type tokenCache struct {
	seedA, seedB maphash.Seed
	shards       [cacheShards]cacheShard
	perShard     int
}

const cacheShards = 32

type cacheShard struct {
	mu      sync.RWMutex
	entries map[uint64]*cacheEntry
}

type cacheEntry struct {
	check      uint64
	identity   *Identity
	claims     *claims
	keys       *KeySet
	generation uint64
	// until is when the entry stops being useful: exp plus the skew.
	until time.Time
}

// newTokenCache returns a cache for size tokens, or nil (no cache) when
// size is 0. Tokens do not spread evenly over the shards, so each shard
// has a quarter more room than an even share: size distinct tokens fit,
// and memory stays bounded by 1.25 × size entries.
func newTokenCache(size int) *tokenCache {
	if size <= 0 {
		return nil
	}
	even := (size + cacheShards - 1) / cacheShards
	c := &tokenCache{seedA: maphash.MakeSeed(), seedB: maphash.MakeSeed(), perShard: even + even/4 + 1}
	for i := range c.shards {
		c.shards[i].entries = make(map[uint64]*cacheEntry)
	}
	return c
}

// get returns the entry for raw if it is present, still within its
// lifetime and verified under the issuer's current keys.
func (c *tokenCache) get(raw string, now time.Time) *cacheEntry {
	key := maphash.String(c.seedA, raw)
	s := &c.shards[key%cacheShards]
	s.mu.RLock()
	e := s.entries[key]
	s.mu.RUnlock()
	if e == nil || e.check != maphash.String(c.seedB, raw) || now.After(e.until) ||
		e.generation != e.keys.Generation() {
		return nil
	}
	return e
}

// put remembers a verified token. A full shard first drops its expired
// entries, then, if still full, an arbitrary one: the cache is a bound on
// memory, not a promise to keep any token.
func (c *tokenCache) put(raw string, e *cacheEntry, now time.Time) {
	key := maphash.String(c.seedA, raw)
	e.check = maphash.String(c.seedB, raw)
	s := &c.shards[key%cacheShards]
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.entries) >= c.perShard {
		for k, old := range s.entries {
			if now.After(old.until) || old.generation != old.keys.Generation() {
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
	s.entries[key] = e
}

// len returns the number of entries, for tests.
func (c *tokenCache) len() int {
	n := 0
	for i := range c.shards {
		c.shards[i].mu.RLock()
		n += len(c.shards[i].entries)
		c.shards[i].mu.RUnlock()
	}
	return n
}
