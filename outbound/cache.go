package outbound

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/oauth2"

	"github.com/authsidecar/authsidecar/internal/clock"
	"github.com/authsidecar/authsidecar/internal/flight"
	"github.com/authsidecar/authsidecar/metrics"
)

// TokenSource fetches a new token each time it is called; the Cache decides
// when. A token's Expiry must be on the Cache's clock; a zero Expiry means
// the endpoint did not say (no expires_in).
type TokenSource interface {
	Token(ctx context.Context) (*oauth2.Token, error)
}

// errTokenUnavailable is wrapped by every error the Cache returns when it
// has no valid token to give; the handler answers 503 token_unavailable.
var errTokenUnavailable = errors.New("outbound: no valid token")

// What CacheOptions' zero values stand for.
const (
	// defaultLifetime is assumed for a token sent without expires_in:
	// RFC 6749 makes the field optional, and a token of unknown lifetime
	// must still be refreshed at some point rather than kept forever.
	defaultLifetime = 5 * time.Minute
	// defaultFetchTimeout bounds one token fetch.
	defaultFetchTimeout = 10 * time.Second
	// defaultMinBackoff and defaultMaxBackoff bound the wait between failed
	// fetches; it doubles from the first to the second, ±20% jitter.
	defaultMinBackoff = time.Second
	defaultMaxBackoff = time.Minute
)

// refreshFraction of a token's lifetime is left when it is refreshed.
const refreshFraction = 5 // 1/5 = 20%

// CacheOptions configure a Cache. Zero values take the defaults above,
// the real clock and timers, and metrics on a throwaway registry.
type CacheOptions struct {
	// Route names the cache in metrics and logs.
	Route   string
	Metrics *metrics.Metrics
	Logger  *slog.Logger
	// Clock drives expiry, refresh and backoff; nil: the real clock.
	Clock clock.Clock
	// defaultLifetime is assumed for tokens without expires_in.
	defaultLifetime time.Duration
	FetchTimeout    time.Duration
	MinBackoff      time.Duration
	MaxBackoff      time.Duration
	// draw is refreshDraw, unless a test sets its own.
	draw func() float64
}

// Cache holds one route's token. Reading a valid token is two atomic loads
// and no clock read (reading the clock costs more than all the rest, so a
// timer marks the token expired instead). A fetch is shared by every
// caller waiting at the time and runs on a context of its own, so one
// caller giving up does not fail the others.
type Cache struct {
	src  TokenSource
	opts CacheOptions
	log  *slog.Logger

	fetchOK, fetchErr prometheus.Counter
	fetchDur          prometheus.Observer
	expiry            prometheus.Gauge

	cur     atomic.Pointer[entry]
	fetches flight.Group[*entry]

	mu       sync.Mutex // guards the fields below; never held across a fetch
	failures int
	lastErr  error
	retryAt  time.Time
	// failedAt is when the last fetch failed, failingSince when the first
	// of the failures in a row did.
	failedAt, failingSince time.Time
	// refusedAt is when an upstream's 401 last dropped the token.
	refusedAt time.Time

	kick chan struct{} // wakes the refresh loop when the plan changed
}

// entry is one fetched token. Only expired changes once it is stored.
type entry struct {
	tok    *oauth2.Token
	header string // "Bearer <token>" or "DPoP <token>", built once, not per request
	// dpop: the token is DPoP-bound, and every call needs a proof.
	dpop      bool
	expiry    time.Time
	refreshAt time.Time
	// expired is set by a timer at expiry. The hot path reads only it;
	// the slow paths also read the clock, in case the timer runs late.
	expired atomic.Bool
	stop    func() bool // the timer's
}

// live reports whether e can be sent at now.
func (e *entry) live(now time.Time) bool {
	return e != nil && !e.expired.Load() && now.Before(e.expiry)
}

// NewCache returns a cache of src's tokens. Nothing is fetched until the
// first call or Start.
func NewCache(src TokenSource, opts CacheOptions) *Cache {
	opts = opts.withDefaults()
	c := &Cache{src: src, opts: opts, kick: make(chan struct{}, 1)}
	c.log = opts.Logger.With("route", opts.Route)
	c.fetchOK = opts.Metrics.TokenFetches.WithLabelValues(opts.Route, "success")
	c.fetchErr = opts.Metrics.TokenFetches.WithLabelValues(opts.Route, "error")
	c.fetchDur = opts.Metrics.TokenFetchDuration.WithLabelValues(opts.Route)
	c.expiry = opts.Metrics.TokenExpiry.WithLabelValues(opts.Route)
	return c
}

