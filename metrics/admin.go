package metrics

import (
	"encoding/json"
	"net/http"
	"sort"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Readiness collects the checks behind /readyz. A part of the program adds
// a check when it starts; the process is ready when every check passes and
// it is not shutting down.
type Readiness struct {
	mu       sync.Mutex
	checks   map[string]func() error
	stopping atomic.Bool
}

// NewReadiness returns a Readiness with no checks: ready until one is added.
func NewReadiness() *Readiness {
	return &Readiness{checks: map[string]func() error{}}
}

// Add registers check under name; a non-nil error means "not ready" and is
// shown to whoever asks /readyz, so it must not carry secrets.
func (r *Readiness) Add(name string, check func() error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.checks[name] = check
}

// SetStopping turns /readyz to 503 for good, so that load balancers stop
// sending new requests before the drain begins.
func (r *Readiness) SetStopping() { r.stopping.Store(true) }

// Failing returns the failing checks by name, and "shutdown" while stopping.
func (r *Readiness) Failing() map[string]string {
	r.mu.Lock()
	defer r.mu.Unlock()
	failing := map[string]string{}
	if r.stopping.Load() {
		failing["shutdown"] = "draining after SIGTERM"
	}
	for name, check := range r.checks {
		if err := check(); err != nil {
			failing[name] = err.Error()
		}
	}
	return failing
}

// NewAdminHandler serves /metrics from g, /healthz and /readyz.
func NewAdminHandler(g prometheus.Gatherer, ready *Readiness) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(g, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		failing := ready.Failing()
		if len(failing) == 0 {
			writeJSON(w, http.StatusOK, map[string]any{"status": "ready"})
			return
		}
		names := make([]string, 0, len(failing))
		for n := range failing {
			names = append(names, n)
		}
		sort.Strings(names)
		w.Header().Set("Retry-After", "1")
		writeJSON(w, http.StatusServiceUnavailable, map[string]any{"status": "not ready", "not_ready": names, "reasons": failing})
	})
	return mux
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
