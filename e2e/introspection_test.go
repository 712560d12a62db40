package e2e

// Opaque access tokens, checked by introspection (RFC 7662) at the real
// provider: accepted while active, refused once revoked and B's cached
// answer has run out, and never a JWT cache in between.

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

const (
	opaqueRS                   = "http://payments-opaque.example" // opaque tokens, aud = this
	introClient, introSecret   = "rs-payments", "rs-payments-secret-5e1a"
	ownerClient, ownerSecret   = "svc-orders-opaque", "orders-opaque-secret-a0c4"
	writerClient, writerSecret = "svc-batch", "batch-secret-19be" // payments:write only
	introspectionPath          = "/token/introspection"
	introspectionCacheTTL      = 2 * time.Second
)

// introspectionTap is a reverse proxy in front of the provider recording
// each introspection request and the provider's answer.
type introspectionTap struct {
	*httptest.Server
	mu   sync.Mutex
	seen []introspectionCall
}

type introspectionCall struct {
	At        time.Time // when the request reached the tap
	BasicUser string
	Form      url.Values
	Status    int
	Answer    map[string]any
}

// recorder keeps a copy of what the provider answered.
type recorder struct {
	http.ResponseWriter
	status int
	body   bytes.Buffer
}

func (r *recorder) WriteHeader(code int) { r.status = code; r.ResponseWriter.WriteHeader(code) }
func (r *recorder) Write(b []byte) (int, error) {
	r.body.Write(b)
	return r.ResponseWriter.Write(b)
}

func startIntrospectionTap(t testing.TB, idp *IDP) *introspectionTap {
	t.Helper()
	target, err := url.Parse(idp.Issuer)
	if err != nil {
		t.Fatal(err)
	}
	tap := &introspectionTap{}
	rp := httputil.NewSingleHostReverseProxy(target)
	tap.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != introspectionPath {
			rp.ServeHTTP(w, r)
			return
		}
		c := introspectionCall{At: time.Now()}
		body, err := readAllLimited(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		c.Form, _ = url.ParseQuery(string(body))
		c.BasicUser, _, _ = r.BasicAuth()
		c.BasicUser, _ = url.QueryUnescape(c.BasicUser)
		r.Body = io.NopCloser(bytes.NewReader(body))
		rec := &recorder{ResponseWriter: w, status: http.StatusOK}
		rp.ServeHTTP(rec, r)
		c.Status = rec.status
		_ = json.Unmarshal(rec.body.Bytes(), &c.Answer)
		tap.mu.Lock()
		tap.seen = append(tap.seen, c)
		tap.mu.Unlock()
	}))
	t.Cleanup(tap.Close)
	return tap
}

func (tap *introspectionTap) URL() string { return tap.Server.URL + introspectionPath }

// Calls returns the introspection calls seen so far.
func (tap *introspectionTap) Calls() []introspectionCall {
	tap.mu.Lock()
	defer tap.mu.Unlock()
	return append([]introspectionCall(nil), tap.seen...)
}

// callsFor returns the calls that asked about token.
func (tap *introspectionTap) callsFor(token string) []introspectionCall {
	var out []introspectionCall
	for _, c := range tap.Calls() {
		if c.Form.Get("token") == token {
			out = append(out, c)
		}
	}
	return out
}

func introspectionIDPConfig() IDPConfig {
	return IDPConfig{
		Clients: []IDPClient{
			{ID: introClient, Secret: introSecret}, // the resource server: introspects, never asks for tokens here
			{ID: ownerClient, Secret: ownerSecret, Scopes: []string{"payments:read", "payments:write"}},
			{ID: writerClient, Secret: writerSecret, Scopes: []string{"payments:write"}},
		},
		Resources: map[string]IDPResource{
			opaqueRS:   {Scopes: []string{"payments:read", "payments:write"}, Opaque: true},
			paymentsRS: {Scopes: []string{"payments:read", "payments:write"}},
		},
	}
}

func isJWT(tok string) bool { return strings.Count(tok, ".") == 2 }

