package inbound

import (
	"crypto/x509"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httputil"
	"net/url"
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
	// encodedSlashes decodes "%2F" and "%5C" in paths instead of refusing.
	encodedSlashes bool
	bodyIdle       time.Duration
	accessLog      bool
	proxy          *httputil.ReverseProxy
	log            *slog.Logger
	results        map[string]resultMetrics
	reasons        map[string]prometheus.Counter
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
	t, status, err := normalize(r, h.encodedSlashes)
	if err != nil {
		h.log.Debug("request refused before any token check", "method", r.Method, "error", err.Error())
		proxy.WriteError(w, r, status, "invalid_request", err.Error())
		return metrics.ResultBadRequest
	}
	setTarget(r, t)
	stripCallerHeaders(r.Header)
	proxy.EnsureRequestID(r.Header)
	cert := clientCert(r)
	if rej := h.clientCerts.check(cert); rej != nil {
		return h.refuse(w, r, rej)
	}
	if cert != nil {
		setCertHeaders(r.Header, cert)
	}
	judged := h.match(r, t)
	if judged.public() {
		h.servePublic(w, r, cert)
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
	if rej := judged.authorize(id, r, t); rej != nil {
		return h.refuse(w, r, rej)
	}
	setIdentityHeaders(r.Header, id)
	if !h.forwardToken {
		r.Header.Del("Authorization")
	}
	h.forward(w, r)
	return metrics.ResultAllowed
}

// servePublic passes a request on a public path. A token it carries is
// checked all the same: a valid one gives the app the caller's identity
// (and is forwarded with FORWARD_TOKEN), any other is removed, so that
// only a verified token ever reaches the app.
func (h *handler) servePublic(w http.ResponseWriter, r *http.Request, cert *x509.Certificate) {
	if raw, err := bearerToken(r.Header); err == nil {
		if id, err := h.verifier.verify(r.Context(), raw); err == nil && h.clientCerts.checkBinding(id, cert) == nil {
			setIdentityHeaders(r.Header, id)
			if h.forwardToken {
				h.forward(w, r)
				return
			}
		}
	}
	r.Header.Del("Authorization")
	h.forward(w, r)
}

func (h *handler) forward(w http.ResponseWriter, r *http.Request) {
	r, cancel := proxy.WithGRPCDeadline(r)
	defer cancel()
	h.proxy.ServeHTTP(w, proxy.BoundBodyIdle(w, r, h.bodyIdle))
}

// setTarget makes the request carry the normal path, the one it was
// judged by, to the app.
func setTarget(r *http.Request, t target) {
	r.URL.Path, r.URL.RawPath = t.path, ""
	if t.rawPath != (&url.URL{Path: t.path}).EscapedPath() {
		r.URL.RawPath = t.rawPath
	}
}

// judgement is the rules that a request matched: for its method, and for
// every method it may be taken for by a framework that reads a method
// override from the query (Express's method-override, Rails, Laravel:
// "?_method=DELETE"). Every one of them must allow the request.
type judgement []*rules.Rule

func (h *handler) match(r *http.Request, t target) judgement {
	set := h.rules.Current()
	j := judgement{set.Match(r.Method, t.path)}
	for _, m := range r.URL.Query()["_method"] {
		j = append(j, set.Match(m, t.path))
	}
	return j
}

// public reports whether every rule matched is public.
func (j judgement) public() bool {
	for _, rule := range j {
		if rule == nil || !rule.Public {
			return false
		}
	}
	return true
}

// authorize applies the rules that matched to a verified caller; a method
// no rule matched (a Set without defaults) needs nothing more.
func (j judgement) authorize(id *identity, r *http.Request, t target) *rejection {
	for i, rule := range j {
		if rule == nil || rule.Public {
			continue
		}
		method := r.Method
		if i > 0 {
			method = r.URL.Query()["_method"][i-1]
		}
		d := rule.Allow(rules.Input{
			Scopes: id.scopes, ClientID: id.clientID, Claims: id.claims,
			Method: method, Path: t.path, RawPath: t.sent, Header: r.Header,
		})
		if !d.Allowed {
			return &rejection{reason: d.Reason, missingScopes: d.MissingScopes, detail: rule.Source + ": " + d.Detail}
		}
	}
	return nil
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
	case errors.Is(err, errIntrospectionBusy):
		h.log.Debug("token introspection busy", "error", err.Error())
		w.Header().Set("Retry-After", "1")
		proxy.WriteError(w, r, http.StatusServiceUnavailable, "temporarily_unavailable", "the token cannot be introspected now")
	case errors.Is(err, errIntrospectionUnavailable):
		h.log.Warn("token introspection unavailable", "error", err.Error())
		proxy.WriteError(w, r, http.StatusServiceUnavailable, "temporarily_unavailable", "the token cannot be introspected now")
	default:
		h.log.Debug("token not verifiable now", "error", err.Error())
		proxy.WriteError(w, r, http.StatusServiceUnavailable, "temporarily_unavailable", "the issuer's keys are not loaded yet")
	}
	return metrics.ResultUnavailable
}

// refuse answers a refused request as RFC 6750 section 3 says.
func (h *handler) refuse(w http.ResponseWriter, r *http.Request, rej *rejection) string {
	h.reasons[rej.reason].Inc()
	h.log.Debug("request refused", "reason", rej.reason, "detail", rej.detail,
		"method", r.Method, "path", r.URL.Path, "request_id", r.Header.Get(proxy.RequestIDHeader))
	switch rej.reason {
	case reasonMissing:
		w.Header().Set("WWW-Authenticate", realm)
		proxy.WriteError(w, r, http.StatusUnauthorized, "invalid_request", rej.description())
		return metrics.ResultUnauthn
	case reasonInsufficientScope:
		w.Header().Set("WWW-Authenticate", realm+`, error="insufficient_scope", scope="`+strings.Join(rej.missingScopes, " ")+`"`)
		proxy.WriteError(w, r, http.StatusForbidden, "insufficient_scope", rej.description())
		return metrics.ResultForbidden
	case reasonClientNotAllowed:
		proxy.WriteError(w, r, http.StatusForbidden, "access_denied", rej.description())
		return metrics.ResultForbidden
	default:
		w.Header().Set("WWW-Authenticate", realm+`, error="invalid_token", error_description="`+rej.description()+`"`)
		proxy.WriteError(w, r, http.StatusUnauthorized, "invalid_token", rej.description())
		return metrics.ResultUnauthn
	}
}
