package outbound

import (
	"log/slog"
	"net"
	"net/http"
	"sort"
	"strconv"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/authsidecar/authsidecar/metrics"
	"github.com/authsidecar/authsidecar/proxy"
)

// unknownRouteLabel is the route label of calls to no known route. Route
// names match [a-z0-9-]+, so it cannot clash with one.
const unknownRouteLabel = "_unknown"

// newSharedHandler serves the shared outbound listener: /<route>/rest?query
// goes to the route's base URL with /<route> stripped and the query kept.
func newSharedHandler(routes []*Route, m *metrics.Metrics, logger *slog.Logger, obs *observer) http.Handler {
	h := &sharedHandler{byName: make(map[string]*Route, len(routes)), log: logger, obs: obs}
	for _, r := range routes {
		h.byName[r.Name] = r
		h.names = append(h.names, r.Name)
	}
	sort.Strings(h.names)
	h.requests = m.OutboundRequests
	return h
}

type sharedHandler struct {
	byName map[string]*Route
	names  []string
	// requests counts 404s here; its series is made at the first one, so
	// that a sidecar whose app never errs does not show a zero series.
	requests *prometheus.CounterVec
	log      *slog.Logger
	obs      *observer
}

func (h *sharedHandler) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	h.obs.observe(w, req, h.serve)
}

// serve answers req on w and returns the route it called, "" for none.
func (h *sharedHandler) serve(w *proxy.StatusWriter, req *http.Request) string {
	if refuseMethod(w, req) {
		return ""
	}
	// A Host that names a route wins: that is how a gRPC client, whose
	// method path cannot carry a route, reaches one
	// (grpc.WithAuthority("payments")).
	if r := h.byName[routeOfHost(req.Host)]; r != nil {
		r.serve(w, req, req.URL.EscapedPath())
		return r.Name
	}
	name, rest := splitRoute(req.URL.EscapedPath())
	if r := h.byName[name]; r != nil {
		r.serve(w, req, rest)
		return r.Name
	}
	h.requests.WithLabelValues(unknownRouteLabel, "404").Inc()
	const maxShown = 64 // the name comes from the app: keep the answer small
	if len(name) > maxShown {
		name = name[:maxShown] + "…"
	}
	h.log.DebugContext(req.Context(), "call to an unknown route", "route", name)
	proxy.WriteErrorBody(w, req, http.StatusNotFound, proxy.ErrorBody{
		Error:       "unknown_route",
		Description: "no route named " + strconv.Quote(name) + "; the first path segment must name one of the known routes",
		Routes:      h.names,
	})
	return ""
}

// routeOfHost is the route a Host header names: "payments" or
// "payments.localhost", with any port, names route payments.
func routeOfHost(host string) string {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	return strings.TrimSuffix(host, ".localhost")
}

// splitRoute splits "/payments/a/b" into "payments" and "/a/b", and
// "/payments" into "payments" and "".
func splitRoute(escapedPath string) (name, rest string) {
	p := strings.TrimPrefix(escapedPath, "/")
	if i := strings.IndexByte(p, '/'); i >= 0 {
		return p[:i], p[i:]
	}
	return p, ""
}

// refuseMethod answers TRACE and CONNECT with 405 and reports whether it
// did. An upstream that echoes a TRACE would hand the route's token back
// to whoever sent it; CONNECT would make the sidecar a tunnel carrying the
// service's identity.
func refuseMethod(w http.ResponseWriter, req *http.Request) bool {
	if req.Method != http.MethodTrace && req.Method != http.MethodConnect {
		return false
	}
	w.Header().Set("Allow", "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS")
	proxy.WriteError(w, req, http.StatusMethodNotAllowed, "method_not_allowed", req.Method+" is not forwarded")
	return true
}
