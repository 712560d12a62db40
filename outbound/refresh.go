package outbound

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"

	"golang.org/x/oauth2"
)

// run fetches the token in the background and keeps it fresh: a refresh
// once 20% of its lifetime remains, retries with backoff after a failure.
// It returns when ctx ends; a fetch already under way then still finishes
// (within FetchTimeout), so that requests draining after shutdown get
// their token.
func (c *Cache) run(ctx context.Context) {
	for {
		select { // due below sees every change signalled so far
		case <-c.kick:
		default:
		}
		if d := c.due(); d > 0 {
			select {
			case <-ctx.Done():
				return
			case <-c.opts.Clock.After(d):
			case <-c.kick:
			}
			continue
		}
		_, _ = c.fetch(ctx) // joins a fetch a caller started
		if ctx.Err() != nil {
			return
		}
	}
}

// due returns how long until the next fetch: the token's refresh time, or
// the end of the backoff after a failure; 0 or less means now.
func (c *Cache) due() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.opts.Clock.Now()
	var due time.Time // zero: now
	if e := c.cur.Load(); e.live(now) {
		due = e.refreshAt
	}
	if c.lastErr != nil && c.retryAt.After(due) {
		due = c.retryAt
	}
	return due.Sub(now)
}

// fetch gets a new token, or joins the fetch under way. The fetch runs on
// a context of its own, keeping ctx's values but not its cancellation: ctx
// is merely the first caller's, or the refresh loop's.
func (c *Cache) fetch(ctx context.Context) (*entry, error) {
	return c.fetches.Do(ctx, "", c.opts.FetchTimeout, func(ctx context.Context) (*entry, error) {
		fetchedAt, began := c.opts.Clock.Now(), time.Now()
		tok, err := c.src.Token(ctx)
		var e *entry
		if err == nil {
			e, err = c.newEntry(tok, fetchedAt)
		}
		c.fetchDur.Observe(time.Since(began).Seconds())
		c.finish(ctx, e, err)
		c.wake()
		return e, err
	})
}

// finish records a fetch's outcome; ctx is the fetch's, for the log's
// trace ids.
func (c *Cache) finish(ctx context.Context, e *entry, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err != nil {
		c.failures++
		c.lastErr = err
		c.failedAt = c.opts.Clock.Now()
		c.retryAt = c.retryTime(c.failedAt)
		c.fetchErr.Inc()
		c.log.WarnContext(ctx, "token fetch failed", "error", err.Error(), "failures", c.failures,
			"retry_at", c.retryAt.Format(time.RFC3339Nano))
		return
	}
	c.failures, c.lastErr = 0, nil
	e.stop = c.opts.Clock.AfterFunc(e.expiry.Sub(c.opts.Clock.Now()), func() { e.expired.Store(true) })
	if old := c.cur.Swap(e); old != nil {
		old.stop()
	}
	c.fetchOK.Inc()
	c.expiry.Set(float64(e.expiry.UnixMilli()) / 1e3)
	c.log.DebugContext(ctx, "token fetched", "expires_at", e.expiry.Format(time.RFC3339), "refresh_at", e.refreshAt.Format(time.RFC3339))
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
	return newEntry(tok, fetchedAt, c.opts.defaultLifetime)
}

// newEntry is the entry of tok fetched at fetchedAt, with lifetime
// assumed when the endpoint sent no expires_in.
func newEntry(tok *oauth2.Token, fetchedAt time.Time, lifetime time.Duration) (*entry, error) {
	if tok == nil || tok.AccessToken == "" {
		return nil, errors.New("outbound: token endpoint returned no access_token")
	}
	expiry := tok.Expiry
	if expiry.IsZero() {
		expiry = fetchedAt.Add(lifetime)
	}
	lifetime = expiry.Sub(fetchedAt)
	if lifetime <= 0 {
		return nil, fmt.Errorf("outbound: token endpoint returned a token that expired %s ago", -lifetime)
	}
	dpop := strings.EqualFold(tok.TokenType, "dpop")
	scheme := "Bearer "
	if dpop {
		scheme = "DPoP "
	}
	return &entry{
		tok:       tok,
		dpop:      dpop,
		header:    scheme + tok.AccessToken,
		expiry:    expiry,
		refreshAt: expiry.Add(-lifetime / refreshFraction),
	}, nil
}
