package inbound

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

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

// TokenVerifier turns a bearer token into an identity or a refusal.
type TokenVerifier interface {
	Verify(ctx context.Context, raw string) (*Identity, error)
}

// HandlerOptions configure NewHandler.
type HandlerOptions struct {
	Verifier TokenVerifier
	Policy   Policy
	// Upstream is the app.
	Upstream  *url.URL
	Transport http.RoundTripper
	// PublicPaths are path prefixes passed to the app without a token.
	PublicPaths []string
	// ForwardToken keeps the Authorization header for the app.
	ForwardToken bool
	Metrics      *metrics.Metrics
	Logger       *slog.Logger
	// AccessLog logs one line per request at info level.
	AccessLog bool
	// ClientCerts is what is asked of TLS client certificates (mTLS).
	ClientCerts ClientCertPolicy
	// Rules decide per path and method; a request no rule matches gets
	// Policy and PublicPaths.
	Rules *rules.Set
}

// Handler is the inbound http.Handler.
type Handler struct {
	opts    HandlerOptions
	proxy   *httputil.ReverseProxy
	log     *slog.Logger
	results map[string]resultMetrics
	reasons map[string]prometheus.Counter
	writers sync.Pool
}

type resultMetrics struct {
	count    prometheus.Counter
	duration prometheus.Observer
}

// NewHandler returns the inbound handler.
func NewHandler(opts HandlerOptions) *Handler {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	h := &Handler{
		opts:    opts,
		log:     opts.Logger,
		results: map[string]resultMetrics{},
		reasons: map[string]prometheus.Counter{},
		writers: sync.Pool{New: func() any { return new(trackingWriter) }},
	}
	// Label lookups hash their values; do them once, not per request.
	for _, r := range metrics.InboundResults {
		h.results[r] = resultMetrics{
			count:    opts.Metrics.InboundRequests.WithLabelValues(r),
			duration: opts.Metrics.InboundDuration.WithLabelValues(r),
		}
	}
	for _, r := range metrics.RejectionReasons {
		h.reasons[r] = opts.Metrics.TokenRejections.WithLabelValues(r)
	}
	h.proxy = proxy.NewReverseProxy(opts.Upstream, proxy.ReverseProxyOptions{
		Transport: opts.Transport,
		KeepHost:  true,
		Logger:    opts.Logger,
	})
	// Mark upstream failures on the writer, so they are counted as
	// upstream_error and not confused with a 502 the app itself sent.
	next := h.proxy.ErrorHandler
	h.proxy.ErrorHandler = func(w http.ResponseWriter, r *http.Request, err error) {
		if tw, ok := w.(*trackingWriter); ok {
			tw.upstreamFailed = true
		}
		next(w, r, err)
	}
	return h
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	tw := h.writers.Get().(*trackingWriter)
	tw.reset(w)
	result := h.serve(tw, r)
	if tw.upstreamFailed {
		result = metrics.ResultUpstreamError
	}
	m := h.results[result]
	m.count.Inc()
	elapsed := time.Since(start)
	m.duration.Observe(elapsed.Seconds())
	if h.opts.AccessLog {
		h.log.Info("request", "direction", "inbound", "method", r.Method, "path", r.URL.Path,
			"status", tw.status, "result", result, "duration_ms", float64(elapsed.Microseconds())/1000,
			"request_id", r.Header.Get(proxy.RequestIDHeader))
	}
	tw.reset(nil)
	h.writers.Put(tw)
}

// serve answers r and returns its result label.
func (h *Handler) serve(w http.ResponseWriter, r *http.Request) string {
	stripIdentityHeaders(r.Header)
	cert := clientCert(r)
	if rej := h.opts.ClientCerts.check(cert); rej != nil {
		return h.refuse(w, r, rej)
	}
	if cert != nil {
		setCertHeaders(r.Header, cert)
	}
	rule := h.opts.Rules.Match(r.Method, r.URL.Path)
	if (rule != nil && rule.Public) || (rule == nil && h.isPublic(r.URL.Path)) {
		if !h.opts.ForwardToken {
			r.Header.Del("Authorization")
		}
		h.proxy.ServeHTTP(w, r)
		return metrics.ResultPublic
	}
	raw, err := BearerToken(r.Header)
	if err != nil {
		reason := ReasonMalformed
		if errors.Is(err, ErrNoToken) {
			reason = ReasonMissing
		}
		return h.refuse(w, r, &Rejection{Reason: reason, Detail: err.Error()})
	}
	id, err := h.opts.Verifier.Verify(r.Context(), raw)
	if err != nil {
		var rej *Rejection
		if errors.As(err, &rej) {
			return h.refuse(w, r, rej)
		}
		return h.unavailable(w, r, err)
	}
	if rej := h.opts.ClientCerts.checkBinding(id, cert); rej != nil {
		return h.refuse(w, r, rej)
	}
	if rej := h.authorize(rule, id, r); rej != nil {
		return h.refuse(w, r, rej)
	}
	setIdentityHeaders(r.Header, id)
	if !h.opts.ForwardToken {
		r.Header.Del("Authorization")
	}
	h.proxy.ServeHTTP(w, r)
	return metrics.ResultAllowed
}

