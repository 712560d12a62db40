package outbound

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/authsidecar/authsidecar/internal/clock"
)

// clockSource hands out tokens living 100 s on clk, or fails while down.
type clockSource struct {
	clk   clock.Clock
	down  atomic.Bool
	calls atomic.Int64
}

func (s *clockSource) Token(context.Context) (*oauth2.Token, error) {
	s.calls.Add(1)
	if s.down.Load() {
		return nil, errors.New("down")
	}
	return &oauth2.Token{AccessToken: "tok", Expiry: s.clk.Now().Add(100 * time.Second)}, nil
}

// startLoop runs c's refresh loop until the test ends and returns the
// waits it sets, in order.
func startLoop(t *testing.T, clk *clock.Fake, c *Cache) <-chan time.Duration {
	armed := make(chan time.Duration, 100)
	clk.OnAfter(func(d time.Duration) { armed <- d })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { c.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return armed
}

func nextWait(t *testing.T, armed <-chan time.Duration) time.Duration {
	t.Helper()
	select {
	case d := <-armed:
		return d
	case <-time.After(waitLimit):
		t.Fatal("the refresh loop set no timer")
		return 0
	}
}

func TestHerdedFetchesAreRefreshedAtARandomPointThenAtEightyPercent(t *testing.T) {
	for _, tc := range []struct {
		draw float64
		want time.Duration
	}{{0, 40 * time.Second}, {0.5, 60 * time.Second}, {1, 80 * time.Second}} { // 100 s tokens: kept 40% at least
		clk := clock.NewFake(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
		src := &clockSource{clk: clk}
		c := NewCache(src, CacheOptions{Clock: clk, draw: func() float64 { return tc.draw }})
		armed := startLoop(t, clk, c)

		if d := nextWait(t, armed); d != tc.want {
			t.Errorf("draw %v: the first token is refreshed after %s, want %s", tc.draw, d, tc.want)
		}
		clk.Advance(tc.want)
		if d := nextWait(t, armed); d != 80*time.Second {
			t.Errorf("draw %v: a token refreshed on time is refreshed after %s, want 80s", tc.draw, d)
		}
		// The provider goes down at the next refresh and returns at the
		// first retry: that fetch may be one of a herd, so its token is
		// refreshed at the drawn point again.
		src.down.Store(true)
		clk.Advance(80 * time.Second)
		retry := nextWait(t, armed)
		src.down.Store(false)
		clk.Advance(retry)
		if d := nextWait(t, armed); d != tc.want {
			t.Errorf("draw %v: the first token after a failure is refreshed after %s, want %s", tc.draw, d, tc.want)
		}
		if got := src.calls.Load(); got != 4 {
			t.Errorf("draw %v: %d token requests, want 4", tc.draw, got)
		}
	}
}

// TestAHerdOfCachesSpreadsItsRefreshes: 10,000 routes that fetched hour
// tokens in the same second refresh evenly from two minutes on to 80% of
// the lifetime, not in one second.
func TestAHerdOfCachesSpreadsItsRefreshes(t *testing.T) {
	clk := clock.NewFake(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	c := NewCache(&clockSource{clk: clk}, CacheOptions{Clock: clk})
	var perMinute [60]int
	const herd = 10_000
	for range herd {
		e, err := c.newEntry(&oauth2.Token{AccessToken: "tok", Expiry: clk.Now().Add(time.Hour)}, clk.Now())
		if err != nil {
			t.Fatal(err)
		}
		e.spread(clk.Now(), rand.Float64())
		perMinute[int(e.refreshAt.Sub(clk.Now())/time.Minute)]++
	}
	for minute, n := range perMinute {
		if (minute < 2 || minute >= 48) && n > 0 {
			t.Errorf("%d refreshes %d minutes after the fetch, want all between 2 and 48", n, minute)
		}
		// Uniform: 217 a minute; 330 is past 7 standard deviations.
		if n > 330 {
			t.Errorf("%d refreshes in minute %d, want about %d", n, minute, herd/46)
		}
	}
}

// hourSource hands out hour-long tokens on clk, or fails while down.
type hourSource struct{ clockSource }

func (s *hourSource) Token(ctx context.Context) (*oauth2.Token, error) {
	tok, err := s.clockSource.Token(ctx)
	if tok != nil {
		tok.Expiry = s.clk.Now().Add(time.Hour)
	}
	return tok, err
}

// TestAFailedRefreshWithTimeToSpareRetriesLazily: a route whose hour-long
// token still has 12 minutes when its refresh fails retries after about a
// quarter of the time left, again and again, until a quarter is less than
// the backoff cap; never after the token expires.
func TestAFailedRefreshWithTimeToSpareRetriesLazily(t *testing.T) {
	clk := clock.NewFake(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	src := &hourSource{clockSource{clk: clk}}
	c := NewCache(src, CacheOptions{Clock: clk, draw: func() float64 { return 1 }})
	armed := startLoop(t, clk, c)
	if d := nextWait(t, armed); d != 48*time.Minute {
		t.Fatalf("refresh after %s, want 48m", d)
	}
	src.down.Store(true)
	clk.Advance(48 * time.Minute)
	left := 12 * time.Minute
	for i := 0; left > 4*time.Minute; i++ {
		d := nextWait(t, armed)
		if lo, hi := left/4*8/10, left/4*12/10; d < lo || d > hi {
			t.Fatalf("retry %d with %s left after %s, want a quarter of it ±20%%, [%s, %s]", i+1, left, d, lo, hi)
		}
		clk.Advance(d)
		left -= d
	}
	// Under four minutes left: the usual backoff, capped at a minute and
	// at the token's expiry.
	for left > 0 {
		d := nextWait(t, armed)
		if d > time.Minute+12*time.Second || d > left {
			t.Fatalf("retry with %s left after %s, want at most a minute ±20%% and at most the time left", left, d)
		}
		clk.Advance(d)
		left -= d
	}
	if n := src.calls.Load(); n > 12 {
		t.Errorf("%d token requests over the token's last 12 minutes, want few", n)
	}
	src.down.Store(false)
	clk.Advance(nextWait(t, armed))
	if tok, err := c.Token(context.Background()); err != nil || tok == nil {
		t.Errorf("after the provider's return: %v, want a token", err)
	}
}
