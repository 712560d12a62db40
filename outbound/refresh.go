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

// Run is the refresh loop that Outbound.Run runs for each route, for a
// Cache built with NewCache: bench/fleetsim runs tens of thousands of them
// on a virtual clock. It blocks until ctx ends; see run.
func (c *Cache) Run(ctx context.Context) { c.run(ctx) }

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

// fetchMissing is fetch for a caller that found no valid token: a caller
// that found none just before another fetch ended, and so starts one after
// it, gets the token that fetch stored instead of asking again.
func (c *Cache) fetchMissing(ctx context.Context) (*entry, error) {
	return c.fetches.Do(ctx, "", c.opts.FetchTimeout, func(ctx context.Context) (*entry, error) {
		if e := c.cur.Load(); e.live(c.opts.Clock.Now()) {
			return e, nil
		}
		return c.fetchNow(ctx)
	})
}

// fetch gets a new token, or joins the fetch under way. The fetch runs on
// a context of its own, keeping ctx's values but not its cancellation: ctx
// is merely the first caller's, or the refresh loop's.
func (c *Cache) fetch(ctx context.Context) (*entry, error) {
	return c.fetches.Do(ctx, "", c.opts.FetchTimeout, c.fetchNow)
}

// fetchNow fetches a token: the shared call of fetch and fetchMissing.
func (c *Cache) fetchNow(ctx context.Context) (*entry, error) {
	fetchedAt, began := c.opts.Clock.Now(), time.Now()
	tok, err := c.src.Token(ctx)
	var e *entry
	if err == nil {
		e, err = c.newEntry(tok, fetchedAt)
	}
	c.fetchDur.Observe(time.Since(began).Seconds())
	c.finish(ctx, e, err, fetchedAt)
	c.wake()
	return e, err
}

// finish records the outcome of a fetch begun at fetchedAt; ctx is the
// fetch's, for the log's trace ids.
func (c *Cache) finish(ctx context.Context, e *entry, err error, fetchedAt time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err != nil {
		c.failures++
		c.lastErr = err
		c.failedAt = c.opts.Clock.Now()
		if c.failures == 1 {
			c.failingSince = c.failedAt
		}
		c.retryAt = c.retryTime(c.failedAt)
		c.fetchErr.Inc()
		c.log.WarnContext(ctx, "token fetch failed", "error", err.Error(), "failures", c.failures,
			"retry_at", c.retryAt.Format(time.RFC3339Nano))
		return
	}
	if c.herded(fetchedAt) {
		e.spread(fetchedAt, c.opts.draw())
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
//
// While the token has more than lazyRetryFactor backoff caps to live, the
// retry also waits a 1/lazyRetryFactor of the time it has left (±20%): the
// token serves meanwhile, so nothing is gained by asking sooner, and a
// fleet whose provider is down would otherwise ask it once a minute for
// every route whose refresh fell in the outage (in fleetsim, 9 times the
// fleet's steady rate at the end of a 10-minute outage of hour-long
// tokens), and come back all within that minute.
func (c *Cache) retryTime(now time.Time) time.Time {
	at := now.Add(backoff(c.failures, c.opts.MinBackoff, c.opts.MaxBackoff))
	e := c.cur.Load()
	if !e.live(now) {
		return at
	}
	if lazy := e.expiry.Sub(now) / lazyRetryFactor; lazy > c.opts.MaxBackoff {
		at = later(at, now.Add(jittered(lazy)))
	}
	if e.expiry.Before(at) {
		at = e.expiry
	}
	return at
}

// lazyRetryFactor: see retryTime.
const lazyRetryFactor = 4

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// jittered is d ±20%.
func jittered(d time.Duration) time.Duration {
	return time.Duration(float64(d) * (0.8 + 0.4*rand.Float64()))
}

// backoff returns the wait after n failures: min doubling up to max, then
// ±20% jitter so that sidecars restarted together do not retry together.
func backoff(n int, minD, maxD time.Duration) time.Duration {
	d := minD
	for i := 1; i < n && d < maxD; i++ {
		d *= 2
	}
	return jittered(min(d, maxD))
}

// herded reports whether a fetch begun at now may be one of a herd:
// the route holds no valid token (the sidecar just started, its token
// expired, an upstream refused it) or the last fetch failed (the identity
// provider is back from an outage). Sidecars started together, or coming
// back together, fetch together; were each token then refreshed at 80% of
// its lifetime, they would refresh together ever after, one herd per
// lifetime. A herded fetch's token is refreshed at a random point instead.
// c.mu is held; the fetch's entry is not stored yet.
func (c *Cache) herded(now time.Time) bool {
	return c.failures > 0 || !c.cur.Load().live(now)
}

// refreshDraw draws where, in [0, 1), between spreadFrom and 80% of its
// lifetime a herded fetch's token is refreshed. Tests of the package fix
// it at 1: at 80%.
var refreshDraw = rand.Float64

// spreadKeep is the least a herded fetch's token is kept before it is
// refreshed: two minutes, or 40% of a shorter lifetime. A herd's next
// fetches are spread over the rest of the 80% a token serves, so over all
// of it but two minutes for an hour-long token: the fleet's refreshes are
// then as even as if every pod had started at a random time. The floor
// keeps one fetch per route in a short run, a test or a demo.
const (
	spreadKeep         = 2 * time.Minute
	spreadKeepFraction = 0.4
)

// spreadFrom is when, after a herded fetch, its token may be refreshed at
// the earliest.
func spreadFrom(lifetime time.Duration) time.Duration {
	return min(spreadKeep, time.Duration(spreadKeepFraction*float64(lifetime)))
}

// spread moves the refresh of a herded fetch's token to a point drawn
// between spreadFrom and 80% of its lifetime.
func (e *entry) spread(fetchedAt time.Time, draw float64) {
	from := fetchedAt.Add(spreadFrom(e.expiry.Sub(fetchedAt)))
	e.refreshAt = from.Add(time.Duration(draw * float64(e.refreshAt.Sub(from))))
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
