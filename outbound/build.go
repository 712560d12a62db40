package outbound

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"time"

	"github.com/authsidecar/authsidecar/config"
	"github.com/authsidecar/authsidecar/metrics"
	"github.com/authsidecar/authsidecar/proxy"
)

// Outbound is the outbound direction: its routes, their token caches and
// the handler of the shared listener.
type Outbound struct {
	routes  []*Route
	handler http.Handler
}

// Handler serves the shared outbound listener (AUTHSIDECAR_OUTBOUND_LISTEN).
func (o *Outbound) Handler() http.Handler { return o.handler }

// Routes returns the routes in configuration order; a route with a Listen
// address wants a dedicated listener serving its Handler.
func (o *Outbound) Routes() []*Route { return o.routes }

// Start fetches every route's token in the background and keeps it fresh
// until ctx ends. It does not block.
func (o *Outbound) Start(ctx context.Context) {
	for _, r := range o.routes {
		r.cache.Start(ctx)
	}
}

// Options replace what Build would otherwise create, for tests.
type Options struct {
	// Now, After and AfterFunc replace the token caches' clock and timers;
	// see CacheOptions.
	Now       func() time.Time
	After     func(time.Duration) <-chan time.Time
	AfterFunc func(time.Duration, func()) (stop func() bool)
	// TokenClient sends discovery and token requests. Default: a client
	// bounded by AUTHSIDECAR_OUTBOUND_TOKEN_TIMEOUT that does not follow
	// redirects with the client's credentials.
	TokenClient *http.Client
	// Transport carries calls to upstreams. Default: proxy.NewTransport.
	Transport http.RoundTripper
	// DefaultLifetime, MinBackoff and MaxBackoff: see CacheOptions.
	DefaultLifetime time.Duration
	MinBackoff      time.Duration
	MaxBackoff      time.Duration
}

// Build creates the outbound direction from cfg. Nothing in it talks to
// the network: the token endpoint is found and asked at the first fetch.
func Build(ctx context.Context, cfg *config.Config, m *metrics.Metrics, logger *slog.Logger) (*Outbound, error) {
	return BuildWithOptions(ctx, cfg, m, logger, Options{})
}

// BuildWithOptions is Build with parts replaced by opts.
func BuildWithOptions(_ context.Context, cfg *config.Config, m *metrics.Metrics, logger *slog.Logger, opts Options) (*Outbound, error) {
	m, logger = orNewMetrics(m), orDiscard(logger)
	out := cfg.Outbound
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	auth, err := newClientAuth(out, now)
	if err != nil {
		return nil, err
	}
	tlsConf, err := outboundTLS(out)
	if err != nil {
		return nil, err
	}
	tokenClient, discoveryClient := opts.TokenClient, opts.TokenClient
	if tokenClient == nil {
		tokenClient, discoveryClient = newTokenClients(out.TokenTimeout, tlsConf)
	}
	endpoint := staticEndpoint(out.TokenURL)
	if out.TokenURL == "" {
		endpoint = discoveredEndpoint(out.Issuer, discoveryClient)
	}
	transport := opts.Transport
	if transport == nil {
		t := proxy.NewTransport(upstreamDialTimeout, upstreamHeaderTimeout)
		t.TLSClientConfig = tlsConf
		transport = t
	}
	b := routeBuilder{cfg: cfg, m: m, logger: logger, opts: opts, auth: auth,
		endpoint: endpoint, client: tokenClient, transport: transport, now: now}
	o := &Outbound{}
	for _, rc := range cfg.Routes {
		r, err := b.route(rc)
		if err != nil {
			return nil, err
		}
		o.routes = append(o.routes, r)
	}
	o.handler = NewHandler(o.routes, m, logger)
	return o, nil
}

// routeBuilder holds what every route shares.
type routeBuilder struct {
	cfg       *config.Config
	m         *metrics.Metrics
	logger    *slog.Logger
	opts      Options
	auth      clientAuth
	endpoint  *tokenEndpoint
	client    *http.Client
	transport http.RoundTripper
	now       func() time.Time
}

func (b routeBuilder) route(rc config.Route) (*Route, error) {
	target := rc.URL // a copy: the route owns it
	if (target.Scheme != "http" && target.Scheme != "https") || target.Host == "" {
		return nil, fmt.Errorf("outbound: %sURL: %q is not an http(s) URL", config.RoutePrefix(rc.Name), target.Redacted())
	}
	params := url.Values{}
	if rc.Audience != "" {
		params.Set("audience", rc.Audience)
	}
	if rc.Resource != "" {
		params.Set("resource", rc.Resource)
	}
	src := &clientCredentials{
		clientID: b.cfg.Outbound.ClientID, auth: b.auth, endpoint: b.endpoint,
		scopes: rc.Scopes, params: params, client: b.client,
		timeout: b.cfg.Outbound.TokenTimeout, now: b.now,
	}
	cache := NewCache(src, CacheOptions{
		Route: rc.Name, Metrics: b.m, Logger: b.logger, Now: b.now, After: b.opts.After, AfterFunc: b.opts.AfterFunc,
		DefaultLifetime: b.opts.DefaultLifetime, FetchTimeout: b.cfg.Outbound.TokenTimeout,
		MinBackoff: b.opts.MinBackoff, MaxBackoff: b.opts.MaxBackoff,
	})
	return NewRoute(rc.Name, &target, cache, RouteOptions{
		Listen: rc.Listen, Transport: b.transport, Metrics: b.m, Logger: b.logger,
	}), nil
}

// newTokenClients returns the client for token requests, which must not
// follow redirects (a 307 would resend client_secret_post's body to
// wherever it points), and the one for discovery, which may.
func newTokenClients(timeout time.Duration, tlsConf *tls.Config) (token, discovery *http.Client) {
	t := proxy.NewTransport(5*time.Second, timeout)
	t.TLSClientConfig = tlsConf
	token = &http.Client{
		Transport:     t,
		Timeout:       timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return token, &http.Client{Transport: t, Timeout: timeout}
}
