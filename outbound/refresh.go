package outbound

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"golang.org/x/oauth2"
)

// Start fetches the token in the background and keeps it fresh: a refresh
// once 20% of its lifetime remains, retries with backoff after a failure.
// It returns at once; the loop stops when ctx ends. A fetch already in
// flight then still finishes (within FetchTimeout), so that requests
// draining after shutdown get their token.
// Calls after the first do nothing.
func (c *Cache) Start(ctx context.Context) {
	if c.started.CompareAndSwap(false, true) {
		go c.run(ctx)
	}
}

func (c *Cache) run(ctx context.Context) {
	for {
		select { // plan below sees every change signalled so far
		case <-c.kick:
		default:
		}
		var (
			timer <-chan time.Time
			done  <-chan struct{}
		)
		if f, d := c.plan(ctx); f != nil {
			done = f.done
		} else {
			timer = c.opts.After(d)
		}
		select {
		case <-ctx.Done():
			return
		case <-done:
		case <-timer:
		case <-c.kick:
		}
	}
}

// plan returns the fetch to wait for, starting one if it is due, or how
// long to sleep until one is.
func (c *Cache) plan(ctx context.Context) (*flight, time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.inflight != nil {
		return c.inflight, 0
	}
	now := c.opts.Now()
	var due time.Time // zero: now
	if e := c.cur.Load(); e.live(now) {
		due = e.refreshAt
	}
	if c.lastErr != nil && c.retryAt.After(due) {
		due = c.retryAt
	}
	if d := due.Sub(now); d > 0 {
		return nil, d
	}
	return c.startLocked(ctx), 0
}

// startLocked starts a fetch shared by whoever waits for it. Its context
// keeps parent's values but not its cancellation: parent is merely the
// first caller's, or the refresh loop's.
func (c *Cache) startLocked(parent context.Context) *flight {
	f := &flight{done: make(chan struct{})}
	c.inflight = f
	go c.fetch(context.WithoutCancel(parent), f)
	return f
}

func (c *Cache) fetch(parent context.Context, f *flight) {
	ctx, cancel := context.WithTimeout(parent, c.opts.FetchTimeout)
	defer cancel()
	fetchedAt, began := c.opts.Now(), time.Now()
	tok, err := c.src.Token(ctx)
	var e *entry
	if err == nil {
		e, err = c.newEntry(tok, fetchedAt)
	}
	c.fetchDur.Observe(time.Since(began).Seconds())
	c.finish(f, e, err)
	// Wake the loop before releasing the waiters: the loop, if it is one
	// of them, then sees one event, not two, and plans once.
	c.wake()
	close(f.done)
}

// finish records the fetch's outcome; f's fields are set before its done
// channel is closed by the caller.
func (c *Cache) finish(f *flight, e *entry, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.inflight = nil
	f.e, f.err = e, err
	if err != nil {
		c.failures++
		c.lastErr = err
		c.retryAt = c.retryTime(c.opts.Now())
		c.fetchErr.Inc()
		c.log.Warn("token fetch failed", "error", err.Error(), "failures", c.failures,
			"retry_at", c.retryAt.Format(time.RFC3339Nano))
		return
	}
	c.failures, c.lastErr = 0, nil
	e.stop = c.opts.AfterFunc(e.expiry.Sub(c.opts.Now()), func() { e.expired.Store(true) })
	if old := c.cur.Swap(e); old != nil {
		old.stop()
	}
	c.fetchOK.Inc()
	c.expiry.Set(float64(e.expiry.UnixMilli()) / 1e3)
	c.log.Debug("token fetched", "expires_at", e.expiry.Format(time.RFC3339), "refresh_at", e.refreshAt.Format(time.RFC3339))
}

// retryTime is when to try again after c.failures failures in a row; no
// later than the current token's expiry, so that a recovered endpoint is
// asked before callers are left without a token.
func (c *Cache) retryTime(now time.Time) time.Time {
	at := now.Add(backoff(c.failures, c.opts.MinBackoff, c.opts.MaxBackoff))
	if e := c.cur.Load(); e.live(now) && e.expiry.Before(at) {
		at = e.expiry
	}
	return at
}

// backoff returns the wait after n failures: min doubling up to max, then
// ±20% jitter so that sidecars restarted together do not retry together.
func backoff(n int, minD, maxD time.Duration) time.Duration {
	d := minD
	for i := 1; i < n && d < maxD; i++ {
		d *= 2
	}
	d = min(d, maxD)
	return time.Duration(float64(d) * (0.8 + 0.4*rand.Float64()))
}

func (c *Cache) newEntry(tok *oauth2.Token, fetchedAt time.Time) (*entry, error) {
	if tok == nil || tok.AccessToken == "" {
		return nil, errors.New("outbound: token endpoint returned no access_token")
	}
	expiry := tok.Expiry
	if expiry.IsZero() {
		expiry = fetchedAt.Add(c.opts.DefaultLifetime)
	}
	lifetime := expiry.Sub(fetchedAt)
	if lifetime <= 0 {
		return nil, fmt.Errorf("outbound: token endpoint returned a token that expired %s ago", -lifetime)
	}
	return &entry{
		tok:       tok,
		header:    "Bearer " + tok.AccessToken,
		expiry:    expiry,
		refreshAt: expiry.Add(-lifetime / refreshFraction),
	}, nil
}
