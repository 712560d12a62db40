package outbound

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/authsidecar/authsidecar/discovery"
	"github.com/authsidecar/authsidecar/internal/clock"
	"github.com/authsidecar/authsidecar/internal/handoff"
	"github.com/authsidecar/authsidecar/internal/redact"
	"github.com/authsidecar/authsidecar/internal/reload"
	"github.com/authsidecar/authsidecar/internal/tracing"
	"github.com/authsidecar/authsidecar/internal/ttlcache"
	"github.com/authsidecar/authsidecar/metrics"
	"github.com/authsidecar/authsidecar/proxy"
)

// Options configure the outbound direction. config.Load builds them from
// the environment; the fields after Metrics are what the program, or a
// test, supplies.
type Options struct {
	Routes []RouteOptions
	// ClientID identifies the sidecar's service at the token endpoint.
	ClientID string
	// ClientAuth is how token requests authenticate the client.
	ClientAuth ClientAuth
	// TokenURL is the token endpoint; when it is "", the endpoint is found
	// by discovery on Issuer at the first fetch.
	TokenURL string
	Issuer   string
	// TokenTimeout bounds one token request.
	TokenTimeout time.Duration
	// TLS is for upstreams and the token endpoint: trusted CAs and the
	// client certificate. nil: the system roots and no certificate.
	TLS *tls.Config
	// RootCAs, when set, are the trusted CAs in place of TLS.RootCAs,
	// followed as the file changes.
	RootCAs *reload.File[*x509.CertPool]
	// AllowInsecureHTTP accepts a plain-HTTP token endpoint learnt from
	// discovery on a host that is not loopback; see discovery.Client.
	AllowInsecureHTTP bool
	// BodyIdleTimeout ends a call whose request body the app stops
	// sending for longer; 0: no bound.
	BodyIdleTimeout time.Duration
	// ReadyRequiresTokens makes Checks report every route without a
	// valid token, for /readyz.
	ReadyRequiresTokens bool
	// Handoff holds the callers' tokens that inbound verified, for the
	// token-exchange routes; required when there is one.
	Handoff *handoff.Store
	// DPoP, when set, is the key tokens are bound to (RFC 9449): every
	// token request carries a proof, and every call with a DPoP-bound
	// token a fresh one.
	DPoP *DPoPKey

	// AccessLog logs one line per call at info level.
	AccessLog bool

	Metrics *metrics.Metrics // nil: a registry of its own
	Logger  *slog.Logger     // nil: discard
	Clock   clock.Clock      // nil: the real clock
	// Tracer traces calls and token requests; nil: off.
	Tracer *tracing.Tracing
	// TokenClient sends discovery and token requests. nil: a client
	// bounded by TokenTimeout that does not follow redirects with the
	// client's credentials.
	TokenClient *http.Client
	// Transport carries calls to upstreams. nil: proxy.NewTransport for
	// each route's protocol.
	Transport http.RoundTripper
	// defaultLifetime, MinBackoff and MaxBackoff: see CacheOptions.
	defaultLifetime, MinBackoff, MaxBackoff time.Duration
}

// RouteOptions are one route: an upstream the app reaches through the
// outbound listener with its own token.
type RouteOptions struct {
	// Name is the route's name from AUTHSIDECAR_OUTBOUND_ROUTES.
	Name string
	// URL is the upstream's base URL.
	URL *url.URL
	// Audience, Resource (RFC 8707) and Scopes go into the token request.
	Audience, Resource string
	Scopes             []string
	// Listen is the address of the route's dedicated listener, "" for none.
	Listen string
	// Protocol is how calls go to the upstream.
	Protocol proxy.Protocol
	// Timeout bounds the wait for the upstream's response headers (past it
	// 504 upstream_timeout); 0: no bound.
	Timeout time.Duration
	// Grant is how the route gets its tokens.
	Grant Grant
	// Actor, with GrantTokenExchange, sends the route's own
	// client-credentials token as actor_token.
	Actor bool
}

// Grant is how a route gets its tokens.
type Grant int

const (
	// GrantClientCredentials: one token per route, the service's own.
	GrantClientCredentials Grant = iota
	// GrantTokenExchange: per caller, the caller's token exchanged
	// (RFC 8693), to call on its behalf.
	GrantTokenExchange
)

// String is the grant as AUTHSIDECAR_ROUTE_<NAME>_GRANT spells it.
func (g Grant) String() string { return [...]string{"client_credentials", "token-exchange"}[g] }

