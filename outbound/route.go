package outbound

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/authsidecar/authsidecar/internal/handoff"
	"github.com/authsidecar/authsidecar/metrics"
	"github.com/authsidecar/authsidecar/proxy"
)

// maxReplayBytes bounds the copy of a request body kept to retry it after
// an upstream's 401; a longer body is streamed and not retried.
const maxReplayBytes = 1 << 20

// upstreamDialTimeout bounds the connection to an upstream.
const upstreamDialTimeout = 5 * time.Second

// Route is one upstream the app reaches through the outbound listener.
type Route struct {
	// Name is the route's name from AUTHSIDECAR_OUTBOUND_ROUTES.
	Name string
	// Listen is the route's dedicated listener address; empty when it has
	// none.
	Listen string

	target *url.URL
	// cache holds the route's client-credentials token: the token of its
	// calls, or with token exchange the actor token (nil without ACTOR).
	cache *Cache
	// exchange, for a token-exchange route, exchanges the token of the
	// caller, found in handoff by the call's X-Auth-Context.
	exchange *exchanger
	handoff  *handoff.Store
	dpop     *dpopSigner // nil: DPoP is off
	retry    *retryTransport
	proxy    *proxy.ReverseProxy
	requests *prometheus.CounterVec // by code
	// byCode holds requests' counter for each status code once used, so
	// the hot path neither formats the code nor hashes label values.
	byCode   [600]atomic.Pointer[prometheus.Counter]
	duration prometheus.Observer
	log      *slog.Logger
	bodyIdle time.Duration
	obs      *observer
}

// newRoute returns the route that forwards to rc.URL with tokens from
// cache, over base.
func newRoute(rc RouteOptions, cache *Cache, base http.RoundTripper, m *metrics.Metrics, logger *slog.Logger) *Route {
	logger = logger.With("route", rc.Name)
	target := *rc.URL // a copy: the route owns it
	r := &Route{
		Name:     rc.Name,
		Listen:   rc.Listen,
		target:   &target,
		cache:    cache,
		requests: m.OutboundRequests.MustCurryWith(prometheus.Labels{"route": rc.Name}),
		duration: m.OutboundDuration.WithLabelValues(rc.Name),
		log:      logger,
	}
	r.retry = &retryTransport{base: base, log: logger}
	r.proxy = proxy.NewReverseProxy(r.target, proxy.ReverseProxyOptions{
		Transport: r.retry,
		Rewrite:   r.rewrite,
		Logger:    logger,
	})
	return r
}

// Handler serves the route's dedicated listener: the app's path is
// appended to the upstream's base path unchanged.
func (r *Route) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.obs.observe(w, req, func(sw *proxy.StatusWriter, req *http.Request) string {
			if !refuseMethod(sw, req) {
				r.serve(sw, req, req.URL.EscapedPath())
			}
			return r.Name
		})
	})
}

// attempt carries what the handler decided to the proxy's Rewrite and
// transport.
type attempt struct {
	// ctx is the app's request's, for a token fetch on retry: the
	// outgoing request's context carries ReverseProxy's httptrace hooks,
	// which a shared fetch must not inherit.
	ctx context.Context
	// tokens gave entry, and is told when the upstream refuses it.
	tokens tokens
	entry  *entry
	rest   string      // escaped path to append to the base path
	body   *replayBody // nil when the request has no body
	// grpc: the upstream says "unauthenticated" with grpc-status 16.
	grpc bool
	// signErr is a DPoP proof that could not be made: the call is not sent.
	signErr error
}

type attemptKey struct{}

