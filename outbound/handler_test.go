package outbound

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestFailingTokenEndpointKeepsTheCachedTokenThenAnswers503(t *testing.T) {
	ts := newTokenServer(t) // expires_in 100
	up := newUpstream(t, ts)
	clock := newFakeClock()
	h := build(t, env(ts, up.URL, nil), clock)
	h.start(t)
	if d := clock.nextArmed(t); d != 80*time.Second {
		t.Fatalf("refresh due in %s, want 80s", d)
	}
	expectStatus(t, h.do(t, "GET", "/payments/orders", nil), http.StatusOK)

	ts.set(func(ts *tokenServer) { ts.status = http.StatusInternalServerError })
	clock.Advance(80 * time.Second)
	elapsed := 80 * time.Second
	// Failures 1 to 4: the retry waits double, ±20%, while the old token
	// still serves every call.
	for i, nominal := range []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second} {
		d := clock.nextArmed(t)
		if lo, hi := nominal*8/10, nominal*12/10; d < lo || d > hi {
			t.Fatalf("retry %d after %s, want within [%s, %s]", i+1, d, lo, hi)
		}
		expectStatus(t, h.do(t, "GET", "/payments/orders", nil), http.StatusOK)
		clock.Advance(d)
		elapsed += d
	}
	// The fifth wait (16s ±20%) would outlast the token: the retry comes
	// when it expires instead.
	if d, want := clock.nextArmed(t), 100*time.Second-elapsed; d != want {
		t.Fatalf("retry 5 after %s, want %s, when the token expires", d, want)
	}
	expectStatus(t, h.do(t, "GET", "/payments/orders", nil), http.StatusOK)
	clock.Advance(100*time.Second - elapsed)
	// The sixth failure, at expiry: the backoff goes on growing (32s ±20%).
	d6 := clock.nextArmed(t)
	if d6 < 25600*time.Millisecond || d6 > 38400*time.Millisecond {
		t.Fatalf("retry 6 after %s, want within [25.6s, 38.4s]", d6)
	}

	upstreamCalls := up.calls.Load()
	rec := h.do(t, "GET", "/payments/orders", nil)
	expectStatus(t, rec, http.StatusServiceUnavailable)
	body := decodeError(t, rec)
	if body["error"] != "token_unavailable" || !strings.Contains(body["error_description"].(string), `"payments"`) {
		t.Errorf("503 body = %v, want error token_unavailable naming the route", body)
	}
	if got := up.calls.Load(); got != upstreamCalls {
		t.Errorf("the upstream got %d calls while there was no token", got-upstreamCalls)
	}
	if got, want := ts.calls.Load(), int64(7); got != want {
		t.Errorf("token requests = %d, want %d: 1 success, 6 failures", got, want)
	}
	expectCounter(t, h, "authsidecar_token_fetches_total", `
		authsidecar_token_fetches_total{result="error",route="payments"} 6
		authsidecar_token_fetches_total{result="success",route="payments"} 1
	`)
	expectCounter(t, h, "authsidecar_outbound_requests_total", `
		authsidecar_outbound_requests_total{code="200",route="payments"} 6
		authsidecar_outbound_requests_total{code="503",route="payments"} 1
	`)

	// The endpoint recovers: the next retry gets a token and calls flow.
	ts.set(func(ts *tokenServer) { ts.status = 0 })
	clock.Advance(d6)
	if d := clock.nextArmed(t); d != 80*time.Second {
		t.Fatalf("after recovery the refresh is due in %s, want 80s", d)
	}
	expectStatus(t, h.do(t, "GET", "/payments/orders", nil), http.StatusOK)
	if tok := up.last().token; tok != "tok-8" {
		t.Errorf("after recovery the upstream got %q, want tok-8", tok)
	}
}

