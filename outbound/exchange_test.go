package outbound

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/authsidecar/authsidecar/internal/handoff"
	"github.com/authsidecar/authsidecar/proxy"
)

// exchangeEnv is one token-exchange route "payments" with an actor token,
// in a process that also runs inbound (config.Load asks for it).
func exchangeEnv(ts *tokenServer, upstreamURL string) map[string]string {
	return env(ts, upstreamURL, map[string]string{
		"AUTHSIDECAR_ROUTE_PAYMENTS_GRANT":    "token-exchange",
		"AUTHSIDECAR_ROUTE_PAYMENTS_ACTOR":    "true",
		"AUTHSIDECAR_ROUTE_PAYMENTS_AUDIENCE": "payments-api",
		"AUTHSIDECAR_ROUTE_PAYMENTS_SCOPES":   "payments:write",
		"AUTHSIDECAR_INBOUND_ISSUERS":         "https://idp.example",
		"AUTHSIDECAR_INBOUND_AUDIENCES":       "orders",
	})
}

func TestATokenExchangeRouteCallsOnBehalfOfTheCaller(t *testing.T) {
	ts := newTokenServer(t)
	ts.set(func(ts *tokenServer) { ts.expiresIn = 300 })
	up := newUpstream(t, ts)
	clock := newFakeClock()
	store := handoff.New(100)
	h := buildWith(t, exchangeEnv(ts, up.URL), clock, func(o *Options) { o.Handoff = store })
	keep := func(token string) string {
		handle := store.Handle(token)
		store.Keep(handle, token, clock.Now().Add(time.Hour), clock.Now())
		return handle
	}
	alice, bob := keep("caller-token-alice"), keep("caller-token-bob")
	call := func(handle string) *http.Response {
		req, _ := http.NewRequestWithContext(t.Context(), "POST", "/payments/charges", nil)
		if handle != "" {
			req.Header.Set(handoff.Header, handle)
		}
		rec := httptest.NewRecorder()
		h.Handler().ServeHTTP(rec, req)
		return rec.Result()
	}

	// 20 concurrent calls for one caller: one exchange, preceded by the
	// one fetch of the actor token.
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			if resp := call(alice); resp.StatusCode != http.StatusOK {
				t.Errorf("a call on behalf of alice: %d", resp.StatusCode)
			}
		})
	}
	wg.Wait()
	if got := ts.calls.Load(); got != 2 {
		t.Fatalf("%d token requests for 20 calls, want 2: the actor token and one exchange", got)
	}
	forms := ts.allForms()
	actor, exch := forms[0], forms[1]
	if actor.Get("grant_type") != "client_credentials" || exch.Get("grant_type") != grantTokenExchange {
		t.Fatalf("grants %q then %q, want client_credentials then token exchange", actor.Get("grant_type"), exch.Get("grant_type"))
	}
	for k, want := range map[string]string{
		"subject_token": "caller-token-alice", "subject_token_type": tokenTypeAccess,
		"actor_token": "tok-1", "actor_token_type": tokenTypeAccess,
		"audience": "payments-api", "scope": "payments:write",
	} {
		if got := exch.Get(k); got != want {
			t.Errorf("exchange %s = %q, want %q", k, got, want)
		}
	}
	seen := up.last()
	if seen.token != "tok-2" || seen.header.Get(handoff.Header) != "" {
		t.Errorf("the upstream got token %q and %s %q; want the exchanged tok-2 and no handle", seen.token, handoff.Header, seen.header.Get(handoff.Header))
	}

	// Another caller, another exchange; alice's is still cached.
	call(bob)
	call(alice)
	if got := ts.calls.Load(); got != 3 {
		t.Errorf("%d token requests after bob's call, want 3", got)
	}
	// Close to its expiry (300 s; kept until 30 s before) alice's token is
	// exchanged again.
	clock.Advance(271 * time.Second)
	call(alice)
	if got := ts.calls.Load(); got != 4 {
		t.Errorf("%d token requests after alice's exchanged token neared expiry, want 4", got)
	}

	// No handle, a made-up one, one for another token: 401, nothing sent.
	calls := up.calls.Load()
	for name, handle := range map[string]string{"no handle": "", "a made-up handle": "bm9wZQ", "a forgotten caller": store.Handle("caller-token-carol")} {
		resp := call(handle)
		if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get(proxy.ErrorHeader) != "no_caller_token" {
			t.Errorf("%s: %d %s %q, want 401 no_caller_token", name, resp.StatusCode, proxy.ErrorHeader, resp.Header.Get(proxy.ErrorHeader))
		}
	}
	if up.calls.Load() != calls {
		t.Error("a call without a caller token reached the upstream")
	}
}

