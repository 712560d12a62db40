package inbound_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/authsidecar/authsidecar/inbound"
	"github.com/authsidecar/authsidecar/internal/idptest"
)

func TestRepeatedTokenSkipsTheSignatureButNotTheClock(t *testing.T) {
	clk := newClock()
	f := newFixture(t, fixtureOptions{now: clk.Now, cacheSize: 100})
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
	if err := f.keys.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	if resp, _ := f.do(t, "/", bearer(tok)); resp.StatusCode != 401 {
		t.Errorf("token signed by a withdrawn key, from the cache: status %d, want 401", resp.StatusCode)
	}
}

func TestCacheCountsHitsAndMissesAndStaysBounded(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	hits := prometheus.NewCounter(prometheus.CounterOpts{Name: "hits"})
	misses := prometheus.NewCounter(prometheus.CounterOpts{Name: "misses"})
	v, err := inbound.NewVerifier(inbound.VerifierOptions{
		KeySets: []*inbound.KeySet{f.keys}, Audiences: []string{audience}, Algorithms: []string{"RS256"},
		CacheSize: 64, CacheHits: hits, CacheMisses: misses,
	})
	if err != nil {
		t.Fatal(err)
	}
	tok := f.token(t, nil)
	for range 5 {
		if _, err := v.Verify(context.Background(), tok); err != nil {
			t.Fatal(err)
		}
	}
	if h, m := testutil.ToFloat64(hits), testutil.ToFloat64(misses); h != 4 || m != 1 {
		t.Errorf("hits %v misses %v, want 4 and 1", h, m)
	}
	for i := range 500 {
		if _, err := v.Verify(context.Background(), f.token(t, map[string]any{"jti": fmt.Sprint(i)})); err != nil {
			t.Fatal(err)
		}
	}
	// 32 shards of 2 + 2/4 + 1 = 3 entries: 64 tokens' room and a quarter.
	if n := inbound.CacheLen(v); n > 96 {
		t.Errorf("cache holds %d entries, want at most 96", n)
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
