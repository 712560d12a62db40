package outbound

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/authsidecar/authsidecar/proxy"
)

// TestACallAfterTheProviderReturnsFetchesAtOnce: while the refresh loop
// backs off (here 16 s), a call that finds no token starts a fetch of its
// own when none failed in the last probeInterval, so that the first call
// after the identity provider returns gets a token at once. Calls in
// between are answered 503 without asking the provider.
func TestACallAfterTheProviderReturnsFetchesAtOnce(t *testing.T) {
	ts := newTokenServer(t)
	ts.set(func(ts *tokenServer) { ts.status = http.StatusServiceUnavailable })
	up := newUpstream(t, ts)
	clock := newFakeClock()
	h := build(t, env(ts, up.URL, nil), clock)
	h.start(t)
	// Failures 1 to 4 from the refresh loop; the fifth wait is 16 s ±20%.
	var backoff time.Duration
	for range 5 {
		backoff = clock.nextArmed(t)
		if ts.calls.Load() < 5 {
			clock.Advance(backoff)
		}
	}
	if backoff < 12*time.Second {
		t.Fatalf("the refresh loop backs off %s after 5 failures, want about 16s", backoff)
	}
	asked := ts.calls.Load()

	rec := h.do(t, "GET", "/payments/orders", nil)
	expectStatus(t, rec, http.StatusServiceUnavailable)
	if got := rec.Header().Get("Retry-After"); got != "1" {
		t.Errorf("503 token_unavailable: Retry-After %q, want 1", got)
	}
	if got := rec.Header().Get(proxy.ErrorHeader); got != "token_unavailable" {
		t.Errorf("503: %s %q, want token_unavailable", proxy.ErrorHeader, got)
	}
	if got := ts.calls.Load(); got != asked {
		t.Fatalf("a call right after a failure asked the provider %d times, want 0", got-asked)
	}

	// Past probeInterval, still down: one call asks, and fails.
	clock.Advance(probeInterval)
	expectStatus(t, h.do(t, "GET", "/payments/orders", nil), http.StatusServiceUnavailable)
	expectStatus(t, h.do(t, "GET", "/payments/orders", nil), http.StatusServiceUnavailable)
	if got := ts.calls.Load(); got != asked+1 {
		t.Fatalf("two calls past probeInterval asked %d times, want 1", got-asked)
	}

	// The provider returns: the next call past probeInterval gets a token
	// long before the refresh loop's backoff ends.
	ts.set(func(ts *tokenServer) { ts.status = 0 })
	clock.Advance(probeInterval)
	expectStatus(t, h.do(t, "GET", "/payments/orders", nil), http.StatusOK)
	if got := ts.calls.Load(); got != asked+2 {
		t.Errorf("recovery took %d token requests, want 1", got-asked-1)
	}
	if up.calls.Load() != 1 {
		t.Errorf("the upstream got %d calls, want 1: none without a token", up.calls.Load())
	}
	// The refresh loop follows the new token: its refresh at 80%.
	for {
		if d := clock.nextArmed(t); d == 80*time.Second {
			break
		}
	}
}

