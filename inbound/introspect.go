package inbound

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/authsidecar/authsidecar/discovery"
	"github.com/authsidecar/authsidecar/internal/clock"
	"github.com/authsidecar/authsidecar/internal/flight"
	"github.com/authsidecar/authsidecar/internal/redact"
	"github.com/authsidecar/authsidecar/internal/reload"
	"github.com/authsidecar/authsidecar/internal/tracing"
	"github.com/authsidecar/authsidecar/internal/ttlcache"
	"github.com/authsidecar/authsidecar/metrics"
)

// errIntrospectionUnavailable means the introspection endpoint could not
// answer and no answer for the token is cached: the request fails closed.
var errIntrospectionUnavailable = errors.New("inbound: token introspection unavailable")

// IntrospectionOptions turn RFC 7662 introspection on.
type IntrospectionOptions struct {
	// URL is the introspection endpoint; "" takes the first issuer's
	// introspection_endpoint from discovery.
	URL      string
	ClientID string
	// Secret is the resource server's client secret; nil sends no client
	// credentials at all (an endpoint that needs none, such as Ory
	// Hydra's admin port).
	Secret *reload.File[string]
	// SecretInBody sends client_id and client_secret in the form
	// (client_secret_post) rather than in an HTTP Basic header.
	SecretInBody bool
	// All introspects JWTs too, after their local checks, so that a
	// revoked token is refused before it expires; otherwise only tokens
	// that are not JWTs are introspected.
	All bool
	// CacheTTL is how long an answer is reused; never past the token's exp.
	CacheTTL time.Duration
}

// introspectionCacheSize bounds the answers kept.
const introspectionCacheSize = 10000

// introspectionTimeout bounds one call.
const introspectionTimeout = 10 * time.Second

// maxIntrospectionsInFlight bounds the calls under way at once, one per
// distinct token: a caller sending junk tokens, each new, would otherwise
// open a call per request and pass its flood on to the authorization
// server. Requests over the bound get 503 with Retry-After.
const maxIntrospectionsInFlight = 64

// errIntrospectionBusy: as many calls as allowed are under way already.
var errIntrospectionBusy = fmt.Errorf("%w: %d calls already under way", errIntrospectionUnavailable, maxIntrospectionsInFlight)

// introspector asks the authorization server about tokens (RFC 7662),
// caching answers and sharing one call among concurrent requests with the
// same token.
type introspector struct {
	opts    IntrospectionOptions
	issuer  *discovery.Issuer // where the endpoint is found when URL is ""
	client  *discovery.Client
	clock   clock.Clock
	answers *ttlcache.Cache[*introspection]
	calls   flight.Group[*introspection]
	slots   chan struct{} // one per call under way
	results map[string]prometheus.Counter

	endpoint atomic.Pointer[string]
	// missing is why the endpoint is not known: discovery has not
	// answered yet, or answered without one.
	missing atomic.Pointer[error]
}

// introspection is an RFC 7662 answer: "active" and the same claims a JWT
// carries, plus when the cached answer stops being reused.
type introspection struct {
	Active bool
	claims
	// tokenType and tokenUse say what kind of token it is: RFC 7662's
	// token_type is the OAuth type ("Bearer"), but providers also write
	// "refresh_token" there, and Ory Hydra writes token_use.
	tokenType, tokenUse string
	raw                 []byte
	until               time.Time
}

// parseIntrospection decodes an answer. "active" must be exactly true.
func parseIntrospection(body []byte) (*introspection, error) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(body, &fields); err != nil {
		return nil, err
	}
	a := &introspection{raw: body, Active: string(fields["active"]) == "true"}
	if err := a.claims.UnmarshalJSON(body); err != nil {
		return nil, err
	}
	// In a fixed order, as the claims are: an answer with both wrong is
	// always refused naming the same one.
	for _, f := range []struct {
		name string
		dst  *string
	}{{"token_type", &a.tokenType}, {"token_use", &a.tokenUse}} {
		if v, ok := fields[f.name]; ok && json.Unmarshal(v, f.dst) != nil {
			return nil, fmt.Errorf("%s is not a string", f.name)
		}
	}
	return a, nil
}

// refreshToken reports whether the answer is about a refresh token.
func (a *introspection) refreshToken() bool {
	return strings.EqualFold(a.tokenType, "refresh_token") || strings.EqualFold(a.tokenUse, "refresh_token")
}

