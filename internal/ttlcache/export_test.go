package ttlcache

import "hash/maphash"

func hashA[V any](c *Cache[V], key string) uint64 { return maphash.String(c.seedA, key) }
