package outbound

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"golang.org/x/oauth2"
)

func TestColdStartCallersShareOneFetch(t *testing.T) {
	ts := newTokenServer(t)
	ts.block()
	h := build(t, env(ts, "http://upstream.test", nil), nil)
	cache := h.route("payments").cache

	const callers = 1000
	var started, done sync.WaitGroup
	tokens := make(chan string, callers)
	for range callers {
		started.Add(1)
		done.Go(func() {
			started.Done()
			tok, err := cache.Token(t.Context())
			if err != nil {
				t.Errorf("Token: %v", err)
				return
			}
			tokens <- tok.AccessToken
		})
	}
	started.Wait()
	ts.waitArrival(t)
	ts.release()
	waitGroup(t, &done)
	close(tokens)

	if got := ts.calls.Load(); got != 1 {
		t.Errorf("token requests = %d, want 1", got)
	}
	for tok := range tokens {
		if tok != "tok-1" {
			t.Fatalf("a caller got %q, want tok-1", tok)
		}
	}
	if got := testutil.ToFloat64(h.m.TokenFetches.WithLabelValues("payments", "success")); got != 1 {
		t.Errorf("authsidecar_token_fetches_total{result=success} = %v, want 1", got)
	}
}

func TestTokenIsRefreshedAtEightyPercentWithoutCallersWaiting(t *testing.T) {
	ts := newTokenServer(t) // expires_in 100
	clock := newFakeClock()
	h := build(t, env(ts, "http://upstream.test", nil), clock)
	cache := h.route("payments").cache
	fetchedAt := clock.Now()
	h.start(t)

	if d := clock.nextArmed(t); d != 80*time.Second {
		t.Fatalf("after the first fetch the refresh is due in %s, want 80s", d)
	}
	wantExpiry := float64(fetchedAt.Add(100 * time.Second).Unix())
	if got := testutil.ToFloat64(h.m.TokenExpiry.WithLabelValues("payments")); got != wantExpiry {
		t.Errorf("authsidecar_token_expiry_timestamp_seconds = %v, want %v", got, wantExpiry)
	}
	clock.Advance(79 * time.Second)
	if got := ts.calls.Load(); got != 1 {
		t.Fatalf("token requests before 80%% of the lifetime = %d, want 1", got)
	}

	ts.block()
	clock.Advance(time.Second)
	ts.waitArrival(t) // the refresh is in flight and blocked
	for range 100 {
		if tok := tokenWithin(t, cache, time.Second); tok != "tok-1" {
			t.Fatalf("during the refresh a caller got %q, want the old tok-1 at once", tok)
		}
	}
	ts.release()
	if d := clock.nextArmed(t); d != 80*time.Second {
		t.Fatalf("after the refresh the next is due in %s, want 80s", d)
	}
	if tok := tokenWithin(t, cache, time.Second); tok != "tok-2" {
		t.Fatalf("after the refresh got %q, want tok-2", tok)
	}
	if got := ts.calls.Load(); got != 2 {
		t.Errorf("token requests = %d, want 2", got)
	}
}

func TestTokenWithoutExpiresInGetsTheDefaultLifetime(t *testing.T) {
	ts := newTokenServer(t)
	ts.set(func(ts *tokenServer) { ts.expiresIn = 0 })
	clock := newFakeClock()
	h := build(t, env(ts, "http://upstream.test", nil), clock)
	h.start(t)
	if d, want := clock.nextArmed(t), defaultLifetime*4/5; d != want {
		t.Fatalf("refresh due in %s, want %s (80%% of the default lifetime)", d, want)
	}
}

