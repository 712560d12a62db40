package inbound

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/semaphore"

	"github.com/authsidecar/authsidecar/discovery"
	"github.com/authsidecar/authsidecar/internal/clock"
	"github.com/authsidecar/authsidecar/internal/handoff"
	"github.com/authsidecar/authsidecar/internal/reload"
	"github.com/authsidecar/authsidecar/internal/tracing"
	"github.com/authsidecar/authsidecar/internal/ttlcache"
	"github.com/authsidecar/authsidecar/metrics"
	"github.com/authsidecar/authsidecar/proxy"
	"github.com/authsidecar/authsidecar/rules"
)

// Options configure the inbound direction. config.Load builds them from
// the environment; the fields after Metrics are what the program, or a
// test, supplies.
type Options struct {
	// Issuers are the trusted issuer URLs. Keys come from discovery, or
	// from JWKSURL when it is set (one issuer only).
	Issuers []string
	JWKSURL string
	// JWKSRefresh is how often keys are fetched while all goes well.
	JWKSRefresh time.Duration
	// Audiences: a token's aud must hold at least one.
	Audiences []string
	// Algorithms allowed for signatures; "none" and HMAC are refused.
	Algorithms []string
	// ClockSkew is the leeway on exp, nbf and iat.
	ClockSkew time.Duration
	// TokenCacheSize bounds the verified-token cache; 0 turns it off.
	TokenCacheSize int
	// Introspection, when set, turns RFC 7662 introspection on.
	Introspection *IntrospectionOptions
	// Rules decide what each request needs; nil protects every path and
	// asks for nothing more than a valid token. config.Load gives a set
	// with the global settings as its trailing rules (rules.Set.WithDefaults).
	Rules *reload.File[*rules.Set]
	// ClientCerts is what is asked of TLS client certificates (mTLS).
	ClientCerts ClientCertPolicy
	// Upstream is the app.
	Upstream *url.URL
	// UpstreamProtocol is how requests go to the app.
	UpstreamProtocol proxy.Protocol
	// UpstreamTimeout bounds the wait for the app's response headers
	// (past it 504 upstream_timeout); 0: no bound.
	UpstreamTimeout time.Duration
	// ForwardToken keeps the Authorization header for the app.
	ForwardToken bool
	// AccessLog logs one line per request at info level.
	AccessLog bool
	// RequireATJWT accepts only JWTs whose typ is at+jwt (RFC 9068).
	RequireATJWT bool
	// AllowEncodedSlashes decodes "%2F" and "%5C" in request paths, for
	// the rules and the app alike, instead of refusing them with 400.
	AllowEncodedSlashes bool
	// MethodOverrideBodies are the kinds of POST bodies read for a method
	// override; nil: forms, not JSON.
	MethodOverrideBodies *OverrideBodies
	// MaxFormBytes bounds how much of a POST's body is read for a
	// method override ("_method") when one could change the judgement;
	// 0: DefaultMaxFormBytes. A larger body is judged for every method.
	MaxFormBytes int64
	// BodyIdleTimeout ends a request whose body the caller stops sending
	// for longer; 0: no bound.
	BodyIdleTimeout time.Duration
	// RequireDPoP refuses tokens that are not DPoP-bound (RFC 9449).
	RequireDPoP bool
	// TrustForwarded takes the scheme and host a DPoP proof's htu must
	// name from X-Forwarded-Proto and X-Forwarded-Host.
	TrustForwarded bool
	// Resource, when set, is the resource identifier: inbound serves its
	// protected-resource metadata (RFC 9728) and names it in challenges.
	Resource string
	// AllowInsecureHTTP accepts plain-HTTP identity-provider endpoints
	// learnt from discovery on hosts that are not loopback; see
	// discovery.Client.
	AllowInsecureHTTP bool

	Metrics *metrics.Metrics // nil: a registry of its own
	Logger  *slog.Logger     // nil: discard
	Clock   clock.Clock      // nil: the real clock
	// Tracer traces requests and identity-provider calls; nil: off.
	Tracer *tracing.Tracing
	// Handoff, when set, keeps each verified caller's token for token
	// exchange and gives the app its handle in X-Auth-Context.
	Handoff *handoff.Store
	// IdentityClient talks to the identity providers; nil: a client
	// bounded to 10 s that ignores proxy settings in the environment.
	IdentityClient *http.Client
	// Transport carries requests to the app; nil: proxy.NewTransport for
	// UpstreamProtocol.
	Transport http.RoundTripper
}

