package inbound_test

import (
	"context"
	"testing"
	"time"
)

// TestKeysAreRefreshedAtARandomPhaseThenEveryInterval: a fleet started
// together must not ask the provider together every interval, nor retry a
// failing one every minute. The first refresh after the keys load waits
// between half and one and a half intervals; every later one, failed or
// not, exactly one interval.
func TestKeysAreRefreshedAtARandomPhaseThenEveryInterval(t *testing.T) {
	const interval = 10 * time.Minute
	seen := map[time.Duration]bool{}
	for range 10 {
		clk := newClock()
		armed := make(chan time.Duration, 10)
		clk.OnAfter(func(d time.Duration) { armed <- d })
		f := newFixture(t, fixtureOptions{clock: clk, skipWarmUp: true})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { f.in.Run(ctx); close(done) }()
		wait := func() time.Duration {
			t.Helper()
			select {
			case d := <-armed:
				return d
			case <-time.After(10 * time.Second):
				t.Fatal("the refresh loop set no timer")
				return 0
			}
		}

		first := wait()
		if first < interval/2 || first > 3*interval/2 {
			t.Fatalf("first refresh after %s, want between %s and %s", first, interval/2, 3*interval/2)
		}
		seen[first.Truncate(time.Minute)] = true
		clk.Advance(first)
		if d := wait(); d != interval {
			t.Fatalf("second refresh after %s, want %s", d, interval)
		}
		f.idp.SetFailing(true)
		before := f.idp.JWKSHits.Load()
		clk.Advance(interval)
		if d := wait(); d != interval {
			t.Fatalf("after a failed refresh with keys loaded the next is in %s, want %s", d, interval)
		}
		if got := f.idp.JWKSHits.Load() - before; got != 1 {
			t.Fatalf("one failed refresh sent %d JWKS requests, want 1", got)
		}
		if err := f.ready(); err != nil {
			t.Fatalf("ready = %v with keys loaded and the provider down", err)
		}
		cancel()
		<-done
	}
	if len(seen) < 3 {
		t.Errorf("10 key sets drew their first refresh in %d distinct minutes, want them spread", len(seen))
	}
}