func TestUpstream401IsRetriedOnceWithANewTokenAndTheSameBody(t *testing.T) {
	for _, tc := range []struct {
		name     string
		method   string
		body     string
		readBody bool // whether the upstream reads the body before its 401
	}{
		{"a body the upstream read", "POST", strings.Repeat("order;", 50_000), true},
		{"a body the upstream did not read", "POST", `{"amount": 42}`, false},
		{"a large body the upstream did not read", "POST", strings.Repeat("y", maxReplayBytes), false},
		{"a call without a body", "GET", "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts := newTokenServer(t)
			up := newUpstream(t, ts)
			up.handle = func(w http.ResponseWriter, r *http.Request, _ []byte) {
				if up.calls.Load() == 1 {
					if tc.readBody {
						readAll(t, r)
					}
					w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
					http.Error(w, "token revoked", http.StatusUnauthorized)
					return
				}
				up.mu.Lock()
				up.seen[len(up.seen)-1].body = readAll(t, r)
				up.mu.Unlock()
				w.WriteHeader(http.StatusCreated)
			}
			h := build(t, env(ts, up.URL, nil), nil)
			srv := httptest.NewServer(h.Handler())
			t.Cleanup(srv.Close)

			resp := send(t, tc.method, srv.URL+"/payments/orders", tc.body)
			if resp.StatusCode != http.StatusCreated {
				t.Fatalf("status = %d, want 201 from the retry", resp.StatusCode)
			}
			if got := ts.calls.Load(); got != 2 {
				t.Errorf("token requests = %d, want 2: the first token, then exactly one more", got)
			}
			if got := up.calls.Load(); got != 2 {
				t.Fatalf("upstream calls = %d, want 2", got)
			}
			if up.seen[0].token != "tok-1" || up.seen[1].token != "tok-2" {
				t.Errorf("tokens sent = %s then %s, want tok-1 then tok-2", up.seen[0].token, up.seen[1].token)
			}
			if string(up.seen[1].body) != tc.body {
				t.Errorf("the retry carried %d bytes, want the same %d", len(up.seen[1].body), len(tc.body))
			}
		})
	}
}

func TestUpstream401WithABodyOverTheBoundIsNotRetried(t *testing.T) {
	ts := newTokenServer(t)
	up := newUpstream(t, ts)
	up.handle = func(w http.ResponseWriter, r *http.Request, _ []byte) {
		readAll(t, r)
		http.Error(w, "no", http.StatusUnauthorized)
	}
	h := build(t, env(ts, up.URL, nil), nil)
	srv := httptest.NewServer(h.Handler())
	t.Cleanup(srv.Close)

	resp := send(t, "POST", srv.URL+"/payments/upload", strings.Repeat("x", maxReplayBytes+1))
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("status = %d, want the upstream's 401", resp.StatusCode)
	}
	if got := up.calls.Load(); got != 1 {
		t.Errorf("upstream calls = %d, want 1: a body over %d bytes is not replayed", got, maxReplayBytes)
	}
	// The refused token is dropped all the same: the next call starts
	// with a new one.
	expectStatus(t, h.do(t, "GET", "/payments/x", nil), http.StatusUnauthorized)
	if tok := up.seen[1].token; tok != "tok-2" {
		t.Errorf("the next call used %q, want tok-2", tok)
	}
}