func TestAFailedExchangeIsNotRepeatedAtOnce(t *testing.T) {
	ts := newTokenServer(t)
	ts.set(func(ts *tokenServer) { ts.status = http.StatusBadRequest })
	up := newUpstream(t, ts)
	clock := newFakeClock()
	store := handoff.New(100)
	environ := exchangeEnv(ts, up.URL)
	delete(environ, "AUTHSIDECAR_ROUTE_PAYMENTS_ACTOR")
	h := buildWith(t, environ, clock, func(o *Options) { o.Handoff = store })
	handle := store.Handle("caller")
	store.Keep(handle, "caller", clock.Now().Add(time.Hour), clock.Now())
	for range 3 {
		req, _ := http.NewRequestWithContext(t.Context(), "GET", "/payments/x", nil)
		req.Header.Set(handoff.Header, handle)
		rec := httptest.NewRecorder()
		h.Handler().ServeHTTP(rec, req)
		if rec.Code != http.StatusServiceUnavailable || rec.Header().Get(proxy.ErrorHeader) != "token_unavailable" {
			t.Fatalf("a refused exchange: %d %s", rec.Code, rec.Body)
		}
	}
	if got := ts.calls.Load(); got != 1 {
		t.Errorf("%d exchanges for 3 calls within a second, want 1", got)
	}
	clock.Advance(exchangeFailureTTL + time.Millisecond)
	ts.set(func(ts *tokenServer) { ts.status = 0 })
	req, _ := http.NewRequestWithContext(t.Context(), "GET", "/payments/x", nil)
	req.Header.Set(handoff.Header, handle)
	rec := httptest.NewRecorder()
	h.Handler().ServeHTTP(rec, req)
	if rec.Code != http.StatusOK || ts.calls.Load() != 2 {
		t.Errorf("after the failure expired: %d with %d exchanges, want 200 after a second one", rec.Code, ts.calls.Load())
	}
}

// BenchmarkExchangeCacheHit is the cost of a token-exchange route's token
// once the caller's exchange is cached: the lookup every call makes.
func BenchmarkExchangeCacheHit(b *testing.B) {
	ts := newTokenServer(&testing.T{})
	b.Cleanup(ts.Close)
	store := handoff.New(100)
	opts, err := loadOptions(exchangeEnv(ts, "http://upstream.test"))
	if err != nil {
		b.Fatal(err)
	}
	opts.Handoff = store
	o, err := New(*opts)
	if err != nil {
		b.Fatal(err)
	}
	x := o.routes[0].exchange
	subject := strings.Repeat("caller-token.", 80) // about 1 KiB, as a JWT
	if _, err := x.get(b.Context(), subject); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if _, err := x.get(b.Context(), subject); err != nil {
			b.Fatal(err)
		}
	}
}

// Two calls for one caller refused together are both sent again, with the
// one new token a single exchange gets: the second refusal finds the token
// already replaced, as Cache.refused does, and is not taken for a second
// refusal within refusalCooldown.
func TestCallsRefusedTogetherAreBothRetriedAfterOneExchange(t *testing.T) {
	ts := newTokenServer(t)
	ts.set(func(ts *tokenServer) { ts.expiresIn = 300 })
	up := newUpstream(t, ts)
	both := make(chan struct{})
	var arrivals atomic.Int64
	up.handle = func(w http.ResponseWriter, r *http.Request, _ []byte) {
		if strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ") == "tok-1" {
			if arrivals.Add(1) == 2 {
				close(both)
			}
			select {
			case <-both:
			case <-time.After(waitLimit):
				t.Error("the second call never reached the upstream")
			}
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		w.WriteHeader(http.StatusOK)
	}
	clock := newFakeClock()
	store := handoff.New(100)
	environ := exchangeEnv(ts, up.URL)
	delete(environ, "AUTHSIDECAR_ROUTE_PAYMENTS_ACTOR")
	h := buildWith(t, environ, clock, func(o *Options) { o.Handoff = store })
	handle := store.Handle("caller")
	store.Keep(handle, "caller", clock.Now().Add(time.Hour), clock.Now())
	x := h.route("payments").exchange
	if _, err := x.get(t.Context(), "caller"); err != nil { // tok-1, before the calls
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := range 2 {
		wg.Go(func() {
			req, _ := http.NewRequestWithContext(t.Context(), "GET", "/payments/x", nil)
			req.Header.Set(handoff.Header, handle)
			rec := httptest.NewRecorder()
			h.Handler().ServeHTTP(rec, req)
			if rec.Code != http.StatusOK {
				t.Errorf("call %d: %d, want 200 after a retry with the new token", i+1, rec.Code)
			}
		})
	}
	wg.Wait()
	if got := ts.calls.Load(); got != 2 {
		t.Errorf("%d exchanges, want 2: the first token and one replacement for both refusals", got)
	}
}

func TestAnUpstreamRefusingEveryExchangedTokenCostsOneExchangePerCooldown(t *testing.T) {
	ts := newTokenServer(t)
	ts.set(func(ts *tokenServer) { ts.expiresIn = 300 })
	up := newUpstream(t, ts)
	up.handle = func(w http.ResponseWriter, _ *http.Request, _ []byte) { w.WriteHeader(http.StatusUnauthorized) }
	clock := newFakeClock()
	store := handoff.New(100)
	environ := exchangeEnv(ts, up.URL)
	delete(environ, "AUTHSIDECAR_ROUTE_PAYMENTS_ACTOR")
	h := buildWith(t, environ, clock, func(o *Options) { o.Handoff = store })
	handle := store.Handle("caller")
	store.Keep(handle, "caller", clock.Now().Add(time.Hour), clock.Now())
	call := func() {
		t.Helper()
		req, _ := http.NewRequestWithContext(t.Context(), "GET", "/payments/x", nil)
		req.Header.Set(handoff.Header, handle)
		rec := httptest.NewRecorder()
		h.Handler().ServeHTTP(rec, req)
		expectStatus(t, rec, http.StatusUnauthorized)
	}
	for range 20 {
		call()
	}
	if got := ts.calls.Load(); got != 2 {
		t.Errorf("20 refused calls made %d exchanges, want 2 (the first, and one after the first 401)", got)
	}
	clock.Advance(refusalCooldown)
	call()
	if got := ts.calls.Load(); got != 3 {
		t.Errorf("after the cooldown: %d exchanges, want 3", got)
	}
}
