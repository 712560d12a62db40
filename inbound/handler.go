package inbound

import (
	"errors"
	"log/slog"
	"net/http"
	"net/http/httputil"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/authsidecar/authsidecar/internal/reload"
	"github.com/authsidecar/authsidecar/metrics"
	"github.com/authsidecar/authsidecar/proxy"
	"github.com/authsidecar/authsidecar/rules"
)

// Identity headers set for the app. Callers' copies of any X-Auth-* header
// are removed from every request first, so the app can trust them.
const (
	HeaderSubject  = "X-Auth-Subject"
	HeaderIssuer   = "X-Auth-Issuer"
	HeaderClientID = "X-Auth-Client-Id"
	HeaderScopes   = "X-Auth-Scopes"
)

// realm names the protection space in WWW-Authenticate.
const realm = `Bearer realm="authsidecar"`

// handler is the inbound http.Handler: every request is judged by the
// rules, and only an allowed one is proxied to the app.
type handler struct {
	verifier     *verifier
	rules        *reload.File[*rules.Set]
	clientCerts  ClientCertPolicy
	forwardToken bool
	accessLog    bool
	proxy        *httputil.ReverseProxy
	log          *slog.Logger
	results      map[string]resultMetrics
	reasons      map[string]prometheus.Counter
}

type resultMetrics struct {
	count    prometheus.Counter
	duration prometheus.Observer
}

func newHandler(h *handler, m *metrics.Metrics) *handler {
	h.results = map[string]resultMetrics{}
	h.reasons = map[string]prometheus.Counter{}
	// Label lookups hash their values; do them once, not per request.
	for _, r := range metrics.InboundResults {
		h.results[r] = resultMetrics{
			count:    m.InboundRequests.WithLabelValues(r),
			duration: m.InboundDuration.WithLabelValues(r),
		}
	}
	for _, r := range metrics.RejectionReasons {
		h.reasons[r] = m.TokenRejections.WithLabelValues(r)
	}
	return h
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	sw := proxy.NewStatusWriter(w)
	defer sw.Release()
	result := h.serve(sw, r)
	if sw.UpstreamFailed() {
		result = metrics.ResultUpstreamError
	}
	m := h.results[result]
	m.count.Inc()
	elapsed := time.Since(start)
	m.duration.Observe(elapsed.Seconds())
	if h.accessLog {
		h.log.Info("request", "direction", "inbound", "method", r.Method, "path", r.URL.Path,
			"status", sw.Status(), "result", result, "duration_ms", float64(elapsed.Microseconds())/1000,
			"request_id", r.Header.Get(proxy.RequestIDHeader))
	}
}

// serve answers r and returns its result label.
func (h *handler) serve(w http.ResponseWriter, r *http.Request) string {
	stripIdentityHeaders(r.Header)
	cert := clientCert(r)
	if rej := h.clientCerts.check(cert); rej != nil {
		return h.refuse(w, r, rej)
	}
	if cert != nil {
		setCertHeaders(r.Header, cert)
	}
	rule := h.rules.Current().Match(r.Method, r.URL.Path)
	if rule != nil && rule.Public {
		if !h.forwardToken {
			r.Header.Del("Authorization")
		}
		h.proxy.ServeHTTP(w, r)
		return metrics.ResultPublic
	}
	raw, err := bearerToken(r.Header)
	if err != nil {
		reason := reasonMalformed
		if errors.Is(err, errNoToken) {
			reason = reasonMissing
		}
		return h.refuse(w, r, &rejection{reason: reason, detail: err.Error()})
	}
	id, err := h.verifier.verify(r.Context(), raw)
	if err != nil {
		var rej *rejection
		if errors.As(err, &rej) {
			return h.refuse(w, r, rej)
		}
		return h.unavailable(w, r, err)
	}
	if rej := h.clientCerts.checkBinding(id, cert); rej != nil {
		return h.refuse(w, r, rej)
	}
	if rej := authorize(rule, id, r); rej != nil {
		return h.refuse(w, r, rej)
	}
	setIdentityHeaders(r.Header, id)
	if !h.forwardToken {
		r.Header.Del("Authorization")
	}
	h.proxy.ServeHTTP(w, r)
	return metrics.ResultAllowed
}

// unavailable answers a request whose token cannot be judged now: 503,
// failing closed. Keys not loaded yet are logged at debug only, since
// /readyz and the key set's own fetch errors already say so, and every
// request during the warm-up would repeat it.
func (h *handler) unavailable(w http.ResponseWriter, r *http.Request, err error) string {
	switch {
	case r.Context().Err() != nil:
		w.WriteHeader(499) // the caller left; nobody reads the answer
		return metrics.ResultUnavailable
	case errors.Is(err, errIntrospectionUnavailable):
		h.log.Warn("token introspection unavailable", "error", err.Error())
		proxy.WriteError(w, http.StatusServiceUnavailable, "temporarily_unavailable", "the token cannot be introspected now")
	default:
		h.log.Debug("token not verifiable now", "error", err.Error())
		proxy.WriteError(w, http.StatusServiceUnavailable, "temporarily_unavailable", "the issuer's keys are not loaded yet")
	}
	return metrics.ResultUnavailable
}

// authorize applies the rule that matched to a verified caller; a request
// no rule matched (a Set without defaults) needs nothing more.
func authorize(rule *rules.Rule, id *identity, r *http.Request) *rejection {
	if rule == nil {
		return nil
	}
	d := rule.Allow(rules.Input{
		Scopes: id.scopes, ClientID: id.clientID, Claims: id.claims,
		Method: r.Method, Path: r.URL.Path, Header: r.Header,
	})
	if d.Allowed {
		return nil
	}
	return &rejection{reason: d.Reason, missingScopes: d.MissingScopes, detail: rule.Source + ": " + d.Detail}
}

// refuse answers a refused request as RFC 6750 section 3 says.
func (h *handler) refuse(w http.ResponseWriter, r *http.Request, rej *rejection) string {
	h.reasons[rej.reason].Inc()
	h.log.Debug("request refused", "reason", rej.reason, "detail", rej.detail,
		"method", r.Method, "path", r.URL.Path, "request_id", r.Header.Get(proxy.RequestIDHeader))
	switch rej.reason {
	case reasonMissing:
		w.Header().Set("WWW-Authenticate", realm)
		proxy.WriteError(w, http.StatusUnauthorized, "invalid_request", rej.description())
		return metrics.ResultUnauthn
	case reasonInsufficientScope:
		w.Header().Set("WWW-Authenticate", realm+`, error="insufficient_scope", scope="`+strings.Join(rej.missingScopes, " ")+`"`)
		proxy.WriteError(w, http.StatusForbidden, "insufficient_scope", rej.description())
		return metrics.ResultForbidden
	case reasonClientNotAllowed:
		proxy.WriteError(w, http.StatusForbidden, "access_denied", rej.description())
		return metrics.ResultForbidden
	default:
		w.Header().Set("WWW-Authenticate", realm+`, error="invalid_token", error_description="`+rej.description()+`"`)
		proxy.WriteError(w, http.StatusUnauthorized, "invalid_token", rej.description())
		return metrics.ResultUnauthn
	}
}
