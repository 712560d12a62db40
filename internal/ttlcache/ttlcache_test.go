package ttlcache

import (
	"strconv"
	"testing"
	"time"
)

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func TestEntriesLastUntilTheirExpiry(t *testing.T) {
	c := New[int](10)
	c.Put("a", 1, t0.Add(time.Minute), t0)
	if v, ok := c.Get("a", t0.Add(time.Minute)); !ok || v != 1 {
		t.Errorf("at expiry: %d %v, want 1 true", v, ok)
	}
	if _, ok := c.Get("a", t0.Add(time.Minute+1)); ok {
		t.Error("past expiry: found")
	}
	if _, ok := c.Get("b", t0); ok {
		t.Error("an absent key: found")
	}
	c.Delete("a")
	if _, ok := c.Get("a", t0); ok {
		t.Error("after Delete: found")
	}
}

func TestMemoryIsBoundedAndSizeKeysFit(t *testing.T) {
	const size = 1000
	c := New[int](size)
	for i := range size {
		c.Put(strconv.Itoa(i), i, t0.Add(time.Hour), t0)
	}
	kept := 0
	for i := range size {
		if _, ok := c.Get(strconv.Itoa(i), t0); ok {
			kept++
		}
	}
	if kept != size {
		t.Errorf("%d of %d keys kept, want all", kept, size)
	}
	for i := range 10 * size {
		c.Put("more"+strconv.Itoa(i), i, t0.Add(time.Hour), t0)
	}
	if n, limit := c.Len(), Bound(size); n > limit {
		t.Errorf("Len = %d after %d puts, want at most %d", n, 11*size, limit)
	}
}

func TestExpiredEntriesMakeRoomFirst(t *testing.T) {
	c := New[int](shards)
	c.perShard = 2
	var keys []string
	for i := 0; len(keys) < 2; i++ { // two keys in one shard
		k := strconv.Itoa(i)
		if c.shardOf(k) == c.shardOf("0") {
			keys = append(keys, k)
		}
	}
	c.Put(keys[0], 0, t0, t0)                // expires at once
	c.Put(keys[1], 1, t0.Add(time.Hour), t0) // lives on
	later := t0.Add(time.Second)
	for i := 0; ; i++ {
		k := "x" + strconv.Itoa(i)
		if c.shardOf(k) == c.shardOf("0") {
			c.Put(k, 2, t0.Add(time.Hour), later)
			break
		}
	}
	if _, ok := c.Get(keys[1], later); !ok {
		t.Error("a live entry was evicted while an expired one could go")
	}
}

func (c *Cache[V]) shardOf(key string) uint64 {
	return hashA(c, key) % shards
}

func TestTheDefaultSizeCostsAtMostThirtyPercentMore(t *testing.T) {
	if got := float64(Bound(10000)) / 10000; got > 1.3 {
		t.Errorf("Bound(10000) = %.2f × size, want at most 1.3", got)
	}
}

func TestNilCacheHoldsNothing(t *testing.T) {
	var c *Cache[int] = New[int](0)
	c.Put("a", 1, t0.Add(time.Hour), t0)
	if _, ok := c.Get("a", t0); ok || c.Len() != 0 {
		t.Error("a nil cache held something")
	}
}