func TestPathAndQueryMapping(t *testing.T) {
	ts := newTokenServer(t)
	up := newUpstream(t, ts)
	h := build(t, env(ts, up.URL, map[string]string{
		"AUTHSIDECAR_OUTBOUND_ROUTES":    "bare,api,slash",
		"AUTHSIDECAR_ROUTE_PAYMENTS_URL": "",
		"AUTHSIDECAR_ROUTE_BARE_URL":     up.URL,
		"AUTHSIDECAR_ROUTE_API_URL":      up.URL + "/api/v2",
		"AUTHSIDECAR_ROUTE_SLASH_URL":    up.URL + "/api/v2/",
	}), nil)
	for _, tc := range []struct{ name, target, want string }{
		{"base without a path, nested path", "/bare/orders/42", "/orders/42"},
		{"base without a path, route root", "/bare", "/"},
		{"base without a path, route root with slash", "/bare/", "/"},
		{"base with a path, nested path", "/api/orders/42", "/api/v2/orders/42"},
		{"base with a path, route root", "/api", "/api/v2"},
		{"base with a path, route root with slash", "/api/", "/api/v2/"},
		{"base with a trailing slash", "/slash/orders", "/api/v2/orders"},
		{"base with a trailing slash, route root", "/slash", "/api/v2/"},
		{"encoded characters kept as sent", "/api/files/a%2Fb/c%20d", "/api/v2/files/a%2Fb/c%20d"},
		{"query kept", "/api/search?q=a+b&tag=x%26y&tag=z", "/api/v2/search?q=a+b&tag=x%26y&tag=z"},
		{"query on the route root", "/api?page=2", "/api/v2?page=2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			expectStatus(t, h.do(t, "GET", tc.target, nil), http.StatusOK)
			if got := up.last().requestURI; got != tc.want {
				t.Errorf("%s reached the upstream as %s, want %s", tc.target, got, tc.want)
			}
		})
	}
}

// TestAPathCannotClimbOutOfTheRoutesBasePath: dot segments, however
// spelt, that would take the upstream above the route's base path are
// refused before a token is fetched; those that stay below it go on.
func TestAPathCannotClimbOutOfTheRoutesBasePath(t *testing.T) {
	ts := newTokenServer(t)
	up := newUpstream(t, ts)
	h := build(t, env(ts, up.URL+"/api/v2", nil), nil)
	for _, target := range []string{
		"/payments/../admin",
		"/payments/..",
		"/payments/a/../../admin",
		"/payments/%2e%2e/admin",
		"/payments/%2E%2e/admin",
		"/payments/..%2fadmin",
		"/payments/..%5cadmin",
		"/payments/..;/admin",
		"/payments/./../admin",
	} {
		rec := h.do(t, "GET", target, nil)
		expectStatus(t, rec, http.StatusBadRequest)
		if !strings.Contains(rec.Body.String(), `"invalid_path"`) {
			t.Errorf("%s: %s, want invalid_path", target, rec.Body)
		}
	}
	if n := up.calls.Load(); n != 0 {
		t.Errorf("%d calls reached the upstream", n)
	}
	if n := ts.calls.Load(); n != 0 {
		t.Errorf("%d token requests for refused calls", n)
	}
	for target, want := range map[string]string{
		"/payments/a/../b":   "/api/v2/a/../b",
		"/payments/./x":      "/api/v2/./x",
		"/payments/..x/y":    "/api/v2/..x/y",
		"/payments/a/%2e%2e": "/api/v2/a/%2e%2e",
	} {
		expectStatus(t, h.do(t, "GET", target, nil), http.StatusOK)
		if got := up.last().requestURI; got != want {
			t.Errorf("%s reached the upstream as %s, want %s", target, got, want)
		}
	}
}

func TestDedicatedListenerKeepsThePath(t *testing.T) {
	ts := newTokenServer(t)
	up := newUpstream(t, ts)
	h := build(t, env(ts, up.URL+"/api", map[string]string{"AUTHSIDECAR_ROUTE_PAYMENTS_LISTEN": "127.0.0.1:4001"}), nil)
	r := h.route("payments")
	if r.Listen != "127.0.0.1:4001" {
		t.Errorf("Listen = %q, want 127.0.0.1:4001", r.Listen)
	}
	for target, want := range map[string]string{
		"/payments/orders?x=1": "/api/payments/orders?x=1",
		"/orders":              "/api/orders",
		"/":                    "/api/",
	} {
		rec := httptest.NewRecorder()
		r.Handler().ServeHTTP(rec, httptest.NewRequestWithContext(t.Context(), "GET", target, nil))
		expectStatus(t, rec, http.StatusOK)
		if got := up.last().requestURI; got != want {
			t.Errorf("%s reached the upstream as %s, want %s", target, got, want)
		}
	}
}