func newIntrospector(opts IntrospectionOptions, issuer *discovery.Issuer, client *discovery.Client,
	c clock.Clock, m *metrics.Metrics) *introspector {
	in := &introspector{opts: opts, issuer: issuer, client: client, clock: c,
		answers: ttlcache.New[*introspection](introspectionCacheSize), results: map[string]prometheus.Counter{},
		slots: make(chan struct{}, maxIntrospectionsInFlight)}
	for _, r := range []string{metrics.IntrospectionActive, metrics.IntrospectionInactive, metrics.IntrospectionError} {
		in.results[r] = m.IntrospectionRequests.WithLabelValues(r)
	}
	if opts.URL != "" {
		in.endpoint.Store(&opts.URL)
	} else {
		err := fmt.Errorf("inbound: the introspection endpoint of %q is not known yet", issuer.URL())
		in.missing.Store(&err)
	}
	return in
}

// ready reports why introspection cannot work now, if it cannot.
func (in *introspector) ready() error {
	if in.endpoint.Load() != nil {
		return nil
	}
	return *in.missing.Load()
}

// run finds the endpoint by discovery, retrying with backoff until the
// issuer answers. An issuer that answers without one is not retried: that
// is the configuration's mistake, and ready says so.
func (in *introspector) run(ctx context.Context) {
	for retry := time.Second; in.endpoint.Load() == nil; retry = min(2*retry, 30*time.Second) {
		if err := in.findEndpoint(ctx); err == nil || errors.Is(err, errNoIntrospectionEndpoint) {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-in.clock.After(jitter(retry)):
		}
	}
}

var errNoIntrospectionEndpoint = errors.New("lists no introspection_endpoint")

func (in *introspector) findEndpoint(ctx context.Context) error {
	md, err := in.issuer.Metadata(ctx)
	if err != nil {
		err = fmt.Errorf("inbound: finding the introspection endpoint: %w", err)
		in.missing.Store(&err)
		return err
	}
	if md.IntrospectionEndpoint == "" {
		err := fmt.Errorf("inbound: issuer %q %w; set AUTHSIDECAR_INBOUND_INTROSPECTION_URL", in.issuer.URL(), errNoIntrospectionEndpoint)
		in.missing.Store(&err)
		return err
	}
	in.endpoint.Store(&md.IntrospectionEndpoint)
	return nil
}

// introspect returns the answer for raw, from the cache when it is fresh.
func (in *introspector) introspect(ctx context.Context, raw string) (*introspection, error) {
	if a, ok := in.answers.Get(raw, in.clock.Now()); ok {
		return a, nil
	}
	return in.calls.Do(ctx, raw, introspectionTimeout, func(ctx context.Context) (*introspection, error) {
		select {
		case in.slots <- struct{}{}:
			defer func() { <-in.slots }()
		default:
			return nil, errIntrospectionBusy
		}
		a, err := in.call(ctx, raw)
		if err != nil {
			in.results[metrics.IntrospectionError].Inc()
			return nil, fmt.Errorf("%w: %v", errIntrospectionUnavailable, err)
		}
		if a.Active {
			in.results[metrics.IntrospectionActive].Inc()
		} else {
			in.results[metrics.IntrospectionInactive].Inc()
		}
		in.store(raw, a)
		return a, nil
	})
}

func (in *introspector) store(raw string, a *introspection) {
	now := in.clock.Now()
	a.until = now.Add(in.opts.CacheTTL)
	if a.Expiry != nil && a.Expiry.Before(a.until) {
		a.until = a.Expiry.Time
	}
	in.answers.Put(raw, a, a.until, now)
}

func (in *introspector) call(ctx context.Context, raw string) (*introspection, error) {
	endpoint := in.endpoint.Load()
	if endpoint == nil {
		// Run may still be backing off; the issuer's metadata, once had,
		// is kept, so this asks the network only until it answers.
		if err := in.findEndpoint(ctx); err != nil {
			return nil, err
		}
		endpoint = in.endpoint.Load()
	}
	form := url.Values{"token": {raw}, "token_type_hint": {"access_token"}}
	var secret string
	if in.opts.Secret != nil {
		secret = in.opts.Secret.Fresh()
		if in.opts.SecretInBody {
			form.Set("client_id", in.opts.ClientID)
			form.Set("client_secret", secret)
		}
	}
	req, err := http.NewRequestWithContext(tracing.WithOperation(ctx, tracing.OpIntrospection), http.MethodPost, *endpoint, strings.NewReader(form.Encode()))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", redact.URL(*endpoint), err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	if in.opts.Secret != nil && !in.opts.SecretInBody {
		// RFC 6749 2.3.1: both are form-encoded before they are joined.
		req.SetBasicAuth(url.QueryEscape(in.opts.ClientID), url.QueryEscape(secret))
	}
	resp, err := in.client.HTTP.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", redact.URL(*endpoint), withoutURL(err))
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil || resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: status %d", redact.URL(*endpoint), resp.StatusCode)
	}
	a, err := parseIntrospection(body)
	if err != nil {
		return nil, fmt.Errorf("%s: bad answer: %v", redact.URL(*endpoint), err)
	}
	return a, nil
}

// withoutURL unwraps a *url.Error, whose text repeats the whole URL.
func withoutURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}
