package metrics

import (
	"runtime"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Inbound request results, the values of the "result" label.
const (
	ResultAllowed       = "allowed"
	ResultPublic        = "public"
	ResultUnauthn       = "unauthenticated"
	ResultForbidden     = "forbidden"
	ResultUnavailable   = "unavailable"
	ResultUpstreamError = "upstream_error"
	// ResultBadRequest: refused before any token check, for what the
	// request is rather than who sent it (an odd request-target, an
	// encoded slash, CONNECT or TRACE).
	ResultBadRequest = "bad_request"
)

// Introspection results, the values of the "result" label of
// authsidecar_introspection_requests_total.
const (
	IntrospectionActive   = "active"
	IntrospectionInactive = "inactive"
	IntrospectionError    = "error"
)

// Metrics holds every collector authsidecar updates. Every part of the
// program gets this struct and takes the series it needs from it once, at
// construction, so the request path never hashes label values.
type Metrics struct {
	InboundRequests       *prometheus.CounterVec   // result
	InboundDuration       *prometheus.HistogramVec // result
	TokenRejections       *prometheus.CounterVec   // reason
	TokenCacheRequests    *prometheus.CounterVec   // result: hit, miss
	OutboundRequests      *prometheus.CounterVec   // route, code
	OutboundDuration      *prometheus.HistogramVec // route
	TokenFetches          *prometheus.CounterVec   // route, result
	TokenFetchDuration    *prometheus.HistogramVec // route
	TokenExpiry           *prometheus.GaugeVec     // route
	JWKSRefreshes         *prometheus.CounterVec   // issuer, result
	IntrospectionRequests *prometheus.CounterVec   // result
	ConfigReloads         *prometheus.CounterVec   // file, result: success, error
	ConfigReloadSuccess   *prometheus.GaugeVec     // file
	buildInfo             *prometheus.GaugeVec
}

// latencyBuckets suit a proxy hop: most requests take well under a
// millisecond of our own time, the app's time is added on top.
func latencyBuckets() []float64 {
	return []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}
}

// New creates the collectors and registers them, with authsidecar_build_info
// set to version, on reg.
func New(reg prometheus.Registerer, version string) *Metrics {
	m := &Metrics{
		InboundRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "authsidecar_inbound_requests_total",
			Help: "Inbound requests by result.",
		}, []string{"result"}),
		InboundDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "authsidecar_inbound_request_duration_seconds",
			Help:    "Time from receiving an inbound request to the end of its response, by result.",
			Buckets: latencyBuckets(),
		}, []string{"result"}),
		TokenRejections: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "authsidecar_inbound_token_rejections_total",
			Help: "Inbound requests refused, by reason.",
		}, []string{"reason"}),
		TokenCacheRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "authsidecar_inbound_token_cache_requests_total",
			Help: "Lookups in the verified-token cache, by result (hit, miss).",
		}, []string{"result"}),
		OutboundRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "authsidecar_outbound_requests_total",
			Help: "Outbound requests by route and response status code.",
		}, []string{"route", "code"}),
		OutboundDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "authsidecar_outbound_request_duration_seconds",
			Help:    "Time from the app's outbound request to the end of the response, by route.",
			Buckets: latencyBuckets(),
		}, []string{"route"}),
		TokenFetches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "authsidecar_token_fetches_total",
			Help: "Token endpoint requests by route and result (success, error).",
		}, []string{"route", "result"}),
		TokenFetchDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "authsidecar_token_fetch_duration_seconds",
			Help:    "Duration of token endpoint requests by route.",
			Buckets: prometheus.DefBuckets,
		}, []string{"route"}),
		TokenExpiry: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "authsidecar_token_expiry_timestamp_seconds",
			Help: "Unix time at which the route's cached token expires.",
		}, []string{"route"}),
		JWKSRefreshes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "authsidecar_jwks_refreshes_total",
			Help: "JWKS fetches by issuer and result (success, error).",
		}, []string{"issuer", "result"}),
		IntrospectionRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "authsidecar_introspection_requests_total",
			Help: "Token introspection calls by result (active, inactive, error).",
		}, []string{"result"}),
		ConfigReloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "authsidecar_config_reloads_total",
			Help: "Re-reads of changed configuration files by file (the variable without AUTHSIDECAR_) and result (success, error).",
		}, []string{"file", "result"}),
		ConfigReloadSuccess: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "authsidecar_config_last_reload_success_timestamp_seconds",
			Help: "Unix time of the last successful re-read of the file; the load at start is not a reload.",
		}, []string{"file"}),
		buildInfo: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "authsidecar_build_info",
			Help: "Always 1; labels carry the build's version and Go version.",
		}, []string{"version", "goversion"}),
	}
	reg.MustRegister(m.InboundRequests, m.InboundDuration, m.TokenRejections, m.TokenCacheRequests,
		m.OutboundRequests, m.OutboundDuration, m.TokenFetches, m.TokenFetchDuration, m.TokenExpiry,
		m.JWKSRefreshes, m.IntrospectionRequests, m.ConfigReloads, m.ConfigReloadSuccess, m.buildInfo)
	m.buildInfo.WithLabelValues(version, runtime.Version()).Set(1)
	return m
}

// NewRegistry returns a registry with the Go runtime and process collectors,
// the base every authsidecar process serves.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// InboundResults are the values of the inbound "result" label.
var InboundResults = []string{ResultAllowed, ResultPublic, ResultUnauthn, ResultForbidden, ResultUnavailable, ResultUpstreamError, ResultBadRequest}

// RejectionReasons are the values of the inbound "reason" label.
var RejectionReasons = []string{"missing", "malformed", "bad_signature", "unknown_key", "expired", "not_yet_valid",
	"wrong_issuer", "wrong_audience", "disallowed_algorithm", "insufficient_scope", "client_not_allowed", "inactive", "certificate_mismatch",
	"wrong_token_type", "invalid_dpop_proof"}

// InitInbound starts every inbound series at zero, so that a dashboard
// shows a flat line instead of no data before the first refusal.
func (m *Metrics) InitInbound() {
	for _, r := range InboundResults {
		m.InboundRequests.WithLabelValues(r)
	}
	for _, r := range RejectionReasons {
		m.TokenRejections.WithLabelValues(r)
	}
}