// callPayments sends the app's GET /payments/x with header through a
// sidecar built with extra, expects 200, and returns the sidecar and the
// header the upstream got.
func callPayments(t *testing.T, extra map[string]string, header http.Header) (*harness, http.Header) {
	t.Helper()
	ts := newTokenServer(t)
	up := newUpstream(t, ts)
	h := build(t, env(ts, up.URL, extra), nil)
	req := httptest.NewRequestWithContext(t.Context(), "GET", "/payments/x", nil)
	req.Header = header
	rec := httptest.NewRecorder()
	h.Handler().ServeHTTP(rec, req)
	expectStatus(t, rec, http.StatusOK)
	return h, up.last().header
}

func TestTheAppsAuthorizationIsReplacedAndForwardingHeadersSet(t *testing.T) {
	_, got := callPayments(t, nil, http.Header{"Authorization": {"Bearer the-apps-own"}, "X-Request-Id": {"req-1"}})
	if got.Get("Authorization") != "Bearer tok-1" || len(got.Values("Authorization")) != 1 {
		t.Errorf("Authorization = %q, want only %q", got.Values("Authorization"), "Bearer tok-1")
	}
	if got.Get("X-Request-Id") != "req-1" || got.Get("X-Forwarded-For") == "" {
		t.Errorf("X-Request-Id %q, X-Forwarded-For %q: want req-1 and set", got.Get("X-Request-Id"), got.Get("X-Forwarded-For"))
	}
}

// TestConnectionCannotTakeTheSidecarsHeadersAway: what the app's
// Connection header names goes on receipt (proxy.DropConnectionNamed),
// before the sidecar sets its own X-Request-Id: the forwarding, which
// removes what Connection names, would otherwise drop the id the access
// log carries.
func TestConnectionCannotTakeTheSidecarsHeadersAway(t *testing.T) {
	h, got := callPayments(t, map[string]string{"AUTHSIDECAR_ACCESS_LOG": "true"}, http.Header{
		"X-Request-Id": {"req-1"}, "X-Other": {"named"},
		"Connection": {"keep-alive, X-Request-Id, Authorization, X-Other"},
	})
	id := got.Get("X-Request-Id")
	if len(id) != 32 {
		t.Errorf("X-Request-Id %q, want one the sidecar made: the app's was named in Connection", id)
	}
	if !strings.Contains(h.log.String(), `"request_id":"`+id+`"`) {
		t.Errorf("the access log does not name the id the upstream got (%s):\n%s", id, h.log.String())
	}
	if got.Get("Authorization") != "Bearer tok-1" || got.Get("X-Other") != "" {
		t.Errorf("Authorization %q, X-Other %q: want the route's token and nothing", got.Get("Authorization"), got.Get("X-Other"))
	}
}

func TestUnknownRouteAnswers404NamingTheRoutes(t *testing.T) {
	ts := newTokenServer(t)
	h := build(t, env(ts, "http://upstream.test", map[string]string{
		"AUTHSIDECAR_OUTBOUND_ROUTES":   "payments,billing",
		"AUTHSIDECAR_ROUTE_BILLING_URL": "http://billing.test",
	}), nil)
	for _, target := range []string{"/shipping/x", "/", "/paymentsx/y"} {
		rec := h.do(t, "GET", target, nil)
		expectStatus(t, rec, http.StatusNotFound)
		name := strings.SplitN(strings.TrimPrefix(target, "/"), "/", 2)[0]
		want := `{"error":"unknown_route","error_description":"no route named \"` + name +
			`\"; the first path segment must name one of the known routes","routes":["billing","payments"]}` + "\n"
		if got := rec.Body.String(); got != want {
			t.Errorf("%s: body = %s, want %s", target, got, want)
		}
		if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
			t.Errorf("Content-Type = %q", ct)
		}
	}
	if got := ts.calls.Load(); got != 0 {
		t.Errorf("token requests = %d, want none for unknown routes", got)
	}
	expectCounter(t, h, "authsidecar_outbound_requests_total", `
		authsidecar_outbound_requests_total{code="404",route="_unknown"} 3
	`)
}