func TestOpaqueTokensAreIntrospectedAndRevocationIsSeenAfterTheCacheTTL(t *testing.T) {
	t.Parallel()
	idp := startIDP(t, introspectionIDPConfig())
	tap := startIntrospectionTap(t, idp)
	app := startApp(t)
	b := startInbound(t, idp, opaqueRS, "payments:read", app, map[string]string{
		"AUTHSIDECAR_INBOUND_INTROSPECTION_CLIENT_ID":     introClient,
		"AUTHSIDECAR_INBOUND_INTROSPECTION_CLIENT_SECRET": introSecret,
		"AUTHSIDECAR_INBOUND_INTROSPECTION_URL":           tap.URL(),
		"AUTHSIDECAR_INBOUND_INTROSPECTION_CACHE_TTL":     introspectionCacheTTL.String(),
	})
	b.WaitReady(t, b.Addrs.AdminURL())
	inB := b.Addrs.InboundURL() + "/charges/9"

	tok := idp.ClientCredentialsToken(t, ownerClient, ownerSecret, opaqueRS, "payments:read payments:write").AccessToken
	if isJWT(tok) {
		t.Fatalf("the provider issued a JWT for %s, want an opaque token", opaqueRS)
	}
	// What the provider says about it, asked directly (not through the
	// tap): the claims B has to work with.
	direct := idp.Introspect(t, introClient, introSecret, tok)
	t.Logf("the provider's introspection answer: %v", direct)
	if direct["active"] != true || direct["client_id"] != ownerClient || direct["aud"] != opaqueRS ||
		direct["iss"] != idp.Issuer || scopeSet(direct["scope"].(string)) != "payments:read payments:write" || direct["exp"] == nil {
		t.Fatalf("introspection answer %v", direct)
	}

	// Ten concurrent calls with a token B has never seen share one
	// introspection call.
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan string, 10)
	for range 10 {
		wg.Go(func() {
			r, err := tryCall(http.MethodGet, inB, nil, bearer(tok))
			if err != nil {
				errs <- err.Error()
			} else if r.Status != http.StatusOK {
				errs <- r.String()
			}
		})
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Errorf("an active opaque token: %s", e)
	}
	calls := tap.callsFor(tok)
	if len(calls) != 1 {
		t.Fatalf("B introspected the token %d times for 10 concurrent calls, want 1", len(calls))
	}
	first := calls[0]
	if first.BasicUser != introClient || first.Form.Get("token_type_hint") != "access_token" || first.Status != http.StatusOK ||
		first.Answer["active"] != true {
		t.Errorf("B's introspection call: basic user %q, form hint %q, status %d, answer %v",
			first.BasicUser, first.Form.Get("token_type_hint"), first.Status, first.Answer)
	}
	if first.Form.Has("client_secret") || first.Form.Has("client_id") {
		t.Errorf("B's introspection call carries credentials in the form: %v", first.Form)
	}
	reqs := app.Requests()
	if len(reqs) != 10 {
		t.Fatalf("the app saw %d requests, want 10", len(reqs))
	}
	seen := reqs[0]
	for name, want := range map[string]string{
		"X-Auth-Client-Id": ownerClient,
		"X-Auth-Issuer":    idp.Issuer,
	} {
		if v := seen.Header.Values(name); len(v) != 1 || v[0] != want {
			t.Errorf("app saw %s %q, want [%q]", name, v, want)
		}
	}
	if v := seen.Header.Values("X-Auth-Scopes"); len(v) != 1 || scopeSet(v[0]) != "payments:read payments:write" {
		t.Errorf("app saw X-Auth-Scopes %q", v)
	}
	// The provider's answer names no sub for a client-credentials token
	// (there is no end user; its JWTs say sub = client_id), so the app
	// must not be handed a made-up subject: the header is empty (as now)
	// or absent.
	if v := seen.Header.Values("X-Auth-Subject"); len(v) > 1 || len(v) == 1 && v[0] != "" {
		t.Errorf("app saw X-Auth-Subject %q; the answer has no sub", v)
	} else {
		t.Logf("app saw X-Auth-Subject %q for an introspected client-credentials token", v)
	}
	if v := seen.Header.Values("Authorization"); len(v) != 0 {
		t.Errorf("app saw Authorization %q", v)
	}
	app.Reset()

	// Revoked at the provider: B keeps its cached "active" answer for the
	// cache TTL (the documented trade-off), then asks again and refuses.
	idp.Revoke(t, ownerClient, ownerSecret, tok)
	revokedAt := time.Now()
	if a := idp.Introspect(t, introClient, introSecret, tok); a["active"] != false {
		t.Fatalf("after revocation the provider says %v", a)
	}
	cachedUntil := first.At.Add(introspectionCacheTTL) // the answer was stored after the tap saw the request
	r := call(t, http.MethodGet, inB, nil, bearer(tok))
	switch {
	case time.Now().Before(cachedUntil):
		if r.Status != http.StatusOK {
			t.Errorf("a revoked token within the cache TTL: %s; want 200 from the cached answer", r)
		}
		if n := len(tap.callsFor(tok)); n != 1 {
			t.Errorf("within the cache TTL B introspected %d times, want 1", n)
		}
	default:
		// Too slow a machine to see the cached answer: say so rather
		// than fail on timing.
		t.Logf("the call after revocation came %s after the cache TTL ran out: %s", time.Since(cachedUntil), r)
	}
	var refusedAt time.Time
	eventually(t, introspectionCacheTTL+5*time.Second, "a revoked token refused", func() (bool, string) {
		r = call(t, http.MethodGet, inB, nil, bearer(tok))
		refusedAt = time.Now()
		return r.Status == http.StatusUnauthorized, r.String()
	})
	if refusedAt.Before(cachedUntil) {
		t.Errorf("refused %s before the cache TTL ran out", cachedUntil.Sub(refusedAt))
	}
	if !strings.Contains(r.Header.Get("WWW-Authenticate"), `error="invalid_token"`) || r.errorCode() != "invalid_token" {
		t.Errorf("a revoked token: %s; want 401 invalid_token", r)
	}
	calls = tap.callsFor(tok)
	if len(calls) != 2 || calls[1].Answer["active"] != false || len(calls[1].Answer) != 1 {
		t.Errorf("introspection calls for the revoked token: %+v; want a second answering only active false", calls)
	}
	if len(calls) == 2 && calls[1].At.Before(cachedUntil) {
		t.Errorf("B asked again %s before its cached answer ran out", cachedUntil.Sub(calls[1].At))
	}
	// Every call the app saw since the revocation came within the TTL.
	for _, seen := range app.Requests() {
		if seen.Header.Get("X-Auth-Client-Id") != ownerClient {
			t.Errorf("app saw a call with client id %q", seen.Header.Get("X-Auth-Client-Id"))
		}
	}
	t.Logf("after the revocation, the app saw %d calls with the revoked token, all within the cache TTL", len(app.Requests()))
	app.Reset()
	// Within the TTL of the "inactive" answer, no new call.
	if r := call(t, http.MethodGet, inB, nil, bearer(tok)); r.Status != http.StatusUnauthorized {
		t.Errorf("the revoked token again: %s", r)
	}
	if n := len(tap.callsFor(tok)); n != 2 {
		t.Errorf("B introspected the revoked token %d times, want 2 (the inactive answer is cached too)", n)
	}

	// Other opaque tokens the provider issued.
	// Without a resource the provider issues an opaque token with no
	// audience: active, but not for B.
	noAud := idp.ClientCredentialsToken(t, ownerClient, ownerSecret, "", "payments:read").AccessToken
	if isJWT(noAud) {
		t.Fatalf("the provider issued a JWT without resource, want an opaque token")
	}
	if r := call(t, http.MethodGet, inB, nil, bearer(noAud)); r.Status != http.StatusUnauthorized || r.errorCode() != "invalid_token" {
		t.Errorf("an opaque token without audience: %s; want 401 invalid_token", r)
	}
	if c := tap.callsFor(noAud); len(c) != 1 || c[0].Answer["active"] != true || c[0].Answer["aud"] != nil {
		t.Errorf("introspection of the token without resource: %+v; want active, no aud", c)
	}
	// Active, for B, but without the scope B requires.
	writeOnly := idp.ClientCredentialsToken(t, writerClient, writerSecret, opaqueRS, "payments:write").AccessToken
	if r := call(t, http.MethodGet, inB, nil, bearer(writeOnly)); r.Status != http.StatusForbidden ||
		r.Header.Get("WWW-Authenticate") != `Bearer realm="authsidecar", error="insufficient_scope", scope="payments:read"` {
		t.Errorf("an opaque token without the required scope: %s; want 403 insufficient_scope", r)
	}
	// Made up: the provider has never heard of it.
	if r := call(t, http.MethodGet, inB, nil, bearer("bm90LWEtcmVhbC10b2tlbi1hdC1hbGw")); r.Status != http.StatusUnauthorized {
		t.Errorf("a made-up opaque token: %s; want 401", r)
	}
	// A JWT from the same provider is verified locally, never introspected.
	jwt := idp.ClientCredentialsToken(t, ownerClient, ownerSecret, paymentsRS, "payments:read").AccessToken
	if r := call(t, http.MethodGet, inB, nil, bearer(jwt)); r.Status != http.StatusUnauthorized {
		t.Errorf("a JWT for another audience: %s; want 401", r)
	}
	if c := tap.callsFor(jwt); len(c) != 0 {
		t.Errorf("B introspected a JWT (INTROSPECT=opaque): %+v", c)
	}
	checkAppSawNothing(t, app, "after revocation and refusals")

	bm := scrape(t, b.Addrs.AdminURL())
	for result, want := range map[string]float64{"active": 3, "inactive": 2, "error": 0} {
		if v := sumMetric(bm, "authsidecar_introspection_requests_total", "result", result); v != want {
			t.Errorf("authsidecar_introspection_requests_total{result=%q} = %v, want %v", result, v, want)
		}
	}
	for reason, want := range map[string]float64{"inactive": 3, "wrong_audience": 2, "insufficient_scope": 1} {
		if v := sumMetric(bm, "authsidecar_inbound_token_rejections_total", "reason", reason); v != want {
			t.Errorf("B counted %v rejections for %s, want %v", v, reason, want)
		}
	}
	if tap := len(tap.Calls()); tap != 5 {
		t.Errorf("B made %d introspection calls in all, want 5", tap)
	}
	if strings.Contains(b.Output(), tok) || strings.Contains(b.Output(), introSecret) {
		t.Errorf("B logged a token or its introspection secret")
	}
	t.Logf("first introspection at +%s, revoked at +%s, refused at +%s (cache TTL %s)", first.At.Sub(start).Round(time.Millisecond),
		revokedAt.Sub(start).Round(time.Millisecond), refusedAt.Sub(start).Round(time.Millisecond), introspectionCacheTTL)
}

