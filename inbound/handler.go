package inbound

import (
	"crypto/x509"
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/sync/semaphore"

	"github.com/authsidecar/authsidecar/internal/handoff"
	"github.com/authsidecar/authsidecar/internal/reload"
	"github.com/authsidecar/authsidecar/internal/tracing"
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
const realm = `realm="authsidecar"`

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
	// maxFormBytes bounds the body read for a method override, and
	// formBudget all such bodies held at once.
	maxFormBytes int64
	formBudget   *semaphore.Weighted
	// overrideBodies are the kinds of bodies read for an override.
	overrideBodies OverrideBodies
	accessLog      bool
	tracer         *tracing.Tracing // nil: tracing is off
	dpop           *dpopChecker
	// resource, when set, is the protected-resource metadata (RFC 9728).
	resource *resourceMetadata
	proxy    *proxy.ReverseProxy
	log      *slog.Logger
	results  map[string]resultMetrics
	reasons  map[string]prometheus.Counter
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
	proxy.DropConnectionNamed(r.Header)
	// Before anything else, so that the access log and every log line
	// carry the id the app will see.
	proxy.EnsureRequestID(r.Header)
	var span trace.Span
	if h.tracer != nil {
		r, span = h.tracer.Start(r, trace.SpanKindServer, "inbound")
	}
	sw := proxy.NewStatusWriter(w)
	defer sw.Release()
	o := h.serve(sw, r)
	if sw.UpstreamFailed() {
		o.result = metrics.ResultUpstreamError
	}
	upstreamStatus := 0
	if code := sw.ErrorCode(); code == "" {
		if o.forwarded {
			upstreamStatus = sw.Status()
		}
	} else if o.reason == "" {
		o.reason = code
	}
	m := h.results[o.result]
	m.count.Inc()
	elapsed := time.Since(start)
	m.duration.Observe(elapsed.Seconds())
	if span != nil {
		tracing.End(span, r, sw.Status(), tracing.ResultKey.String(o.result), tracing.ReasonKey.String(o.reason),
			tracing.ClientIDKey.String(o.clientID), tracing.UpstreamStatusKey.Int(upstreamStatus))
	}
	if h.accessLog {
		proxy.LogAccess(r.Context(), h.log, r, proxy.Access{
			Direction: "inbound", Status: sw.Status(), Result: o.result, Reason: o.reason,
			ClientID: o.clientID, UpstreamStatus: upstreamStatus, Duration: elapsed,
		})
	}
}

// outcome is what became of a request: its result label, the rejection
// reason of a refusal, the verified caller's client id, and whether it
// was passed to the app.
type outcome struct {
	result, reason, clientID string
	forwarded                bool
}