// Outbound is the outbound direction: its routes, their token caches and
// the handler of the shared listener.
type Outbound struct {
	routes  []*Route
	handler http.Handler
	// readyRequiresTokens: see Options.ReadyRequiresTokens.
	readyRequiresTokens bool
}

// New builds the outbound direction from opts. Nothing in it talks to the
// network: the token endpoint is found and asked at the first fetch or
// when Run starts.
func New(opts Options) (*Outbound, error) {
	if err := opts.check(); err != nil {
		return nil, err
	}
	if opts.Metrics == nil {
		opts.Metrics = metrics.New(prometheus.NewRegistry(), "")
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	opts.Clock = clock.OrReal(opts.Clock)
	if opts.TokenTimeout <= 0 {
		opts.TokenTimeout = defaultFetchTimeout
	}
	tokenClient, discoveryClient := opts.TokenClient, opts.TokenClient
	if tokenClient == nil {
		tokenClient, discoveryClient = newTokenClients(opts.TokenTimeout, opts.TLS, opts.RootCAs)
	}
	if opts.Tracer != nil {
		tokenClient, discoveryClient = traced(opts.Tracer, tokenClient), traced(opts.Tracer, discoveryClient)
	}
	var dpop *dpopSigner
	if opts.DPoP != nil {
		var err error
		if dpop, err = newDPoPSigner(opts.DPoP, opts.Clock); err != nil {
			return nil, err
		}
		withProofs := *tokenClient
		withProofs.Transport = &dpopTokenTransport{base: transportOf(tokenClient), d: dpop}
		tokenClient = &withProofs
	}
	obs := &observer{log: opts.Logger, accessLog: opts.AccessLog, tracer: opts.Tracer}
	endpoint := func(context.Context) (string, error) { return opts.TokenURL, nil }
	if opts.TokenURL == "" {
		idp := &discovery.Client{HTTP: discoveryClient, AllowInsecureHTTP: opts.AllowInsecureHTTP}
		endpoint = discoveredEndpoint(idp.Issuer(opts.Issuer))
	}
	o := &Outbound{readyRequiresTokens: opts.ReadyRequiresTokens}
	for _, rc := range opts.Routes {
		transport := opts.Transport
		if transport == nil {
			transport = proxy.NewTransport(proxy.TransportOptions{
				Protocol: rc.Protocol, DialTimeout: upstreamDialTimeout, ResponseHeaderTimeout: rc.Timeout,
				TLS: opts.TLS, RootCAs: opts.RootCAs,
			})
		}
		src := &clientCredentials{
			clientID: opts.ClientID, auth: opts.ClientAuth, endpoint: endpoint,
			scopes: rc.Scopes, params: tokenParams(rc), client: tokenClient,
			timeout: opts.TokenTimeout, clock: opts.Clock, dpop: dpop != nil,
		}
		var cache *Cache
		if rc.Grant != GrantTokenExchange || rc.Actor {
			cache = NewCache(src, CacheOptions{
				Route: rc.Name, Metrics: opts.Metrics, Logger: opts.Logger, Clock: opts.Clock,
				defaultLifetime: opts.defaultLifetime, FetchTimeout: opts.TokenTimeout,
				MinBackoff: opts.MinBackoff, MaxBackoff: opts.MaxBackoff,
			})
		}
		r := newRoute(rc, cache, transport, opts.Metrics, opts.Logger)
		r.bodyIdle, r.obs, r.dpop = opts.BodyIdleTimeout, obs, dpop
		r.retry.dpop = dpop
		if rc.Grant == GrantTokenExchange {
			r.exchange, r.handoff = newExchanger(rc.Name, src, cache, opts), opts.Handoff
		}
		o.routes = append(o.routes, r)
	}
	o.handler = newSharedHandler(o.routes, opts.Metrics, opts.Logger, obs)
	return o, nil
}

// newExchanger returns the token exchange of route, with src's client
// and parameters, and actor's tokens as actor_token when actor is set.
func newExchanger(route string, src *clientCredentials, actor *Cache, opts Options) *exchanger {
	m := opts.Metrics
	return &exchanger{
		route: route, src: src, actor: actor, cache: ttlcache.New[exchanged](exchangeCacheSize),
		clock: opts.Clock, timeout: opts.TokenTimeout, log: opts.Logger.With("route", route),
		fetchOK:  m.TokenFetches.WithLabelValues(route, "success"),
		fetchErr: m.TokenFetches.WithLabelValues(route, "error"),
		fetchDur: m.TokenFetchDuration.WithLabelValues(route),
	}
}

func (o *Options) check() error {
	var errs []error
	if len(o.Routes) == 0 || o.ClientID == "" || o.ClientAuth == nil {
		errs = append(errs, errors.New("outbound: routes, a client id and client authentication are required"))
	}
	if (o.TokenURL == "") == (o.Issuer == "") {
		errs = append(errs, errors.New("outbound: want a token URL or an issuer, not both or neither"))
	}
	for _, r := range o.Routes {
		if r.Grant == GrantTokenExchange && o.Handoff == nil {
			errs = append(errs, fmt.Errorf("outbound: route %q: token exchange needs the callers' tokens from inbound (Options.Handoff)", r.Name))
		}
		if r.URL == nil || (r.URL.Scheme != "http" && r.URL.Scheme != "https") || r.URL.Host == "" {
			errs = append(errs, fmt.Errorf("outbound: route %q: the upstream URL is not an http(s) URL", r.Name))
		}
	}
	return errors.Join(errs...)
}

func tokenParams(rc RouteOptions) url.Values {
	params := url.Values{}
	if rc.Audience != "" {
		params.Set("audience", rc.Audience)
	}
	if rc.Resource != "" {
		params.Set("resource", rc.Resource)
	}
	return params
}

// Handler serves the shared outbound listener (AUTHSIDECAR_OUTBOUND_LISTEN).
func (o *Outbound) Handler() http.Handler { return o.handler }

// Routes returns the routes in configuration order; a route with a Listen
// address wants a dedicated listener serving its Handler.
func (o *Outbound) Routes() []*Route { return o.routes }

// Checks are what /readyz waits for: with ReadyRequiresTokens, a valid
// token for each route, by "route <name>"; otherwise nothing, since a
// route without a token answers 503 and the app can retry.
func (o *Outbound) Checks() map[string]func() error {
	checks := map[string]func() error{}
	if o.readyRequiresTokens {
		for _, r := range o.routes {
			if r.exchange == nil { // a token-exchange route has tokens only for callers
				checks["route "+r.Name] = r.cache.ready
			}
		}
	}
	return checks
}

// Run fetches every route's token and keeps it fresh until ctx ends. It
// blocks until then.
func (o *Outbound) Run(ctx context.Context) {
	var wg sync.WaitGroup
	for _, r := range o.routes {
		if r.cache != nil {
			wg.Go(func() { r.cache.run(ctx) })
		}
	}
	wg.Wait()
}

// discoveredEndpoint finds the token endpoint from the issuer's metadata
// at the first fetch, and again at the next if that failed, so that
// start-up never waits for the identity provider. All routes share it, so
// the issuer is asked once.
func discoveredEndpoint(iss *discovery.Issuer) func(context.Context) (string, error) {
	return func(ctx context.Context) (string, error) {
		md, err := iss.Metadata(ctx)
		if err != nil {
			return "", fmt.Errorf("outbound: finding the token endpoint of %q: %w", iss.URL(), err)
		}
		if md.TokenEndpoint == "" {
			return "", fmt.Errorf("outbound: issuer %q lists no token_endpoint", iss.URL())
		}
		return md.TokenEndpoint, nil
	}
}

// newTokenClients returns the client for token requests, which must not
// follow redirects (a 307 would resend client_secret_post's body to
// wherever it points), and the one for discovery, which may.
func newTokenClients(timeout time.Duration, tlsConf *tls.Config, roots *reload.File[*x509.CertPool]) (token, discovery *http.Client) {
	t := proxy.NewTransport(proxy.TransportOptions{DialTimeout: 5 * time.Second, ResponseHeaderTimeout: timeout, TLS: tlsConf, RootCAs: roots})
	token = &http.Client{
		Transport:     t,
		Timeout:       timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return token, &http.Client{Transport: t, Timeout: timeout}
}

// transportOf is c's transport, http.DefaultTransport when it has none.
func transportOf(c *http.Client) http.RoundTripper {
	if c.Transport != nil {
		return c.Transport
	}
	return http.DefaultTransport
}

// traced is c with a span around each request.
func traced(t *tracing.Tracing, c *http.Client) *http.Client {
	traced := *c
	traced.Transport = t.Transport(c.Transport)
	return &traced
}

// redactURL is redact.URL, for error messages.
func redactURL(s string) string { return redact.URL(s) }