// unavailable answers a request whose token cannot be judged now: 503,
// failing closed. Keys not loaded yet are logged at debug only, since
// /readyz and the key set's own fetch errors already say so, and every
// request during the warm-up would repeat it.
func (h *Handler) unavailable(w http.ResponseWriter, r *http.Request, err error) string {
	switch {
	case r.Context().Err() != nil:
		w.WriteHeader(499) // the caller left; nobody reads the answer
		return metrics.ResultUnavailable
	case errors.Is(err, ErrIntrospectionUnavailable):
		h.log.Warn("token introspection unavailable", "error", err.Error())
		proxy.WriteError(w, http.StatusServiceUnavailable, "temporarily_unavailable", "the token cannot be introspected now")
	default:
		h.log.Debug("token not verifiable now", "error", err.Error())
		proxy.WriteError(w, http.StatusServiceUnavailable, "temporarily_unavailable", "the issuer's keys are not loaded yet")
	}
	return metrics.ResultUnavailable
}

// authorize applies the matching rule, or the global policy when no rule
// matches, to a verified caller.
func (h *Handler) authorize(rule *rules.Rule, id *Identity, r *http.Request) *Rejection {
	if rule == nil {
		return h.opts.Policy.Check(id)
	}
	d := rule.Allow(rules.Input{
		Scopes: id.Scopes, ClientID: id.ClientID, Claims: id.Claims,
		Method: r.Method, Path: r.URL.Path, Header: r.Header,
	})
	if d.Allowed {
		return nil
	}
	return &Rejection{Reason: d.Reason, MissingScopes: d.MissingScopes, Detail: fmt.Sprintf("rule %d: %s", rule.Index, d.Detail)}
}

// isPublic reports whether path is under a public prefix, segment by
// segment: "/health" makes "/health" and "/health/x" public, not
// "/healthz". A path the app might resolve elsewhere is never public (see
// isCleanPath).
func (h *Handler) isPublic(path string) bool {
	if len(h.opts.PublicPaths) == 0 || !isCleanPath(path) {
		return false
	}
	for _, p := range h.opts.PublicPaths {
		if strings.HasPrefix(path, p) &&
			(len(path) == len(p) || p[len(p)-1] == '/' || path[len(p)] == '/') {
			return true
		}
	}
	return false
}

// refuse answers a refused request as RFC 6750 section 3 says.
func (h *Handler) refuse(w http.ResponseWriter, r *http.Request, rej *Rejection) string {
	h.reasons[rej.Reason].Inc()
	h.log.Debug("request refused", "reason", rej.Reason, "detail", rej.Detail,
		"method", r.Method, "path", r.URL.Path, "request_id", r.Header.Get(proxy.RequestIDHeader))
	switch rej.Reason {
	case ReasonMissing:
		w.Header().Set("WWW-Authenticate", realm)
		proxy.WriteError(w, http.StatusUnauthorized, "invalid_request", rej.Description())
		return metrics.ResultUnauthn
	case ReasonInsufficientScope:
		w.Header().Set("WWW-Authenticate", realm+`, error="insufficient_scope", scope="`+strings.Join(rej.MissingScopes, " ")+`"`)
		proxy.WriteError(w, http.StatusForbidden, "insufficient_scope", rej.Description())
		return metrics.ResultForbidden
	case ReasonClientNotAllowed:
		proxy.WriteError(w, http.StatusForbidden, "access_denied", rej.Description())
		return metrics.ResultForbidden
	default:
		w.Header().Set("WWW-Authenticate", realm+`, error="invalid_token", error_description="`+rej.Description()+`"`)
		proxy.WriteError(w, http.StatusUnauthorized, "invalid_token", rej.Description())
		return metrics.ResultUnauthn
	}
}

