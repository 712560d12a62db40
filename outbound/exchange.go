package outbound

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/oauth2"

	"github.com/authsidecar/authsidecar/internal/clock"
	"github.com/authsidecar/authsidecar/internal/flight"
	"github.com/authsidecar/authsidecar/internal/ttlcache"
)

// RFC 8693 names.
const (
	grantTokenExchange = "urn:ietf:params:oauth:grant-type:token-exchange"
	tokenTypeAccess    = "urn:ietf:params:oauth:token-type:access_token"
)

// exchangeCacheSize bounds the exchanged tokens a route keeps: one per
// caller token seen within their lifetime.
const exchangeCacheSize = 10_000

// exchangeFailureTTL is how long a failed exchange is answered from the
// cache: a caller retrying at once does not make the sidecar ask again.
const exchangeFailureTTL = time.Second

// exchanger gets a token-exchange route's tokens (RFC 8693): the token of
// the caller whose request the app is serving, exchanged at the token
// endpoint for one for the route's upstream. Each result is kept per
// caller token until shortly before it expires, and concurrent calls for
// one caller share one exchange.
type exchanger struct {
	route string
	src   *clientCredentials
	// actor, with ROUTE_<NAME>_ACTOR, holds the sidecar's own
	// client-credentials token, sent as actor_token.
	actor   *Cache
	cache   *ttlcache.Cache[exchanged]
	calls   flight.Group[exchanged]
	clock   clock.Clock
	timeout time.Duration
	log     *slog.Logger

	fetchOK, fetchErr prometheus.Counter
	fetchDur          prometheus.Observer

	mu        sync.Mutex
	refusedAt time.Time // the last exchanged token dropped for a 401
}

// exchanged is one exchange's outcome.
type exchanged struct {
	e   *entry
	err error
}

// get returns the token for calls on behalf of the caller whose token is
// subject.
func (x *exchanger) get(ctx context.Context, subject string) (*entry, error) {
	now := x.clock.Now()
	if v, ok := x.cache.Get(subject, now); ok {
		return v.e, v.err
	}
	v, err := x.calls.Do(ctx, subject, x.timeout, func(ctx context.Context) (exchanged, error) {
		if v, ok := x.cache.Get(subject, x.clock.Now()); ok { // finished while this caller arrived
			return v, nil
		}
		return x.exchange(ctx, subject), nil
	})
	if err != nil { // this caller's own context ended
		return nil, err
	}
	return v.e, v.err
}

// exchange asks the token endpoint and caches the outcome.
func (x *exchanger) exchange(ctx context.Context, subject string) exchanged {
	fetchedAt, began := x.clock.Now(), time.Now()
	params := url.Values{
		"grant_type":         {grantTokenExchange},
		"subject_token":      {subject},
		"subject_token_type": {tokenTypeAccess},
	}
	var v exchanged
	if x.actor != nil {
		actor, err := x.actor.Token(ctx)
		if err != nil {
			v.err = fmt.Errorf("outbound: the actor token of route %q: %w", x.route, err)
		} else {
			params.Set("actor_token", actor.AccessToken)
			params.Set("actor_token_type", tokenTypeAccess)
		}
	}
	if v.err == nil {
		var tok *oauth2.Token
		if tok, v.err = x.src.request(ctx, params); v.err == nil {
			v.e, v.err = newEntry(tok, fetchedAt, defaultLifetime)
		}
	}
	x.fetchDur.Observe(time.Since(began).Seconds())
	now := x.clock.Now()
	if v.err != nil {
		x.fetchErr.Inc()
		x.log.WarnContext(ctx, "token exchange failed", "error", v.err.Error())
		v.err = fmt.Errorf("%w for route %q: %w", errTokenUnavailable, x.route, v.err)
		x.cache.Put(subject, v, now.Add(exchangeFailureTTL), now)
		return v
	}
	x.fetchOK.Inc()
	lifetime := v.e.expiry.Sub(fetchedAt)
	x.cache.Put(subject, v, v.e.expiry.Add(-min(lifetime/10, 30*time.Second)), now)
	return v
}

// refused is told that the upstream answered 401 to tok, exchanged for
// subject; like Cache.refused, it reports whether a retry can use another
// token: a token already dropped or replaced (a call refused at the same
// time got there first) always can; the current one is dropped unless one
// was dropped less than refusalCooldown ago.
func (x *exchanger) refused(subject string, tok *oauth2.Token) bool {
	now := x.clock.Now()
	if v, ok := x.cache.Get(subject, now); !ok || v.e == nil || v.e.tok.AccessToken != tok.AccessToken {
		return true // already dropped or replaced
	}
	x.mu.Lock()
	recent := !x.refusedAt.IsZero() && now.Sub(x.refusedAt) < refusalCooldown
	if !recent {
		x.refusedAt = now
	}
	x.mu.Unlock()
	if recent {
		return false
	}
	x.cache.Delete(subject)
	return true
}

// tokens is where a call's token comes from, and where a refusal of it is
// reported: the route's Cache, or the exchange for the call's caller.
type tokens interface {
	get(ctx context.Context) (*entry, error)
	refused(tok *oauth2.Token) bool
}

// callerTokens are the tokens of a token-exchange route for one caller.
type callerTokens struct {
	x       *exchanger
	subject string
}

func (c callerTokens) get(ctx context.Context) (*entry, error) { return c.x.get(ctx, c.subject) }
func (c callerTokens) refused(tok *oauth2.Token) bool          { return c.x.refused(c.subject, tok) }