func TestReadinessCanWaitForEveryRoutesToken(t *testing.T) {
	ts := newTokenServer(t)
	ts.set(func(ts *tokenServer) { ts.status = http.StatusUnauthorized })
	up := newUpstream(t, ts)
	clock := newFakeClock()
	environ := env(ts, up.URL, map[string]string{
		"AUTHSIDECAR_OUTBOUND_ROUTES":   "payments,billing",
		"AUTHSIDECAR_ROUTE_BILLING_URL": up.URL,
	})
	if checks := build(t, environ, clock).Checks(); len(checks) != 0 {
		t.Fatalf("by default readiness waits for %d route checks, want none", len(checks))
	}
	environ["AUTHSIDECAR_OUTBOUND_READY_REQUIRES_TOKENS"] = "true"
	h := build(t, environ, clock)
	checks := h.Checks()
	if len(checks) != 2 || checks["route payments"] == nil || checks["route billing"] == nil {
		t.Fatalf("checks %v, want one per route", checks)
	}
	if err := checks["route payments"](); err == nil || !strings.Contains(err.Error(), "no valid token yet") {
		t.Errorf("before any fetch: %v, want no valid token yet", err)
	}
	_, _ = h.route("payments").cache.Token(t.Context())
	if err := checks["route payments"](); err == nil || !strings.Contains(err.Error(), "answered 401") {
		t.Errorf("after a refused fetch: %v, want the refusal", err)
	}
	ts.set(func(ts *tokenServer) { ts.status = 0 })
	clock.Advance(probeInterval)
	if _, err := h.route("payments").cache.Token(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := checks["route payments"](); err != nil {
		t.Errorf("with a token: %v", err)
	}
	if err := checks["route billing"](); err == nil {
		t.Error("billing has no token, and is ready")
	}
	clock.Advance(100 * time.Second) // the token's lifetime
	if err := checks["route payments"](); err == nil {
		t.Error("payments' token expired, and it is ready")
	}
}

func TestARouteTimeoutAnswers504(t *testing.T) {
	ts := newTokenServer(t)
	up := newUpstream(t, ts)
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	up.handle = func(w http.ResponseWriter, r *http.Request, _ []byte) {
		if r.URL.Path == "/slow" {
			select {
			case <-release:
			case <-r.Context().Done():
			}
		}
		w.Header().Set(proxy.ErrorHeader, "spoofed")
		_, _ = w.Write([]byte("upstream answered"))
	}
	h := build(t, env(ts, up.URL, map[string]string{"AUTHSIDECAR_ROUTE_PAYMENTS_TIMEOUT": "200ms"}), nil)
	began := time.Now()
	rec := h.do(t, "GET", "/payments/slow", nil)
	expectStatus(t, rec, http.StatusGatewayTimeout)
	if body := decodeError(t, rec); body["error"] != "upstream_timeout" || rec.Header().Get(proxy.ErrorHeader) != "upstream_timeout" {
		t.Errorf("504: %v %v, want upstream_timeout", body, rec.Header())
	}
	if d := time.Since(began); d < 200*time.Millisecond || d > 3*time.Second {
		t.Errorf("the 504 came after %s, want just past 200ms", d)
	}
	rec = h.do(t, "GET", "/payments/fast", nil)
	expectStatus(t, rec, http.StatusOK)
	if rec.Header().Get(proxy.ErrorHeader) != "" {
		t.Errorf("the upstream's own %s reached the app: %v", proxy.ErrorHeader, rec.Header())
	}
	expectCounter(t, h, "authsidecar_outbound_requests_total", `
		authsidecar_outbound_requests_total{code="200",route="payments"} 1
		authsidecar_outbound_requests_total{code="504",route="payments"} 1
	`)
}

func TestTheSharedListenersRefusalsNameTheirError(t *testing.T) {
	ts := newTokenServer(t)
	h := build(t, env(ts, newUpstream(t, ts).URL, nil), nil)
	for target, code := range map[string]string{"/nowhere/x": "unknown_route"} {
		rec := h.do(t, "GET", target, nil)
		if got := rec.Header().Get(proxy.ErrorHeader); got != code {
			t.Errorf("%s: %s %q, want %q", target, proxy.ErrorHeader, got, code)
		}
	}
	rec := h.do(t, "TRACE", "/payments/x", nil)
	if got := rec.Header().Get(proxy.ErrorHeader); rec.Code != 405 || got != "method_not_allowed" {
		t.Errorf("TRACE: %d %q, want 405 method_not_allowed", rec.Code, got)
	}
}

func TestTheProbeGapGrowsWithTheOutage(t *testing.T) {
	for _, c := range []struct{ down, want time.Duration }{
		{0, probeInterval},
		{10 * time.Second, probeInterval},
		{20 * time.Second, probeInterval},
		{30 * time.Second, 750 * time.Millisecond},
		{2 * time.Minute, 3 * time.Second},
		{30 * time.Minute, maxProbeInterval},
	} {
		if got := probeGap(c.down); got != c.want {
			t.Errorf("probeGap(%v) = %v, want %v", c.down, got, c.want)
		}
	}
}

// TestProbesThinOutInALongOutage: a route that never got a token, with
// ten calls a second, through a 30-minute outage of its identity provider
// (on the fake clock). In its last five minutes the calls probe about
// once per maxProbeInterval, not twice a second (600 times), and once the
// provider is back a call gets a token within maxProbeInterval.
func TestProbesThinOutInALongOutage(t *testing.T) {
	ts := newTokenServer(t)
	ts.set(func(ts *tokenServer) { ts.status = http.StatusServiceUnavailable })
	up := newUpstream(t, ts)
	clock := newFakeClock()
	h := build(t, env(ts, up.URL, nil), clock)
	h.start(t)
	const step = 100 * time.Millisecond
	var lastFive int64
	for elapsed := time.Duration(0); elapsed < 30*time.Minute; elapsed += step {
		if elapsed == 25*time.Minute {
			lastFive = ts.calls.Load()
		}
		clock.Advance(step)
		expectStatus(t, h.do(t, "GET", "/payments/orders", nil), http.StatusServiceUnavailable)
	}
	lastFive = ts.calls.Load() - lastFive
	// 300 s / 8 s probes, and the refresh loop's retries (one a minute).
	if lastFive > 50 {
		t.Errorf("the last five minutes of the outage asked the provider %d times, want about 45", lastFive)
	}
	ts.set(func(ts *tokenServer) { ts.status = 0 })
	for waited := time.Duration(0); ; waited += step {
		if waited > maxProbeInterval+step {
			t.Fatalf("no token %v after the provider returned", waited)
		}
		clock.Advance(step)
		if h.do(t, "GET", "/payments/orders", nil).Code == http.StatusOK {
			t.Logf("a token %v after the provider returned; %d requests in the outage's last five minutes", waited, lastFive)
			break
		}
	}
}
