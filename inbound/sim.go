package inbound

import (
	"context"
	"log/slog"
	"net/http"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/authsidecar/authsidecar/discovery"
	"github.com/authsidecar/authsidecar/internal/clock"
	"github.com/authsidecar/authsidecar/metrics"
)

// SimKeySetOptions configure a key set built with NewSimKeySet.
type SimKeySetOptions struct {
	// Issuer is the issuer URL; its keys come from its discovery.
	Issuer string
	// HTTP talks to the identity provider (in a simulation, a client
	// whose transport answers in memory).
	HTTP *http.Client
	// Refresh is AUTHSIDECAR_INBOUND_JWKS_REFRESH_INTERVAL; 0: 10 min.
	Refresh time.Duration
	// Algorithms are the accepted signature algorithms; nil: ES256, RS256.
	Algorithms []string
	Clock      clock.Clock      // nil: the real clock
	Metrics    *metrics.Metrics // nil: a registry of its own
}

// SimKeySet is one issuer's key set, built and refreshed exactly as the
// sidecar's inbound direction builds and refreshes it (discovery, JWKS,
// periodic refresh, start-up backoff, unknown-kid cool-down), for
// simulations: bench/fleetsim runs thousands of them on a virtual clock
// against a simulated identity provider to see what a fleet asks of it.
// The sidecar itself never uses it.
type SimKeySet struct{ ks *keySet }

// NewSimKeySet returns a key set for opts. Nothing is fetched until Run
// or VerifySignature.
func NewSimKeySet(opts SimKeySetOptions) *SimKeySet {
	m := opts.Metrics
	if m == nil {
		m = metrics.New(prometheus.NewRegistry(), "")
	}
	interval := opts.Refresh
	if interval <= 0 {
		interval = 10 * time.Minute
	}
	names := opts.Algorithms
	if names == nil {
		names = []string{"ES256", "RS256"}
	}
	algs := make([]jose.SignatureAlgorithm, len(names))
	for i, a := range names {
		algs[i] = jose.SignatureAlgorithm(a)
	}
	idp := &discovery.Client{HTTP: opts.HTTP}
	return &SimKeySet{ks: &keySet{
		issuer: idp.Issuer(opts.Issuer), client: idp, algs: algs,
		interval: interval, clock: clock.OrReal(opts.Clock), log: slog.New(slog.DiscardHandler),
		fetchOK:  m.JWKSRefreshes.WithLabelValues(opts.Issuer, "success"),
		fetchErr: m.JWKSRefreshes.WithLabelValues(opts.Issuer, "error"),
	}}
}

// Run loads the keys and keeps them fresh until ctx ends, as Inbound.Run
// does for each issuer.
func (s *SimKeySet) Run(ctx context.Context) { s.ks.run(ctx) }

// Ready reports whether keys are loaded, as /readyz asks.
func (s *SimKeySet) Ready() error { return s.ks.ready() }

// VerifySignature checks jwt's signature as a request does: a kid not
// seen before triggers a refresh, subject to the unknown-kid cool-down.
func (s *SimKeySet) VerifySignature(ctx context.Context, jwt string) ([]byte, error) {
	return s.ks.VerifySignature(ctx, jwt)
}