// stripIdentityHeaders removes every X-Auth-* header a caller sent, in any
// spelling an app might read as one: WSGI and PHP turn "X_Auth_Subject" and
// "X-Auth-Subject" into the same variable. It also drops identity headers
// from the caller's Connection list, where ReverseProxy would otherwise
// delete the sidecar's own copies as hop-by-hop.
func stripIdentityHeaders(h http.Header) {
	for k := range h {
		if isIdentityHeader(k) {
			delete(h, k)
		}
	}
	// Some frameworks route by these instead of the request line (Symfony,
	// IIS URL Rewrite), which would let a public path reach another one.
	delete(h, "X-Original-Url")
	delete(h, "X-Rewrite-Url")
	conn := h["Connection"]
	for i, v := range conn {
		if hasIdentityToken(v) {
			conn[i] = withoutIdentityTokens(v)
		}
	}
}

func hasIdentityToken(v string) bool {
	for v != "" {
		var t string
		t, v, _ = strings.Cut(v, ",")
		if isIdentityHeader(strings.TrimSpace(t)) {
			return true
		}
	}
	return false
}

// isIdentityHeader reports whether name is "x-auth-" followed by more,
// case-insensitively and with "_" read as "-".
func isIdentityHeader(name string) bool {
	const prefix = "x-auth-"
	if len(name) <= len(prefix) {
		return false
	}
	for i := range len(prefix) {
		c := name[i] | 0x20 // ASCII lower case; maps '-' to '-' and '_' to DEL
		if name[i] == '_' {
			c = '-'
		}
		if c != prefix[i] {
			return false
		}
	}
	return true
}

func withoutIdentityTokens(v string) string {
	tokens := strings.Split(v, ",")
	kept := tokens[:0]
	for _, t := range tokens {
		if !isIdentityHeader(strings.TrimSpace(t)) {
			kept = append(kept, t)
		}
	}
	return strings.Join(kept, ",")
}

// identityHeaders are the values of the X-Auth-* headers for one identity.
// They are shared by every request with the same cached token; that is
// safe because ReverseProxy copies the header values into the outgoing
// request and nothing writes into these slices.
type identityHeaders struct {
	built                             bool
	subject, issuer, clientID, scopes []string
}

// newIdentityHeaders leaves out what the identity lacks (an introspected
// client-credentials token often has no sub), rather than sending "".
func newIdentityHeaders(id *Identity) identityHeaders {
	h := identityHeaders{built: true}
	if id.Subject != "" {
		h.subject = []string{id.Subject}
	}
	if id.Issuer != "" {
		h.issuer = []string{id.Issuer}
	}
	if id.ClientID != "" {
		h.clientID = []string{id.ClientID}
	}
	if len(id.Scopes) > 0 {
		h.scopes = []string{strings.Join(id.Scopes, " ")}
	}
	return h
}

func setIdentityHeaders(h http.Header, id *Identity) {
	v := id.headers
	if !v.built {
		v = newIdentityHeaders(id)
	}
	if v.subject != nil {
		h[HeaderSubject] = v.subject
	}
	if v.issuer != nil {
		h[HeaderIssuer] = v.issuer
	}
	if v.clientID != nil {
		h[HeaderClientID] = v.clientID
	}
	if v.scopes != nil {
		h[HeaderScopes] = v.scopes
	}
}

// trackingWriter records the status sent and whether the upstream failed.
// It is pooled: one per request would be an allocation on the hot path.
type trackingWriter struct {
	http.ResponseWriter
	status         int
	upstreamFailed bool
}

func (t *trackingWriter) reset(w http.ResponseWriter) {
	*t = trackingWriter{ResponseWriter: w, status: http.StatusOK}
}

func (t *trackingWriter) WriteHeader(code int) {
	if code >= 200 || code == http.StatusSwitchingProtocols {
		t.status = code
	}
	t.ResponseWriter.WriteHeader(code)
}

// Unwrap lets http.ResponseController reach Flush and Hijack underneath.
func (t *trackingWriter) Unwrap() http.ResponseWriter { return t.ResponseWriter }

// isCleanPath rejects what an app may resolve to another path: dot
// segments, doubled slashes, backslashes, ";params" (Tomcat reads
// "/public/..;/admin" as "/admin") and a "%" left after decoding.
func isCleanPath(p string) bool {
	return !strings.Contains(p, "//") && !strings.Contains(p, "/./") && !strings.Contains(p, "/../") &&
		!strings.HasSuffix(p, "/.") && !strings.HasSuffix(p, "/..") && !strings.ContainsAny(p, "\\;%")
}