// Inbound is the inbound direction: the key sets of the trusted issuers,
// the verifier, and the handler in front of the app.
type Inbound struct {
	keySets []*keySet
	intro   *introspector
	handler *handler
}

// New builds the inbound direction from opts. Nothing in it talks to the
// network; Run loads the keys.
func New(opts Options) (*Inbound, error) {
	if err := opts.check(); err != nil {
		return nil, err
	}
	m, logger, clk := opts.Metrics, opts.Logger, clock.OrReal(opts.Clock)
	if m == nil {
		m = metrics.New(prometheus.NewRegistry(), "")
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	hc := opts.IdentityClient
	if hc == nil {
		hc = &http.Client{Timeout: 10 * time.Second, Transport: proxy.NewTransport(proxy.TransportOptions{DialTimeout: 5 * time.Second, ResponseHeaderTimeout: 10 * time.Second})}
	}
	if opts.Tracer != nil {
		traced := *hc
		traced.Transport = opts.Tracer.Transport(hc.Transport)
		hc = &traced
	}
	idp := &discovery.Client{HTTP: hc, AllowInsecureHTTP: opts.AllowInsecureHTTP}
	m.InitInbound()
	in := &Inbound{}
	v := in.newVerifier(opts, idp, clk, m, logger)
	ruleSet := opts.Rules
	if ruleSet == nil {
		ruleSet = reload.Static[*rules.Set](nil)
	}
	v.requireATJWT = opts.RequireATJWT
	v.handoff = opts.Handoff
	dpop := &dpopChecker{
		algNames: strings.Join(opts.Algorithms, " "), skew: opts.ClockSkew, clock: clk,
		seen: newReplayCache(dpopReplayEntries, dpopReplayPerKey), require: opts.RequireDPoP, trustForwarded: opts.TrustForwarded,
		encodedSlashes: opts.AllowEncodedSlashes,
	}
	if u, err := url.Parse(opts.Resource); err == nil && opts.Resource != "" {
		dpop.origin = &addressed{scheme: u.Scheme, host: u.Host}
	}
	for _, a := range opts.Algorithms {
		dpop.algs = append(dpop.algs, jose.SignatureAlgorithm(a))
	}
	maxForm := cmp.Or(opts.MaxFormBytes, DefaultMaxFormBytes)
	in.handler = newHandler(&handler{
		verifier: v, rules: ruleSet, clientCerts: opts.ClientCerts, forwardToken: opts.ForwardToken,
		encodedSlashes: opts.AllowEncodedSlashes, bodyIdle: opts.BodyIdleTimeout, maxFormBytes: maxForm, formBudget: semaphore.NewWeighted(formBudgetBodies * (maxForm + 1)),
		overrideBodies: *cmp.Or(opts.MethodOverrideBodies, &OverrideBodies{Forms: true}), accessLog: opts.AccessLog, log: logger,
		tracer: opts.Tracer, dpop: dpop,
		resource: newResourceMetadata(opts.Resource, opts.Issuers, opts.Algorithms, opts.RequireDPoP),
	}, m)
	transport := opts.Transport
	if transport == nil {
		transport = proxy.NewTransport(proxy.TransportOptions{Protocol: opts.UpstreamProtocol, DialTimeout: 5 * time.Second, ResponseHeaderTimeout: opts.UpstreamTimeout})
	}
	in.handler.proxy = proxy.NewReverseProxy(opts.Upstream, proxy.ReverseProxyOptions{
		Transport: transport, KeepHost: true, Logger: logger,
	})
	return in, nil
}

func (o *Options) check() error {
	var errs []error
	if len(o.Issuers) == 0 || len(o.Audiences) == 0 || len(o.Algorithms) == 0 || o.Upstream == nil {
		errs = append(errs, errors.New("inbound: issuers, audiences, algorithms and the upstream are required"))
	}
	if o.JWKSURL != "" && len(o.Issuers) > 1 {
		errs = append(errs, errors.New("inbound: a JWKS URL serves one issuer only"))
	}
	for _, alg := range o.Algorithms {
		if alg == "none" || strings.HasPrefix(alg, "HS") {
			errs = append(errs, fmt.Errorf("inbound: algorithm %q must never be accepted", alg))
		}
	}
	return errors.Join(errs...)
}

// newVerifier builds a key set per trusted issuer, and the introspector
// when introspection is on, and the verifier over them.
func (in *Inbound) newVerifier(opts Options, idp *discovery.Client, clk clock.Clock, m *metrics.Metrics, logger *slog.Logger) *verifier {
	v := &verifier{
		issuers: map[string]*trustedIssuer{}, audiences: opts.Audiences, algs: map[string]bool{},
		skew: opts.ClockSkew, clock: clk, cache: ttlcache.New[*cacheEntry](opts.TokenCacheSize),
		hits:   m.TokenCacheRequests.WithLabelValues("hit"),
		misses: m.TokenCacheRequests.WithLabelValues("miss"),
	}
	algs := make([]jose.SignatureAlgorithm, len(opts.Algorithms))
	for i, a := range opts.Algorithms {
		algs[i] = jose.SignatureAlgorithm(a)
		v.algs[a] = true
	}
	interval := opts.JWKSRefresh
	if interval <= 0 {
		interval = 10 * time.Minute
	}
	for _, iss := range opts.Issuers {
		ks := &keySet{
			issuer: idp.Issuer(iss), jwksURL: opts.JWKSURL, client: idp, algs: algs,
			interval: interval, clock: clk, log: logger,
			fetchOK:  m.JWKSRefreshes.WithLabelValues(iss, "success"),
			fetchErr: m.JWKSRefreshes.WithLabelValues(iss, "error"),
		}
		in.keySets = append(in.keySets, ks)
		v.addIssuer(ks, opts.Algorithms)
	}
	if io := opts.Introspection; io != nil {
		in.intro = newIntrospector(*io, in.keySets[0].issuer, idp, clk, m)
		v.intro, v.introAll = in.intro, io.All
	}
	return v
}

// Handler serves the inbound listener.
func (in *Inbound) Handler() http.Handler { return in.handler }

// Run loads every issuer's keys, retrying until they load, and keeps them
// fresh until ctx ends; with introspection on and no URL configured, it
// also finds the endpoint. It blocks until ctx ends.
func (in *Inbound) Run(ctx context.Context) {
	var wg sync.WaitGroup
	for _, ks := range in.keySets {
		wg.Go(func() { ks.run(ctx) })
	}
	if in.intro != nil {
		wg.Go(func() { in.intro.run(ctx) })
	}
	wg.Wait()
}

// LoadKeys fetches every issuer's keys once, now.
func (in *Inbound) LoadKeys(ctx context.Context) error {
	var errs []error
	for _, ks := range in.keySets {
		errs = append(errs, ks.refresh(ctx))
	}
	return errors.Join(errs...)
}

// Checks are what /readyz waits for: each issuer's keys, and the
// introspection endpoint when it comes from discovery. A check's error is
// shown to whoever asks, so it never carries a secret.
func (in *Inbound) Checks() map[string]func() error {
	checks := map[string]func() error{}
	for _, ks := range in.keySets {
		checks["issuer "+ks.issuerURL()] = ks.ready
	}
	if in.intro != nil {
		checks["introspection"] = in.intro.ready
	}
	return checks
}