// serve forwards req with rest as its path below the base path. The token
// is had first: without one the app gets 503 and nothing goes upstream.
func (r *Route) serve(sw *proxy.StatusWriter, req *http.Request, rest string) {
	start := time.Now()
	defer func() {
		r.countCode(sw.Status())
		r.duration.Observe(time.Since(start).Seconds())
	}()
	if climbsOut(rest) {
		// The upstream would resolve the dot segments and serve a path
		// outside the route's base path, with the route's token: an app
		// that puts a user's input in its path would let the user reach
		// any path of the upstream's host.
		proxy.WriteError(sw, req, http.StatusBadRequest, "invalid_path",
			"the path climbs out of route "+strconv.Quote(r.Name)+"'s base path with dot segments")
		return
	}
	var src tokens = r.cache
	if r.exchange != nil {
		subject, ok := r.handoff.Token(req.Header.Get(handoff.Header), r.exchange.clock.Now())
		if !ok {
			r.log.DebugContext(req.Context(), "a call through a token-exchange route without a valid caller handle")
			proxy.WriteError(sw, req, http.StatusUnauthorized, "no_caller_token",
				"route "+strconv.Quote(r.Name)+" calls on behalf of the caller: pass on the "+handoff.Header+
					" header of the request being served")
			return
		}
		src = callerTokens{x: r.exchange, subject: subject}
	}
	e, err := src.get(req.Context())
	if err != nil {
		r.refuse(sw, req, err)
		return
	}
	req, cancel := proxy.WithGRPCDeadline(req)
	defer cancel()
	ctx := context.WithValue(req.Context(), attemptKey{}, &attempt{ctx: req.Context(), tokens: src, entry: e, rest: rest, grpc: proxy.IsGRPC(req)})
	req, stop := proxy.BoundBodyIdle(sw, req.WithContext(ctx), r.bodyIdle)
	defer stop()
	r.proxy.ServeHTTP(sw, req)
}

func (r *Route) countCode(code int) {
	if code < 0 || code >= len(r.byCode) {
		r.requests.WithLabelValues(strconv.Itoa(code)).Inc()
		return
	}
	c := r.byCode[code].Load()
	if c == nil {
		counter := r.requests.WithLabelValues(strconv.Itoa(code))
		c = &counter
		r.byCode[code].Store(c)
	}
	(*c).Inc()
}

func (r *Route) refuse(w http.ResponseWriter, req *http.Request, err error) {
	if req.Context().Err() != nil && !errors.Is(err, errTokenUnavailable) {
		w.WriteHeader(499) // the app left while the token was fetched
		return
	}
	r.log.DebugContext(req.Context(), "no token for the call", "error", err.Error())
	proxy.WriteError(w, req, http.StatusServiceUnavailable, "token_unavailable",
		"no access token could be obtained for route "+strconv.Quote(r.Name)+"; the sidecar's log says why")
}

func (r *Route) rewrite(pr *httputil.ProxyRequest) {
	a, _ := pr.Out.Context().Value(attemptKey{}).(*attempt)
	if a == nil {
		return // retryTransport refuses to send it
	}
	pr.Out.URL.Path, pr.Out.URL.RawPath = joinPath(r.target, a.rest)
	a.signErr = authorize(pr.Out, a.entry, r.dpop)
	// The handle of the caller's token never leaves the pod.
	pr.Out.Header.Del(handoff.Header)
	if pr.Out.Body != nil {
		a.body = newReplayBody(pr.Out.Body, maxReplayBytes, pr.Out.ContentLength)
		pr.Out.Body = a.body
	}
}

// climbsOut reports whether rest, an escaped path, climbs above where it
// starts once its dot segments are resolved: decoded (%2e%2e is ".."),
// and decoded again, up to three times, for an upstream or a gateway in
// front of it that decodes twice (%252e%252e); with a backslash taken for
// a slash (as IIS and ASP.NET take it) and a segment's ";parameters"
// dropped (as Tomcat drops them from "..;"). "/a/../b" stays below its
// start and is left to the upstream.
func climbsOut(rest string) bool {
	for range 3 {
		decoded, err := url.PathUnescape(rest)
		if err != nil || decoded == rest {
			return climbs(rest)
		}
		if climbs(decoded) {
			return true
		}
		rest = decoded
	}
	return climbs(rest)
}

// climbs reports whether path, decoded, climbs above its start.
func climbs(path string) bool {
	depth := 0
	for seg := range strings.FieldsFuncSeq(path, func(c rune) bool { return c == '/' || c == '\\' }) {
		seg, _, _ = strings.Cut(seg, ";")
		switch seg {
		case ".", "":
		case "..":
			if depth--; depth < 0 {
				return true
			}
		default:
			depth++
		}
	}
	return false
}

// joinPath appends rest, an escaped path, to target's path. An empty rest
// is the base path itself: /payments maps to the base URL as written.
func joinPath(target *url.URL, rest string) (path, rawPath string) {
	base := target.EscapedPath()
	var raw string
	switch {
	case rest == "":
		raw = base
	case strings.HasPrefix(rest, "/"):
		raw = strings.TrimSuffix(base, "/") + rest
	default:
		raw = strings.TrimSuffix(base, "/") + "/" + rest
	}
	if raw == "" {
		raw = "/"
	}
	path, err := url.PathUnescape(raw)
	if err != nil { // cannot happen: both parts come from EscapedPath
		return raw, ""
	}
	return path, raw
}