// serve answers r.
func (h *handler) serve(w http.ResponseWriter, r *http.Request) outcome {
	t, status, err := normalize(r, h.encodedSlashes)
	if err != nil {
		h.log.DebugContext(r.Context(), "request refused before any token check", "method", r.Method, "error", err.Error())
		proxy.WriteError(w, r, status, "invalid_request", err.Error())
		return outcome{result: metrics.ResultBadRequest}
	}
	setTarget(r, t)
	if h.resource != nil && t.path == h.resource.path {
		h.resource.serve(w, r, h.rules.Current())
		return outcome{result: metrics.ResultPublic}
	}
	at := h.dpop.addressedOf(r) // before X-Forwarded-* are removed
	stripCallerHeaders(r.Header)
	cert := clientCert(r)
	if rej := h.clientCerts.check(r, cert); rej != nil {
		return h.refuse(w, r, rej, nil, "")
	}
	if cert != nil {
		setCertHeaders(r.Header, cert)
	}
	set := h.rules.Current()
	judged := h.match(set, r, t)
	// A POST's body may name another method (see override.go). It is
	// read only when that could change the judgement, and for a protected
	// path only once the token is good: a caller without one makes the
	// sidecar hold nothing.
	body := readingsOf(r, h.overrideBodies)
	if body.any() && overrideIrrelevant(set, t.path) {
		body = readings{}
	}
	var bodyOverrides []string
	if judged.public() {
		if !body.any() {
			return h.servePublic(w, r, cert, at, t)
		}
		var o *outcome
		var release func()
		if judged, bodyOverrides, release, o = h.judgeBody(w, r, set, t, body, judged); o != nil {
			return *o
		}
		defer release()
		body = readings{}
		if judged.public() {
			return h.servePublic(w, r, cert, at, t)
		}
		if judged.unread != nil && judged.read().public() && r.Header.Get("Authorization") == "" {
			// A public POST whose body could not be read: without a
			// token, it cannot be allowed every method, and the body is
			// what stands in the way, not the token.
			return h.bodyUnread(w, r, nil, judged.unread)
		}
	}
	raw, scheme, err := accessToken(r.Header)
	if err != nil {
		reason := reasonMalformed
		if errors.Is(err, errNoToken) {
			reason = reasonMissing
		}
		return h.refuse(w, r, &rejection{reason: reason, detail: err.Error()}, nil, "")
	}
	id, err := h.verifier.verify(r.Context(), raw)
	if err != nil {
		var rej *rejection
		if errors.As(err, &rej) {
			return h.refuse(w, r, rej, nil, scheme)
		}
		return h.unavailable(w, r, err)
	}
	if rej := h.checkSender(r, at, t, scheme, raw, id, cert); rej != nil {
		return h.refuse(w, r, rej, id, scheme)
	}
	if body.any() {
		var o *outcome
		var release func()
		if judged, bodyOverrides, release, o = h.judgeBody(w, r, set, t, body, judged); o != nil {
			return *o
		}
		defer release()
	}
	if bodyOverrides != nil && scheme == schemeDPoP {
		// As for the query (see dpopChecker.check): the proof's htm would
		// not be the method the app runs.
		return h.refuse(w, r, dpopRefusal("a request with a DPoP proof cannot carry a method override", "%s in the body", overrideField), id, scheme)
	}
	if judged.unread != nil && scheme == schemeDPoP {
		// A body that could not be read may carry an override: being
		// allowed every method is not enough when the proof names one.
		return h.bodyUnread(w, r, id, judged.unread)
	}
	if rej := judged.authorize(id, r, t); rej != nil {
		if judged.unread != nil && judged.read().authorize(id, r, t) == nil {
			return h.bodyUnread(w, r, id, judged.unread)
		}
		return h.refuse(w, r, rej, id, scheme)
	}
	h.pass(r, id, raw)
	h.forward(w, r)
	return outcome{result: metrics.ResultAllowed, clientID: id.clientID, forwarded: true}
}

// checkSender checks that the token came from the one it was issued to,
// when it says who that is: the client certificate of a certificate-bound
// token (RFC 8705), the DPoP proof of a DPoP-bound one (RFC 9449), which
// must come as "DPoP <token>"; and that a token sent as DPoP is bound, and
// with REQUIRE_DPOP that every token is.
func (h *handler) checkSender(r *http.Request, at addressed, t target, scheme, raw string, id *identity, cert *x509.Certificate) *rejection {
	if rej := h.clientCerts.checkBinding(id, cert); rej != nil {
		return rej
	}
	switch {
	case id.dpopThumbprint != "" && scheme != schemeDPoP:
		return dpopRefusal("the token is bound to a DPoP key: send it as DPoP with a proof", "a DPoP-bound token sent as %s", scheme)
	case id.dpopThumbprint != "":
		return h.dpop.check(r, at, t, raw, id.dpopThumbprint)
	case scheme == schemeDPoP:
		return dpopRefusal("the token is not bound to a DPoP key", "a bearer token sent as DPoP")
	case h.dpop.require:
		return dpopRefusal("a DPoP-bound token is required", "a bearer token where DPoP is required")
	}
	return nil
}

// pass gives the app what it is told of an allowed caller: the identity
// headers, the token's handle with token exchange on, and the token
// itself only with FORWARD_TOKEN. A DPoP proof never: it is spent here,
// and the app, or whoever reads its logs, could otherwise replay it to
// another replica within its lifetime.
func (h *handler) pass(r *http.Request, id *identity, raw string) {
	setIdentityHeaders(r.Header, id)
	h.handOff(r, id, raw)
	r.Header.Del("DPoP")
	if !h.forwardToken {
		r.Header.Del("Authorization")
	}
}