func (o CacheOptions) withDefaults() CacheOptions {
	if o.Metrics == nil {
		o.Metrics = metrics.New(prometheus.NewRegistry(), "")
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	o.Clock = clock.OrReal(o.Clock)
	setDefault(&o.defaultLifetime, defaultLifetime)
	setDefault(&o.FetchTimeout, defaultFetchTimeout)
	setDefault(&o.MinBackoff, defaultMinBackoff)
	setDefault(&o.MaxBackoff, defaultMaxBackoff)
	if o.draw == nil {
		o.draw = refreshDraw
	}
	return o
}

func setDefault(d *time.Duration, def time.Duration) {
	if *d <= 0 {
		*d = def
	}
}

// Token returns a valid token: the cached one, or, when there is none, the
// result of a fetch shared with every other caller. ctx bounds only this
// caller's wait. The error wraps errTokenUnavailable, or is ctx's error.
func (c *Cache) Token(ctx context.Context) (*oauth2.Token, error) {
	e, err := c.get(ctx)
	if err != nil {
		return nil, err
	}
	return e.tok, nil
}

// get is the hot path: two atomic loads.
func (c *Cache) get(ctx context.Context) (*entry, error) {
	if e := c.cur.Load(); e != nil && !e.expired.Load() {
		return e, nil
	}
	return c.wait(ctx)
}

// probeInterval is the least time between the fetches callers start while
// the refresh loop backs off: after an outage of the identity provider, a
// call that waits finds out within about a second that it is back, instead
// of waiting out a backoff of up to a minute, and a provider that is still
// down is asked twice a second per route, not once per call.
//
// In a longer outage the gap grows with it, to a fortieth of the time the
// fetches have failed, up to maxProbeInterval: twice a second per route is
// what a fleet cannot afford for long (in fleetsim, a 30-minute outage of
// 10,000 pods × 5 routes had them ask the provider some 36,000 times a
// second), and a provider down for minutes is not missed by seconds.
const (
	probeInterval    = 500 * time.Millisecond
	probeGrowth      = 40
	maxProbeInterval = 8 * time.Second
)

// probeGap is the least time between probes after fetches have failed for
// down.
func probeGap(down time.Duration) time.Duration {
	return min(max(probeInterval, down/probeGrowth), maxProbeInterval)
}

// wait returns the valid entry, or the result of a fetch shared with every
// other caller. While the refresh loop backs off after a failure, a caller
// starts a fetch only when none failed in the last probeGap, and
// otherwise gets the failure at once: without that, every request would
// hit a failing token endpoint.
func (c *Cache) wait(ctx context.Context) (*entry, error) {
	c.mu.Lock()
	now := c.opts.Clock.Now()
	if e := c.cur.Load(); e.live(now) {
		c.mu.Unlock()
		return e, nil
	}
	if c.lastErr != nil && now.Before(c.retryAt) && now.Sub(c.failedAt) < probeGap(c.failedAt.Sub(c.failingSince)) {
		err := c.lastErr
		c.mu.Unlock()
		return nil, c.unavailable(err)
	}
	c.mu.Unlock()
	e, err := c.fetchMissing(ctx)
	if err != nil && ctx.Err() == nil {
		return nil, c.unavailable(err)
	}
	return e, err
}

// ready reports whether the route holds a token it can send now, and if
// not, why, for /readyz.
func (c *Cache) ready() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cur.Load().live(c.opts.Clock.Now()) {
		return nil
	}
	if c.lastErr != nil {
		return fmt.Errorf("no valid token: %w", c.lastErr)
	}
	return errors.New("no valid token yet: the first fetch has not finished")
}

func (c *Cache) unavailable(cause error) error {
	return fmt.Errorf("%w for route %q: %w", errTokenUnavailable, c.opts.Route, cause)
}

// refusalCooldown is the least time between two tokens of a route dropped
// because an upstream answered 401. An upstream that refuses calls for
// reasons of its own (or one that alternates between accepting and
// refusing) would otherwise cost one token request per call and could get
// the client throttled by its identity provider, and then every call on
// the route would fail.
const refusalCooldown = 5 * time.Second

// refused is told that an upstream answered 401 to tok, and reports whether
// a retry can use another token: whether tok was dropped now, or had been
// replaced already. It is dropped unless a token of the route was dropped
// for a 401 less than refusalCooldown ago.
func (c *Cache) refused(tok *oauth2.Token) bool {
	c.mu.Lock()
	e := c.cur.Load()
	if e == nil || e.tok.AccessToken != tok.AccessToken {
		c.mu.Unlock()
		return true // already dropped or replaced
	}
	now := c.opts.Clock.Now()
	if !c.refusedAt.IsZero() && now.Sub(c.refusedAt) < refusalCooldown {
		c.mu.Unlock()
		return false
	}
	c.refusedAt = now
	c.mu.Unlock()
	c.Invalidate(tok)
	return true
}

// Invalidate drops tok if it is still the current token, as after an
// upstream's 401; a token already replaced is left alone, so a burst of
// 401s for one old token causes one fetch, not one each.
func (c *Cache) Invalidate(tok *oauth2.Token) {
	if tok == nil {
		return
	}
	c.mu.Lock()
	e := c.cur.Load()
	dropped := e != nil && e.tok.AccessToken == tok.AccessToken
	if dropped {
		c.cur.Store(nil)
		e.stop()
	}
	c.mu.Unlock()
	if dropped {
		c.log.Info("token dropped after the upstream refused it")
		c.wake()
	}
}

func (c *Cache) wake() {
	select {
	case c.kick <- struct{}{}:
	default:
	}
}
