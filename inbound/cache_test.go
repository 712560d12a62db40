package inbound_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/authsidecar/authsidecar/inbound"
	"github.com/authsidecar/authsidecar/internal/idptest"
	"github.com/authsidecar/authsidecar/internal/ttlcache"
)

func TestRepeatedTokenSkipsTheSignatureButNotTheClock(t *testing.T) {
	clk := newClock()
	f := newFixture(t, fixtureOptions{clock: clk, cacheSize: 100})
	tok := f.token(t, map[string]any{"exp": clk.Now().Add(time.Minute).Unix()})
	for range 3 {
		if resp, _ := f.do(t, "/", bearer(tok)); resp.StatusCode != 200 {
			t.Fatalf("status %d, want 200", resp.StatusCode)
		}
	}
	clk.Advance(2 * time.Minute) // past exp plus the 30s skew
	if resp, _ := f.do(t, "/", bearer(tok)); resp.StatusCode != 401 {
		t.Errorf("a cached token past its exp: status %d, want 401", resp.StatusCode)
	}
}

func TestCachedTokenIsDroppedWhenItsKeyIsWithdrawn(t *testing.T) {
	f := newFixture(t, fixtureOptions{cacheSize: 100})
	tok := f.token(t, nil)
	if resp, _ := f.do(t, "/", bearer(tok)); resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	f.idp.SetKeys(idptest.NewECKey(t, "key-2"))
	if err := f.in.LoadKeys(context.Background()); err != nil {
		t.Fatal(err)
	}
	if resp, _ := f.do(t, "/", bearer(tok)); resp.StatusCode != 401 {
		t.Errorf("token signed by a withdrawn key, from the cache: status %d, want 401", resp.StatusCode)
	}
}

func TestCacheCountsHitsAndMissesAndStaysBounded(t *testing.T) {
	f := newFixture(t, fixtureOptions{cacheSize: 64})
	hits := func() float64 {
		return testutil.ToFloat64(counterFrom(t, f.reg, "authsidecar_inbound_token_cache_requests_total", "result", "hit"))
	}
	misses := func() float64 {
		return testutil.ToFloat64(counterFrom(t, f.reg, "authsidecar_inbound_token_cache_requests_total", "result", "miss"))
	}
	tok := f.token(t, nil)
	for range 5 {
		if err := inbound.Verify(context.Background(), f.in, tok); err != nil {
			t.Fatal(err)
		}
	}
	if h, m := hits(), misses(); h != 4 || m != 1 {
		t.Errorf("hits %v misses %v, want 4 and 1", h, m)
	}
	for i := range 500 {
		if err := inbound.Verify(context.Background(), f.in, f.token(t, map[string]any{"jti": fmt.Sprint(i)})); err != nil {
			t.Fatal(err)
		}
	}
	// 32 shards of 2 + 5·√2 + 1 = 10 entries: the room ttlcache.Bound(64) gives.
	if n, limit := inbound.CacheLen(f.in), ttlcache.Bound(64); n > limit {
		t.Errorf("cache holds %d entries, want at most %d", n, limit)
	}
}

func TestCachedRejectionsAreNotCached(t *testing.T) {
	f := newFixture(t, fixtureOptions{cacheSize: 100})
	bad := tamper(f.token(t, nil))
	for range 2 {
		if resp, _ := f.do(t, "/", bearer(bad)); resp.StatusCode != 401 {
			t.Fatalf("tampered token: status %d, want 401", resp.StatusCode)
		}
	}
}