func TestCallerGivingUpDoesNotCancelTheSharedFetch(t *testing.T) {
	ts := newTokenServer(t)
	ts.block()
	h := build(t, env(ts, "http://upstream.test", nil), nil)
	cache := h.route("payments").cache

	ctx, cancel := context.WithCancel(t.Context())
	errc := make(chan error, 1)
	go func() {
		_, err := cache.Token(ctx)
		errc <- err
	}()
	ts.waitArrival(t)
	cancel()
	if err := receive(t, errc); !errors.Is(err, context.Canceled) {
		t.Fatalf("the first caller got %v, want context.Canceled", err)
	}
	second := make(chan string, 1)
	go func() { second <- tokenWithin(t, cache, waitLimit) }()
	ts.release()
	if tok := receive(t, second); tok != "tok-1" {
		t.Fatalf("the second caller got %q, want tok-1 from the fetch the first started", tok)
	}
	if got := ts.calls.Load(); got != 1 {
		t.Errorf("token requests = %d, want 1", got)
	}
}

func TestInvalidateDropsOnlyTheCurrentToken(t *testing.T) {
	ts := newTokenServer(t)
	h := build(t, env(ts, "http://upstream.test", nil), nil)
	cache := h.route("payments").cache
	first, err := cache.Token(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	cache.Invalidate(first)
	second, err := cache.Token(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	cache.Invalidate(first) // already replaced: no effect
	cache.Invalidate(&oauth2.Token{AccessToken: "never-issued"})
	third, err := cache.Token(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if first.AccessToken != "tok-1" || second.AccessToken != "tok-2" || third.AccessToken != "tok-2" {
		t.Errorf("tokens = %s, %s, %s; want tok-1, tok-2, tok-2", first.AccessToken, second.AccessToken, third.AccessToken)
	}
}

func TestBackoffDoublesWithJitterUpToTheMaximum(t *testing.T) {
	for n, nominal := range []time.Duration{1: time.Second, 2: 2 * time.Second, 3: 4 * time.Second,
		6: 32 * time.Second, 7: time.Minute, 30: time.Minute} {
		if nominal == 0 {
			continue
		}
		for range 100 {
			d := backoff(n, time.Second, time.Minute)
			if lo, hi := nominal*8/10, nominal*12/10; d < lo || d > hi {
				t.Fatalf("backoff(%d) = %s, want within [%s, %s]", n, d, lo, hi)
			}
		}
	}
}

func TestTokenSourceErrorsAreWrapped(t *testing.T) {
	c := NewCache(failingSource{}, CacheOptions{Route: "payments"})
	_, err := c.Token(t.Context())
	if !errors.Is(err, errTokenUnavailable) {
		t.Fatalf("error %v does not wrap errTokenUnavailable", err)
	}
	want := `outbound: no valid token for route "payments": token endpoint down`
	if err.Error() != want {
		t.Errorf("error = %q, want %q", err, want)
	}
}

type failingSource struct{}

func (failingSource) Token(context.Context) (*oauth2.Token, error) {
	return nil, errors.New("token endpoint down")
}

// tokenWithin returns cache's token, failing the test if that takes more
// than d: the callers of a warm cache never wait for the endpoint.
func tokenWithin(t *testing.T, cache *Cache, d time.Duration) string {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	tok, err := cache.Token(ctx)
	if err != nil {
		t.Errorf("Token: %v", err)
		return ""
	}
	return tok.AccessToken
}

func receive[T any](t *testing.T, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(waitLimit):
		t.Fatal("nothing received")
		var zero T
		return zero
	}
}

func waitGroup(t *testing.T, wg *sync.WaitGroup) {
	t.Helper()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	receive(t, done)
}

func TestTokenExpiresOnTimeWithoutTheRefreshLoop(t *testing.T) {
	ts := newTokenServer(t) // expires_in 100
	clock := newFakeClock()
	h := build(t, env(ts, "http://upstream.test", nil), clock)
	cache := h.route("payments").cache // not started: no refresh

	if tok := tokenWithin(t, cache, waitLimit); tok != "tok-1" {
		t.Fatalf("got %q, want tok-1", tok)
	}
	clock.Advance(100*time.Second - time.Nanosecond)
	if tok := tokenWithin(t, cache, waitLimit); tok != "tok-1" {
		t.Fatalf("a nanosecond before expiry got %q, want tok-1", tok)
	}
	clock.Advance(time.Nanosecond)
	if tok := tokenWithin(t, cache, waitLimit); tok != "tok-2" {
		t.Fatalf("at expiry got %q, want a new token, tok-2", tok)
	}
}