// servePublic passes a request on a public path. A token it carries is
// checked all the same: a valid one gives the app the caller's identity
// (and is forwarded with FORWARD_TOKEN), any other is removed, so that
// only a verified token ever reaches the app.
func (h *handler) servePublic(w http.ResponseWriter, r *http.Request, cert *x509.Certificate, at addressed, t target) outcome {
	o := outcome{result: metrics.ResultPublic, forwarded: true}
	if raw, scheme, err := accessToken(r.Header); err == nil {
		if id, err := h.verifier.verify(r.Context(), raw); err == nil && h.checkSender(r, at, t, scheme, raw, id, cert) == nil {
			h.pass(r, id, raw)
			o.clientID = id.clientID
			h.forward(w, r)
			return o
		}
	}
	r.Header.Del("Authorization")
	r.Header.Del("DPoP")
	h.forward(w, r)
	return o
}

// handOff gives the app the handle of the caller's token, for its calls
// through a token-exchange route, when token exchange is on.
func (h *handler) handOff(r *http.Request, id *identity, raw string) {
	if id.handle == "" {
		return
	}
	now := h.verifier.clock.Now()
	h.verifier.handoff.Keep(id.handle, raw, id.expiry.Add(h.verifier.skew), now)
	r.Header[handoff.Header] = []string{id.handle}
}

