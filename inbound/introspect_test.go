package inbound_test

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/authsidecar/authsidecar/inbound"
	"github.com/authsidecar/authsidecar/internal/clock"
	"github.com/authsidecar/authsidecar/internal/reload"
)

type introFixture struct {
	*fixture
	clk *clock.Fake
}

func newIntroFixture(t *testing.T, all bool) *introFixture {
	t.Helper()
	clk := newClock()
	f := &introFixture{clk: clk}
	f.fixture = newFixtureWith(t, fixtureOptions{clock: clk, cacheSize: 100, scopes: []string{"payments:read"},
		introspection: &inbound.IntrospectionOptions{
			// No URL: the endpoint comes from the issuer's discovery.
			ClientID: "payments-rs", Secret: reload.Static("rs-secret"), All: all, CacheTTL: 30 * time.Second,
		}})
	f.idp.SetIntrospectionClient("payments-rs", "rs-secret")
	return f
}

// result is the count of introspection calls with result.
func (f *introFixture) result(t *testing.T, result string) float64 {
	return testutil.ToFloat64(counterFrom(t, f.reg, "authsidecar_introspection_requests_total", "result", result))
}

func (f *introFixture) active(extra map[string]any) map[string]any {
	a := map[string]any{
		"active": true, "iss": f.idp.Issuer, "sub": "svc-billing", "aud": audience,
		"client_id": "billing", "scope": "payments:read", "exp": f.clk.Now().Add(time.Hour).Unix(),
	}
	for k, v := range extra {
		if v == nil {
			delete(a, k)
			continue
		}
		a[k] = v
	}
	return a
}

func TestActiveOpaqueTokenPassesWithItsIdentity(t *testing.T) {
	f := newIntroFixture(t, false)
	f.idp.SetAnswer("opaque-abc", f.active(nil))
	resp, body := f.do(t, "/", bearer("opaque-abc"))
	if resp.StatusCode != 200 {
		t.Fatalf("status %d %s, want 200", resp.StatusCode, body)
	}
	h := f.app.requests()[0].Header
	for k, want := range map[string]string{"X-Auth-Subject": "svc-billing", "X-Auth-Client-Id": "billing",
		"X-Auth-Scopes": "payments:read", "X-Auth-Issuer": f.idp.Issuer, "Authorization": ""} {
		if got := h.Get(k); got != want {
			t.Errorf("app saw %s = %q, want %q", k, got, want)
		}
	}
}

func TestIntrospectedTokensGetTheSameChecksAsJWTs(t *testing.T) {
	f := newIntroFixture(t, false)
	cases := []struct {
		name   string
		answer map[string]any
		status int
		www    string
	}{
		{"an inactive token", map[string]any{"active": false}, 401, invalidToken("the token is not active")},
		{"another audience", f.active(map[string]any{"aud": "inventory"}), 401, invalidToken("the token audience is not accepted")},
		{"no audience", f.active(map[string]any{"aud": nil}), 401, invalidToken("the token audience is not accepted")},
		{"an untrusted issuer", f.active(map[string]any{"iss": "https://evil.example"}), 401, invalidToken("the token issuer is not trusted")},
		{"an expired token", f.active(map[string]any{"exp": f.clk.Now().Add(-time.Hour).Unix()}), 401, invalidToken("the token is expired")},
		{"a missing scope", f.active(map[string]any{"scope": "payments:write"}), 403, `Bearer realm="authsidecar", error="insufficient_scope", scope="payments:read"`},
	}
	for i, tc := range cases {
		t.Run(tc.name+" is refused", func(t *testing.T) {
			tok := "opaque-" + string(rune('a'+i))
			f.idp.SetAnswer(tok, tc.answer)
			resp, _ := f.do(t, "/", bearer(tok))
			if resp.StatusCode != tc.status || resp.Header.Get("WWW-Authenticate") != tc.www {
				t.Errorf("got %d %q, want %d %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"), tc.status, tc.www)
			}
		})
	}
	if n := len(f.app.requests()); n != 0 {
		t.Errorf("the app saw %d requests, want 0", n)
	}
}

func TestConcurrentRequestsWithOneTokenShareOneCall(t *testing.T) {
	f := newIntroFixture(t, false)
	f.idp.SetAnswer("opaque-shared", f.active(nil))
	release := f.idp.HoldIntrospection()
	var joined sync.WaitGroup
	joined.Add(100)
	inbound.OnIntrospectionJoin(f.in, joined.Done)
	var wg sync.WaitGroup
	for range 100 {
		wg.Go(func() {
			if resp, _ := f.do(t, "/", bearer("opaque-shared")); resp.StatusCode != 200 {
				t.Errorf("status %d, want 200", resp.StatusCode)
			}
		})
	}
	joined.Wait() // all 100 are waiting for the one held call
	release()
	wg.Wait()
	if got := f.idp.IntrospectHits.Load(); got != 1 {
		t.Errorf("100 concurrent requests made %d introspection calls, want 1", got)
	}
}

