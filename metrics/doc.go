// Package metrics defines authsidecar's Prometheus collectors and serves the
// admin endpoints: /metrics, /healthz and /readyz.
//
// Every collector lives on a registry passed in by the caller; nothing is
// registered globally. Label values are bounded by construction: a result,
// a reason, a route name or an issuer from the configuration, never a path,
// a subject or a token.
package metrics