func (h *handler) forward(w http.ResponseWriter, r *http.Request) {
	r, cancel := proxy.WithGRPCDeadline(r)
	defer cancel()
	r, stop := proxy.BoundBodyIdle(w, r, h.bodyIdle)
	defer stop()
	h.proxy.ServeHTTP(w, r)
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
// every method a framework may take it for, read from a method override
// in the query or in a POST's form body (see override.go). Every one of
// them must allow the request.
type judgement struct {
	matched []matched
	// unread, when set, says why the body could not be read for an
	// override; the methods from unreadFrom on are every one it may name.
	unread     *unreadBody
	unreadFrom int
}

// matched is the rule that matched a request taken for method.
type matched struct {
	method string
	rule   *rules.Rule
}

func (h *handler) match(set *rules.Set, r *http.Request, t target) judgement {
	j := judgement{matched: []matched{{r.Method, set.Match(r.Method, t.path)}}}
	for _, v := range queryOverrides(r.URL.RawQuery) {
		j.add(set, t, v)
	}
	return j
}

// add judges the request also as taken for the method override value v,
// and for every method when frameworks may read v differently (see
// plainMethod).
func (j *judgement) add(set *rules.Set, t target, v string) {
	for _, m := range overrideValues(v) {
		j.matched = append(j.matched, matched{m, set.Match(m, t.path)})
	}
	if !plainMethod(v) {
		j.addEvery(set, t)
	}
}

// addEvery judges the request also as taken for every method.
func (j *judgement) addEvery(set *rules.Set, t target) {
	for _, m := range overridable {
		j.matched = append(j.matched, matched{m, set.Match(m, t.path)})
	}
}

// read is j without the methods added for a body that could not be read.
func (j judgement) read() judgement {
	if j.unread == nil {
		return j
	}
	return judgement{matched: j.matched[:j.unreadFrom]}
}

// public reports whether every rule matched is public.
func (j judgement) public() bool {
	for _, m := range j.matched {
		if m.rule == nil || !m.rule.Public {
			return false
		}
	}
	return true
}

// authorize applies the rules that matched to a verified caller; a method
// no rule matched (a Set without defaults) needs nothing more.
func (j judgement) authorize(id *identity, r *http.Request, t target) *rejection {
	for _, m := range j.matched {
		if m.rule == nil || m.rule.Public {
			continue
		}
		d := m.rule.Allow(rules.Input{
			Scopes: id.scopes, ClientID: id.clientID, Claims: id.claims,
			Method: m.method, Path: t.path, RawPath: t.sent, Header: r.Header,
		})
		if !d.Allowed {
			return &rejection{reason: d.Reason, missingScopes: d.MissingScopes, detail: m.rule.Source + ": " + d.Detail}
		}
	}
	return nil
}

// unavailable answers a request whose token cannot be judged now: 503,
// failing closed. Keys not loaded yet are logged at debug only, since
// /readyz and the key set's own fetch errors already say so, and every
// request during the warm-up would repeat it.
func (h *handler) unavailable(w http.ResponseWriter, r *http.Request, err error) outcome {
	ctx := r.Context()
	o := outcome{result: metrics.ResultUnavailable}
	switch {
	case ctx.Err() != nil:
		w.WriteHeader(499) // the caller left; nobody reads the answer
		o.reason = "caller_gone"
		return o
	case errors.Is(err, errIntrospectionBusy):
		h.log.DebugContext(ctx, "token introspection busy", "error", err.Error())
		proxy.WriteError(w, r, http.StatusServiceUnavailable, "temporarily_unavailable", "the token cannot be introspected now")
	case errors.Is(err, errIntrospectionUnavailable):
		h.log.WarnContext(ctx, "token introspection unavailable", "error", err.Error())
		proxy.WriteError(w, r, http.StatusServiceUnavailable, "temporarily_unavailable", "the token cannot be introspected now")
	default:
		h.log.DebugContext(ctx, "token not verifiable now", "error", err.Error())
		proxy.WriteError(w, r, http.StatusServiceUnavailable, "temporarily_unavailable", "the issuer's keys are not loaded yet")
	}
	return o
}

// refuse answers a refused request as RFC 6750 section 3 (and RFC 9449 7.1
// for DPoP) says; id is the caller when the token was verified before the
// refusal, scheme the Authorization scheme its token came with.
func (h *handler) refuse(w http.ResponseWriter, r *http.Request, rej *rejection, id *identity, scheme string) outcome {
	h.reasons[rej.reason].Inc()
	h.log.DebugContext(r.Context(), "request refused", "reason", rej.reason, "detail", rej.detail,
		"method", r.Method, "path", r.URL.Path, "request_id", r.Header.Get(proxy.RequestIDHeader))
	o := outcome{reason: rej.reason}
	if id != nil {
		o.clientID = id.clientID
	}
	desc := rej.description()
	switch rej.reason {
	case reasonMissing:
		h.challenge(w, "", "")
		proxy.WriteError(w, r, http.StatusUnauthorized, "invalid_request", desc)
		o.result = metrics.ResultUnauthn
	case reasonInsufficientScope:
		h.challenge(w, scheme, `error="insufficient_scope", scope="`+strings.Join(rej.missingScopes, " ")+`"`)
		proxy.WriteError(w, r, http.StatusForbidden, "insufficient_scope", desc)
		o.result = metrics.ResultForbidden
	case reasonClientNotAllowed:
		proxy.WriteError(w, r, http.StatusForbidden, "access_denied", desc)
		o.result = metrics.ResultForbidden
	case reasonInvalidDPoPProof:
		h.challenge(w, schemeDPoP, `error="invalid_dpop_proof", error_description="`+desc+`"`)
		proxy.WriteError(w, r, http.StatusUnauthorized, "invalid_dpop_proof", desc)
		o.result = metrics.ResultUnauthn
	default:
		h.challenge(w, scheme, `error="invalid_token", error_description="`+desc+`"`)
		proxy.WriteError(w, r, http.StatusUnauthorized, "invalid_token", desc)
		o.result = metrics.ResultUnauthn
	}
	return o
}

// challenge sets the WWW-Authenticate challenges of a refusal: Bearer,
// unless REQUIRE_DPOP; DPoP (with the algorithms a proof may use) when
// DPoP is required or concerned; params (error="…") on the challenge of
// scheme, or of Bearer when scheme is "". Each names the protected-resource
// metadata when there is some (RFC 9728 5.1).
func (h *handler) challenge(w http.ResponseWriter, scheme, params string) {
	if scheme == "" {
		scheme = schemeBearer
	}
	if h.dpop.require {
		scheme = schemeDPoP
	}
	var meta string
	if h.resource != nil {
		meta = `, resource_metadata="` + h.resource.url + `"`
	}
	hdr := w.Header()
	if scheme == schemeDPoP {
		v := schemeDPoP + " " + realm + `, algs="` + h.dpop.algNames + `"`
		if params != "" {
			v += ", " + params
		}
		hdr.Add("WWW-Authenticate", v+meta)
	}
	if !h.dpop.require {
		v := schemeBearer + " " + realm
		if scheme == schemeBearer && params != "" {
			v += ", " + params
		}
		hdr.Add("WWW-Authenticate", v+meta)
	}
}