func TestCachedAnswerExpiresAfterTheTTL(t *testing.T) {
	f := newIntroFixture(t, false)
	f.idp.SetAnswer("opaque-ttl", f.active(nil))
	for range 3 {
		f.do(t, "/", bearer("opaque-ttl"))
	}
	if got := f.idp.IntrospectHits.Load(); got != 1 {
		t.Fatalf("%d calls within the TTL, want 1", got)
	}
	f.idp.SetAnswer("opaque-ttl", map[string]any{"active": false}) // revoked
	f.clk.Advance(31 * time.Second)
	if resp, _ := f.do(t, "/", bearer("opaque-ttl")); resp.StatusCode != 401 {
		t.Errorf("revoked token after the TTL: status %d, want 401", resp.StatusCode)
	}
	if got := f.idp.IntrospectHits.Load(); got != 2 {
		t.Errorf("%d calls after the TTL, want 2", got)
	}
}

func TestIntrospectionDownFailsClosedExceptForCachedAnswers(t *testing.T) {
	f := newIntroFixture(t, false)
	f.idp.SetAnswer("opaque-known", f.active(nil))
	f.idp.SetAnswer("opaque-new", f.active(nil))
	if resp, _ := f.do(t, "/", bearer("opaque-known")); resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	f.idp.SetIntrospectionDown(true)
	if resp, body := f.do(t, "/", bearer("opaque-new")); resp.StatusCode != 503 {
		t.Errorf("new token while introspection is down: %d %s, want 503", resp.StatusCode, body)
	}
	if resp, _ := f.do(t, "/", bearer("opaque-known")); resp.StatusCode != 200 {
		t.Errorf("cached active token while introspection is down: %d, want 200", resp.StatusCode)
	}
	if n := len(f.app.requests()); n != 2 {
		t.Errorf("app saw %d requests, want 2", n)
	}
	if e, a := f.result(t, "error"), f.result(t, "active"); e != 1 || a != 1 {
		t.Errorf("results: %v errors, %v active, want one of each", e, a)
	}
}

func TestIntrospectAllRefusesARevokedJWTWithAGoodSignature(t *testing.T) {
	f := newIntroFixture(t, true)
	good := f.token(t, map[string]any{"scope": "payments:read"})
	f.idp.SetAnswer(good, f.active(nil))
	if resp, _ := f.do(t, "/", bearer(good)); resp.StatusCode != 200 {
		t.Fatalf("active JWT: status %d, want 200", resp.StatusCode)
	}
	revoked := f.token(t, map[string]any{"scope": "payments:read", "jti": "revoked-1"})
	f.idp.SetAnswer(revoked, map[string]any{"active": false})
	resp, _ := f.do(t, "/", bearer(revoked))
	if resp.StatusCode != 401 || resp.Header.Get("WWW-Authenticate") != invalidToken("the token is not active") {
		t.Errorf("revoked JWT: %d %q, want 401 not active", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
	}
}

func TestOpaqueTokenWithoutIntrospectionIsMalformed(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	resp, _ := f.do(t, "/", bearer("opaque-abc"))
	if resp.StatusCode != 401 || resp.Header.Get("WWW-Authenticate") != invalidToken("the token is malformed") {
		t.Errorf("got %d %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
	}
}

func TestMissingClaimsLeaveTheirHeadersOut(t *testing.T) {
	f := newIntroFixture(t, false)
	f.idp.SetAnswer("opaque-nosub", f.active(map[string]any{"sub": nil}))
	if resp, _ := f.do(t, "/", bearer("opaque-nosub")); resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	h := f.app.requests()[0].Header
	if v, ok := h["X-Auth-Subject"]; ok {
		t.Errorf("app saw X-Auth-Subject %q, want no header", v)
	}
	if h.Get("X-Auth-Client-Id") != "billing" {
		t.Errorf("app saw X-Auth-Client-Id %q", h.Get("X-Auth-Client-Id"))
	}
}

func TestAnIssuerWithoutAnIntrospectionEndpointIsNotReady(t *testing.T) {
	f := newFixture(t, fixtureOptions{skipWarmUp: true, introspection: &inbound.IntrospectionOptions{
		ClientID: "payments-rs", Secret: reload.Static("rs-secret"), CacheTTL: time.Second}})
	f.idp.OmitIntrospectionEndpoint()
	check := f.in.Checks()["introspection"]
	want := fmt.Sprintf("inbound: the introspection endpoint of %q is not known yet", f.idp.Issuer)
	if err := check(); err == nil || err.Error() != want {
		t.Fatalf("before discovery: check = %v, want %s", err, want)
	}
	if resp, _ := f.do(t, "/", bearer("opaque-abc")); resp.StatusCode != 503 {
		t.Errorf("opaque token: status %d, want 503", resp.StatusCode)
	}
	want = fmt.Sprintf("inbound: issuer %q lists no introspection_endpoint; set AUTHSIDECAR_INBOUND_INTROSPECTION_URL", f.idp.Issuer)
	if err := check(); err == nil || err.Error() != want {
		t.Errorf("after discovery answered: check = %v, want %s", err, want)
	}
}