func TestUpstreamDownAnswers502(t *testing.T) {
	ts := newTokenServer(t)
	down := httptest.NewServer(http.NotFoundHandler())
	down.Close()
	h := build(t, env(ts, down.URL, nil), nil)
	rec := h.do(t, "GET", "/payments/x", nil)
	expectStatus(t, rec, http.StatusBadGateway)
	if body := decodeError(t, rec); body["error"] != "upstream_unavailable" {
		t.Errorf("502 body = %v, want error upstream_unavailable", body)
	}
	expectCounter(t, h, "authsidecar_outbound_requests_total", `
		authsidecar_outbound_requests_total{code="502",route="payments"} 1
	`)
	if n := testutil.CollectAndCount(h.m.OutboundDuration, "authsidecar_outbound_request_duration_seconds"); n != 1 {
		t.Errorf("duration series = %d, want 1", n)
	}
}

func expectStatus(t *testing.T, rec *httptest.ResponseRecorder, want int) {
	t.Helper()
	if rec.Code != want {
		t.Fatalf("status = %d, want %d; body %s", rec.Code, want, rec.Body)
	}
}

func expectCounter(t *testing.T, h *harness, name, want string) {
	t.Helper()
	help := map[string]string{
		"authsidecar_token_fetches_total":     "# HELP authsidecar_token_fetches_total Token endpoint requests by route and result (success, error).\n# TYPE authsidecar_token_fetches_total counter\n",
		"authsidecar_outbound_requests_total": "# HELP authsidecar_outbound_requests_total Outbound requests by route and response status code.\n# TYPE authsidecar_outbound_requests_total counter\n",
	}[name]
	if err := testutil.GatherAndCompare(h.reg, strings.NewReader(help+dedent(want)), name); err != nil {
		t.Error(err)
	}
}

func dedent(s string) string {
	var b strings.Builder
	for _, line := range strings.Split(s, "\n") {
		if line = strings.TrimSpace(line); line != "" {
			b.WriteString(line + "\n")
		}
	}
	return b.String()
}

func decodeError(t *testing.T, rec *httptest.ResponseRecorder) map[string]any {
	t.Helper()
	var body map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
		t.Fatalf("body %q is not JSON: %v", rec.Body, err)
	}
	return body
}