// With the wrong introspection secret the provider refuses B, and B fails
// closed: 503, the app untouched. With INTROSPECT=all, B also asks about
// the provider's JWTs, which oidc-provider cannot introspect (400
// unsupported_token_type): B fails closed on every one of them.
func TestIntrospectionFailureFailsClosed(t *testing.T) {
	t.Parallel()
	idp := startIDP(t, introspectionIDPConfig())
	app := startApp(t)
	b := startInbound(t, idp, opaqueRS, "payments:read", app, map[string]string{
		"AUTHSIDECAR_INBOUND_INTROSPECTION_CLIENT_ID":     introClient,
		"AUTHSIDECAR_INBOUND_INTROSPECTION_CLIENT_SECRET": "not-the-secret",
	})
	tap := startIntrospectionTap(t, idp)
	all := startInbound(t, idp, paymentsRS, "payments:read", app, map[string]string{
		"AUTHSIDECAR_INBOUND_INTROSPECTION_CLIENT_ID":     introClient,
		"AUTHSIDECAR_INBOUND_INTROSPECTION_CLIENT_SECRET": introSecret,
		"AUTHSIDECAR_INBOUND_INTROSPECTION_URL":           tap.URL(),
		"AUTHSIDECAR_INBOUND_INTROSPECT":                  "all",
	})
	b.WaitReady(t, b.Addrs.AdminURL())
	all.WaitReady(t, all.Addrs.AdminURL())

	tok := idp.ClientCredentialsToken(t, ownerClient, ownerSecret, opaqueRS, "payments:read").AccessToken
	r := call(t, http.MethodGet, b.Addrs.InboundURL()+"/charges", nil, bearer(tok))
	if r.Status != http.StatusServiceUnavailable || r.errorCode() != "temporarily_unavailable" {
		t.Errorf("introspection refused by the provider: %s; want 503 temporarily_unavailable", r)
	}
	expectMetric(t, b.Addrs.AdminURL(), "failed introspection calls", 1, "authsidecar_introspection_requests_total", "result", "error")
	expectMetric(t, b.Addrs.AdminURL(), "unavailable requests", 1, "authsidecar_inbound_requests_total", "result", "unavailable")

	jwt := idp.ClientCredentialsToken(t, ownerClient, ownerSecret, paymentsRS, "payments:read").AccessToken
	r = call(t, http.MethodGet, all.Addrs.InboundURL()+"/charges", nil, bearer(jwt))
	if r.Status != http.StatusServiceUnavailable {
		t.Errorf("INTROSPECT=all, a valid JWT from oidc-provider: %s; want 503 (the provider cannot introspect JWTs)", r)
	}
	if c := tap.callsFor(jwt); len(c) != 1 || c[0].Status != http.StatusBadRequest || c[0].Answer["error"] != "unsupported_token_type" {
		t.Errorf("introspection of a JWT: %+v; want one call answered 400 unsupported_token_type", c)
	}
	expectMetric(t, all.Addrs.AdminURL(), "failed introspection calls", 1, "authsidecar_introspection_requests_total", "result", "error")
	checkAppSawNothing(t, app, "introspection failing")
}