func send(t *testing.T, method, url, body string) *http.Response {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body == "" {
		req.Body = nil
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	return resp
}

func readAll(t *testing.T, r *http.Request) []byte {
	b, err := io.ReadAll(r.Body)
	if err != nil {
		t.Errorf("upstream reading the body: %v", err)
	}
	return b
}

func TestAnUpstreamRefusingEverythingCostsOneTokenPerCooldown(t *testing.T) {
	ts := newTokenServer(t)
	up := newUpstream(t, ts)
	up.handle = func(w http.ResponseWriter, _ *http.Request, _ []byte) { w.WriteHeader(http.StatusUnauthorized) }
	clock := newFakeClock()
	h := build(t, env(ts, up.URL, nil), clock)
	for range 20 {
		expectStatus(t, h.do(t, "GET", "/payments/x", nil), http.StatusUnauthorized)
	}
	if got := ts.calls.Load(); got != 2 {
		t.Errorf("20 refused calls made %d token requests, want 2 (the first, and one after the first 401)", got)
	}
	clock.Advance(refusalCooldown)
	expectStatus(t, h.do(t, "GET", "/payments/x", nil), http.StatusUnauthorized)
	if got := ts.calls.Load(); got != 3 {
		t.Errorf("after the cooldown: %d token requests, want 3", got)
	}
}

func TestAnUpstreamAlternatingBetween200And401CostsOneTokenPerCooldown(t *testing.T) {
	ts := newTokenServer(t)
	up := newUpstream(t, ts)
	var calls atomic.Int64
	up.handle = func(w http.ResponseWriter, _ *http.Request, _ []byte) {
		if calls.Add(1)%2 == 0 {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		w.WriteHeader(http.StatusOK)
	}
	clock := newFakeClock()
	h := build(t, env(ts, up.URL, nil), clock)
	for range 20 {
		h.do(t, "GET", "/payments/x", nil)
	}
	if got := ts.calls.Load(); got != 2 {
		t.Errorf("20 calls, every other one refused: %d token requests, want 2 (the first, and one after the first 401)", got)
	}
	clock.Advance(refusalCooldown)
	for range 4 {
		h.do(t, "GET", "/payments/x", nil)
	}
	if got := ts.calls.Load(); got != 3 {
		t.Errorf("after the cooldown: %d token requests, want 3", got)
	}
}

func TestTraceAndConnectAreNotForwarded(t *testing.T) {
	ts := newTokenServer(t)
	up := newUpstream(t, ts)
	h := build(t, env(ts, up.URL, map[string]string{"AUTHSIDECAR_ROUTE_PAYMENTS_LISTEN": "127.0.0.1:0"}), nil)
	for _, m := range []string{http.MethodTrace, http.MethodConnect} {
		expectStatus(t, h.do(t, m, "/payments/x", nil), http.StatusMethodNotAllowed)
		rec := httptest.NewRecorder()
		h.route("payments").Handler().ServeHTTP(rec, httptest.NewRequest(m, "/x", nil))
		expectStatus(t, rec, http.StatusMethodNotAllowed)
	}
	if n := up.calls.Load(); n != 0 {
		t.Errorf("the upstream got %d calls, want none", n)
	}
	if n := ts.calls.Load(); n != 0 {
		t.Errorf("%d token requests, want none", n)
	}
}

func TestAStalledBodyFromTheAppEndsTheCall(t *testing.T) {
	ts := newTokenServer(t)
	up := newUpstream(t, ts)
	h := build(t, env(ts, up.URL, map[string]string{"AUTHSIDECAR_BODY_IDLE_TIMEOUT": "200ms"}), nil)
	srv := httptest.NewServer(h.Handler())
	t.Cleanup(srv.Close)
	c, err := net.Dial("tcp", srv.Listener.Addr().String())
	must(t, err)
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	_, err = io.WriteString(c, "POST /payments/upload HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100\r\n\r\nsome, then nothing")
	must(t, err)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	must(t, err)
	if resp.StatusCode != http.StatusRequestTimeout {
		t.Errorf("status %d, want 408", resp.StatusCode)
	}
}

func TestAHostNamingARouteWinsOverThePath(t *testing.T) {
	ts := newTokenServer(t)
	up := newUpstream(t, ts)
	other := newUpstream(t, ts)
	h := build(t, env(ts, up.URL, map[string]string{
		"AUTHSIDECAR_OUTBOUND_ROUTES":   "payments,billing",
		"AUTHSIDECAR_ROUTE_BILLING_URL": other.URL,
	}), nil)
	for _, tc := range []struct {
		host, path string
		to         *upstream
		uri        string
	}{
		{"payments", "/pkg.Payments/Charge", up, "/pkg.Payments/Charge"},
		{"payments:4000", "/pkg.Payments/Charge", up, "/pkg.Payments/Charge"},
		{"payments.localhost:4000", "/x", up, "/x"},
		{"PAYMENTS.localhost", "/x", up, "/x"},
		{"billing", "/payments/x", other, "/payments/x"}, // the Host wins over the path
		{"127.0.0.1:4000", "/billing/y", other, "/y"},    // no route by that name: the path decides
		{"localhost:4000", "/payments/z", up, "/z"},
	} {
		req := httptest.NewRequest("GET", "http://"+tc.host+tc.path, nil)
		req.Host = tc.host
		rec := httptest.NewRecorder()
		h.Handler().ServeHTTP(rec, req)
		expectStatus(t, rec, http.StatusOK)
		if got := tc.to.last().requestURI; got != tc.uri {
			t.Errorf("Host %s, path %s: the upstream got %s, want %s", tc.host, tc.path, got, tc.uri)
		}
	}
}

func TestAGRPCUnauthenticatedIsRetriedOnceWithANewToken(t *testing.T) {
	ts := newTokenServer(t)
	up := newUpstream(t, ts)
	var refused atomic.Bool
	up.handle = func(w http.ResponseWriter, r *http.Request, _ []byte) {
		body, _ := io.ReadAll(r.Body)
		if refused.CompareAndSwap(false, true) { // the first call only
			w.Header().Set("Content-Type", "application/grpc")
			w.Header().Set("Grpc-Status", "16")
			w.Header().Set("Grpc-Message", "token%20refused")
			w.WriteHeader(http.StatusOK)
			return
		}
		w.Header().Set("Content-Type", "application/grpc")
		w.Header().Set("Trailer", "Grpc-Status")
		w.WriteHeader(http.StatusOK)
		w.Write(body)
		w.Header().Set("Grpc-Status", "0")
	}
	h := build(t, env(ts, up.URL, nil), newFakeClock())
	msg := []byte{0, 0, 0, 0, 5, 'h', 'e', 'l', 'l', 'o'} // one length-prefixed message
	req := httptest.NewRequest("POST", "http://payments/pkg.Payments/Charge", bytes.NewReader(msg))
	req.Host = "payments"
	req.Header.Set("Content-Type", "application/grpc")
	rec := httptest.NewRecorder()
	h.Handler().ServeHTTP(rec, req)
	if rec.Code != 200 || rec.Result().Trailer.Get("Grpc-Status") != "0" || !bytes.Equal(rec.Body.Bytes(), msg) {
		t.Fatalf("got %d, trailer %q, body %q; want the retried call's answer", rec.Code, rec.Result().Trailer.Get("Grpc-Status"), rec.Body.Bytes())
	}
	if n := ts.calls.Load(); n != 2 {
		t.Errorf("%d token requests, want 2: the first, and one after UNAUTHENTICATED", n)
	}
	if n := up.calls.Load(); n != 2 {
		t.Errorf("the upstream got %d calls, want 2", n)
	}
}

// A streaming gRPC call (client streaming, bidi) whose request stream the
// app keeps open until it is answered is refused at once: its stream
// cannot be replayed, and waiting for its end held the UNAUTHENTICATED
// back until the stream idled out (BODY_IDLE_TIMEOUT, 30 s), or for
// ever without that bound.
func TestAGRPCStreamRefusedWhileOpenIsAnsweredAtOnce(t *testing.T) {
	ts := newTokenServer(t)
	up := newUpstream(t, ts)
	up.handle = func(w http.ResponseWriter, _ *http.Request, _ []byte) {
		w.Header().Set("Content-Type", "application/grpc")
		w.Header().Set("Grpc-Status", "16")
		w.WriteHeader(http.StatusOK)
	}
	// No BODY_IDLE_TIMEOUT: the wait for the stream's end is then for
	// ever, and the bound's own reads do not outlive the call.
	h := buildWith(t, env(ts, up.URL, nil), newFakeClock(), func(o *Options) { o.BodyIdleTimeout = 0 })
	stream, app := io.Pipe()
	t.Cleanup(func() { _ = app.Close() })
	go func() { _, _ = app.Write([]byte{0, 0, 0, 0, 5, 'h', 'e', 'l', 'l', 'o'}) }() // one message, and the stream stays open
	req := httptest.NewRequest("POST", "http://payments/pkg.Payments/Chat", stream)
	req.Host = "payments"
	req.Header.Set("Content-Type", "application/grpc")
	rec := httptest.NewRecorder()
	done := make(chan struct{})
	go func() { h.Handler().ServeHTTP(rec, req); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("a refused gRPC stream still unanswered after 5 s")
	}
	if rec.Code != 200 || rec.Header().Get("Grpc-Status") != "16" || up.calls.Load() != 1 {
		t.Errorf("got %d grpc-status %q after %d upstream calls; want the upstream's UNAUTHENTICATED, relayed", rec.Code, rec.Header().Get("Grpc-Status"), up.calls.Load())
	}
	if h.route("payments").cache.cur.Load() != nil {
		t.Error("the refused token was kept; want it dropped all the same")
	}
}
