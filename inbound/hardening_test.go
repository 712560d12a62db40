package inbound_test

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/authsidecar/authsidecar/internal/idptest"
)

// raw writes request to the sidecar as bytes on a connection, as an
// attacker would, and returns the answer.
func (f *fixture) raw(t testing.TB, request string) *http.Response {
	t.Helper()
	c, err := net.Dial("tcp", f.sidecar.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, request); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("reading the answer to %q: %v", request, err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

const catchAll = `
rules:
  - paths: ["/public/**"]
    public: true
  - paths: ["/**"]
    scopes: [admin]
`

func TestOddRequestTargetsAreJudgedAsTheAppSeesThemOrRefused(t *testing.T) {
	f := newFixture(t, fixtureOptions{rules: catchAll})
	auth := "Authorization: Bearer " + f.token(t, nil) + "\r\n" // no admin scope
	for _, tc := range []struct {
		name, request string
		status        int
	}{
		{"absolute-form without a path is judged as /", "GET http://sidecar HTTP/1.1\r\nHost: sidecar\r\n" + auth + "\r\n", 403},
		{"absolute-form with a path is judged by it", "GET http://sidecar/admin HTTP/1.1\r\nHost: sidecar\r\n" + auth + "\r\n", 403},
		{"a star target with GET is refused", "GET * HTTP/1.1\r\nHost: sidecar\r\n" + auth + "\r\n", 400},
		{"CONNECT is refused whatever its target", "CONNECT sidecar:443 HTTP/1.1\r\nHost: sidecar:443\r\n" + auth + "\r\n", 405},
		{"CONNECT with a path is refused too", "CONNECT /public/x HTTP/1.1\r\nHost: sidecar\r\n\r\n", 405},
		{"TRACE is refused", "TRACE /public/x HTTP/1.1\r\nHost: sidecar\r\n\r\n", 405},
		// net/http answers OPTIONS * itself (200, no body): it reaches no handler.
		{"OPTIONS * is answered by net/http", "OPTIONS * HTTP/1.1\r\nHost: sidecar\r\n\r\n", 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if resp := f.raw(t, tc.request); resp.StatusCode != tc.status {
				t.Errorf("status %d, want %d", resp.StatusCode, tc.status)
			}
		})
	}
	if n := len(f.app.requests()); n != 0 {
		t.Errorf("the app saw %d requests, want 0", n)
	}
}

func TestConditionsJudgeThePathTheAppReceives(t *testing.T) {
	f := newFixture(t, fixtureOptions{rules: `
rules:
  - paths: ["/tenants/**"]
    when: 'request.path.startsWith("/tenants/" + claims.tenant + "/")'
`})
	tok := bearer(f.token(t, map[string]any{"tenant": "a"}))
	for _, tc := range []struct {
		path   string
		status int
		app    string // the path the app got, "" for none
	}{
		{"/tenants/a/orders", 200, "/tenants/a/orders"},
		{"/tenants/a/../b/orders", 403, ""},
		{"/tenants/a/%2e%2e/b/orders", 403, ""},
		{"/tenants/a/%2E%2E/b/orders", 403, ""},
		{"/tenants/a/..;/b/orders", 403, ""},
		{"/tenants/a//../b/orders", 403, ""},
		{"/tenants/a/%2F..%2Fb/orders", 400, ""},
		{"/tenants/a/./orders", 200, "/tenants/a/orders"},
		{"/tenants//a/orders", 200, "/tenants/a/orders"},
	} {
		before := len(f.app.requests())
		resp := f.raw(t, "GET "+tc.path+" HTTP/1.1\r\nHost: sidecar\r\nAuthorization: "+tok.Get("Authorization")+"\r\n\r\n")
		if resp.StatusCode != tc.status {
			t.Errorf("%s: status %d, want %d", tc.path, resp.StatusCode, tc.status)
		}
		got := f.app.requests()[before:]
		switch {
		case tc.app == "" && len(got) != 0:
			t.Errorf("%s: the app saw %s", tc.path, got[0].URL.Path)
		case tc.app != "" && (len(got) != 1 || got[0].URL.Path != tc.app):
			t.Errorf("%s: the app saw %v, want %s", tc.path, got, tc.app)
		}
	}
}

func TestEncodedSlashesAreRefusedOrDecodedForBoth(t *testing.T) {
	rules := `
rules:
  - paths: ["/orders/*"]
    methods: [DELETE]
    scopes: [orders:delete]
`
	tok := func(f *fixture) string { return "Authorization: Bearer " + f.token(t, nil) + "\r\n" }
	f := newFixture(t, fixtureOptions{rules: rules})
	for _, p := range []string{"/orders/1%2Fx", "/orders/1%2fx", "/orders/1%5Cx", "/orders/1%5cx"} {
		if resp := f.raw(t, "DELETE "+p+" HTTP/1.1\r\nHost: sidecar\r\n"+tok(f)+"\r\n"); resp.StatusCode != 400 {
			t.Errorf("DELETE %s: status %d, want 400", p, resp.StatusCode)
		}
	}
	allowed := newFixtureWith(t, fixtureOptions{rules: rules, allowEncodedSlashes: true})
	// Decoded, "/orders/1/x" has three segments: /orders/* no longer
	// matches, and the default rule lets the token through; the app gets
	// the same decoded path, not "1%2Fx" to parseInt into 1.
	if resp := allowed.raw(t, "DELETE /orders/1%2Fx HTTP/1.1\r\nHost: sidecar\r\n"+tok(allowed)+"\r\n"); resp.StatusCode != 200 {
		t.Fatalf("with encoded slashes allowed: status %d, want 200", resp.StatusCode)
	}
	if got := allowed.app.requests()[0]; got.URL.Path != "/orders/1/x" || got.RequestURI != "/orders/1/x" {
		t.Errorf("the app got %q (%q), want the decoded /orders/1/x", got.URL.Path, got.RequestURI)
	}
	if n := len(f.app.requests()); n != 0 {
		t.Errorf("the app saw %d refused requests", n)
	}
}

func TestCaseInsensitivePathsProtectEveryCase(t *testing.T) {
	rules := "rules:\n  - paths: [\"/admin/**\"]\n    scopes: [admin]\n"
	for _, tc := range []struct {
		ci     bool
		status int
	}{{false, 200}, {true, 403}} {
		f := newFixture(t, fixtureOptions{rules: rules, caseInsensitive: tc.ci})
		if resp, _ := f.do(t, "/ADMIN/users", bearer(f.token(t, nil))); resp.StatusCode != tc.status {
			t.Errorf("CASE_INSENSITIVE_PATHS=%v: /ADMIN/users without the scope: %d, want %d", tc.ci, resp.StatusCode, tc.status)
		}
	}
}

func TestMethodOverridesCannotSlipPastTheRules(t *testing.T) {
	f := newFixture(t, fixtureOptions{rules: `
rules:
  - paths: ["/orders/*"]
    methods: [DELETE, PUT, PATCH]
    scopes: [orders:write]
`})
	auth := "Authorization: Bearer " + f.token(t, nil) + "\r\n"
	for _, h := range []string{"X-HTTP-Method-Override", "X-HTTP-Method", "X-Method-Override", "x_http_method_override"} {
		resp := f.raw(t, "POST /orders/1 HTTP/1.1\r\nHost: sidecar\r\n"+auth+h+": DELETE\r\nContent-Length: 0\r\n\r\n")
		if resp.StatusCode != 200 {
			t.Fatalf("POST with %s: status %d, want 200 (POST is allowed)", h, resp.StatusCode)
		}
		got := f.app.requests()
		for k := range got[len(got)-1].Header {
			if strings.Contains(strings.ToLower(k), "method") {
				t.Errorf("the app saw %s, a method override", k)
			}
		}
	}
	// Express's qs and url.ParseQuery decode the key: every spelling of
	// "_method" is an override.
	for _, q := range []string{"_method=DELETE", "_method=delete", "x=1&_method=PUT", "%5Fmethod=DELETE", "%5fmethod=DELETE", "_%6Dethod=DELETE", "x=%20&_method=PATCH"} {
		resp := f.raw(t, "POST /orders/1?"+q+" HTTP/1.1\r\nHost: sidecar\r\n"+auth+"Content-Length: 0\r\n\r\n")
		if resp.StatusCode != 403 {
			t.Errorf("POST ?%s without orders:write: status %d, want 403", q, resp.StatusCode)
		}
	}
	write := "Authorization: Bearer " + f.token(t, map[string]any{"scope": "orders:write"}) + "\r\n"
	if resp := f.raw(t, "POST /orders/1?_method=DELETE HTTP/1.1\r\nHost: sidecar\r\n"+write+"Content-Length: 0\r\n\r\n"); resp.StatusCode != 200 {
		t.Errorf("POST ?_method=DELETE with orders:write: status %d, want 200", resp.StatusCode)
	}
}

func TestAConditionCannotReadAHeaderTheAppWillNotGet(t *testing.T) {
	f := newFixture(t, fixtureOptions{rules: `
rules:
  - paths: ["/**"]
    when: 'request.headers["x-tenant"] == "acme"'
`})
	h := bearer(f.token(t, nil))
	h.Set("X-Tenant", "acme")
	h.Set("Connection", "X-Tenant")
	if resp, _ := f.do(t, "/x", h); resp.StatusCode != 403 {
		t.Errorf("a condition on a header the Connection header drops: status %d, want 403", resp.StatusCode)
	}
}

func TestTokensThatAreNotAccessTokensAreRefused(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	strict := newFixtureWith(t, fixtureOptions{requireATJWT: true})
	typ := func(f *fixture, typ string, extra map[string]any) string {
		return idptest.SignWithHeaders(t, f.key, f.idp.Claims(audience, extra), map[jose.HeaderKey]any{"kid": f.key.ID, "typ": typ})
	}
	for _, tc := range []struct {
		name         string
		tok          func(*fixture) string
		want, strict int
	}{
		{"an RFC 9068 access token", func(f *fixture) string { return typ(f, "at+jwt", nil) }, 200, 200},
		{"application/at+jwt in any case", func(f *fixture) string { return typ(f, "Application/AT+JWT", nil) }, 200, 200},
		{"typ JWT", func(f *fixture) string { return typ(f, "JWT", nil) }, 200, 401},
		{"typ application/jwt, JWT's full media type (RFC 7515 4.1.9)", func(f *fixture) string { return typ(f, "application/jwt", nil) }, 200, 401},
		{"no typ", func(f *fixture) string { return typ(f, "", nil) }, 200, 401},
		{"a back-channel logout token", func(f *fixture) string {
			return typ(f, "logout+jwt", map[string]any{"events": map[string]any{"http://schemas.openid.net/event/backchannel-logout": map[string]any{}}})
		}, 401, 401},
		{"another declared type", func(f *fixture) string { return typ(f, "dpop+jwt", nil) }, 401, 401},
		{"a Keycloak ID token", func(f *fixture) string { return typ(f, "JWT", map[string]any{"typ": "ID"}) }, 401, 401},
		{"a Keycloak refresh token", func(f *fixture) string { return typ(f, "JWT", map[string]any{"typ": "Refresh"}) }, 401, 401},
		{"a Keycloak access token", func(f *fixture) string { return typ(f, "JWT", map[string]any{"typ": "Bearer"}) }, 200, 401},
	} {
		for _, c := range []struct {
			f    *fixture
			want int
			name string
		}{{f, tc.want, "by default"}, {strict, tc.strict, "with REQUIRE_AT_JWT"}} {
			resp, _ := c.f.do(t, "/", bearer(tc.tok(c.f)))
			if resp.StatusCode != c.want {
				t.Errorf("%s, %s: status %d, want %d", tc.name, c.name, resp.StatusCode, c.want)
			}
			if c.want == 401 && resp.Header.Get("WWW-Authenticate") != invalidToken("the token is not an access token") {
				t.Errorf("%s, %s: WWW-Authenticate %q", tc.name, c.name, resp.Header.Get("WWW-Authenticate"))
			}
		}
	}
}

func TestAnIntrospectedRefreshTokenIsRefused(t *testing.T) {
	f := newIntroFixture(t, false)
	f.idp.SetAnswer("hydra-refresh", f.active(map[string]any{"token_use": "refresh_token"}))
	f.idp.SetAnswer("typed-refresh", f.active(map[string]any{"token_type": "refresh_token"}))
	f.idp.SetAnswer("hydra-access", f.active(map[string]any{"token_use": "access_token", "token_type": "Bearer"}))
	for tok, want := range map[string]int{"hydra-refresh": 401, "typed-refresh": 401, "hydra-access": 200} {
		if resp, _ := f.do(t, "/", bearer(tok)); resp.StatusCode != want {
			t.Errorf("%s: status %d, want %d", tok, resp.StatusCode, want)
		}
	}
}

func TestKeysUnfitForVerifyingAreNeverUsed(t *testing.T) {
	weak, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	weakKey := idptest.Key{ID: "weak", Alg: jose.RS256, Private: weak}
	ec := idptest.NewECKey(t, "enc")
	ops := idptest.NewECKey(t, "ops")
	jwk := func(k idptest.Key, extra map[string]any) map[string]any {
		b, _ := k.Public().MarshalJSON()
		var m map[string]any
		_ = json.Unmarshal(b, &m)
		for kk, v := range extra {
			if v == nil {
				delete(m, kk)
			} else {
				m[kk] = v
			}
		}
		return m
	}
	f := newFixture(t, fixtureOptions{skipWarmUp: true})
	doc, _ := json.Marshal(map[string]any{"keys": []any{
		jwk(weakKey, nil),
		jwk(ec, map[string]any{"use": "enc"}),
		jwk(ops, map[string]any{"use": nil, "key_ops": []string{"encrypt"}}),
	}})
	f.idp.SetJWKS(string(doc))
	if err := f.in.LoadKeys(context.Background()); err == nil {
		t.Fatal("a key set of unusable keys loaded")
	}
	want := "inbound: issuer keys not loaded yet: inbound: " + f.idp.Issuer + "/jwks: the JWKS holds no usable signing key (an asymmetric key for use sig, RSA of 2048 bits or more)"
	if err := f.in.Checks()["issuer "+f.idp.Issuer](); err == nil || err.Error() != want {
		t.Errorf("readiness = %v\nwant %s", err, want)
	}
	good := idptest.NewECKey(t, "good")
	doc, _ = json.Marshal(map[string]any{"keys": []any{jwk(weakKey, nil), jwk(ec, map[string]any{"use": "enc"}),
		jwk(ops, map[string]any{"use": nil, "key_ops": []string{"encrypt"}}), jwk(good, map[string]any{"use": nil, "key_ops": []string{"verify"}})}})
	f.idp.SetJWKS(string(doc))
	if err := f.in.LoadKeys(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, k := range []idptest.Key{weakKey, ec, ops} {
		if resp, _ := f.do(t, "/", bearer(idptest.Sign(t, k, f.idp.Claims(audience, nil)))); resp.StatusCode != 401 {
			t.Errorf("a token signed by key %q: status %d, want 401", k.ID, resp.StatusCode)
		}
	}
	if resp, _ := f.do(t, "/", bearer(idptest.Sign(t, good, f.idp.Claims(audience, nil)))); resp.StatusCode != 200 {
		t.Errorf("a token signed by the usable key: status %d, want 200", resp.StatusCode)
	}
}

func TestATokenWithoutKidIsTriedAgainstFewKeys(t *testing.T) {
	f := newFixture(t, fixtureOptions{skipWarmUp: true})
	var keys []idptest.Key
	for i := range 1500 {
		keys = append(keys, idptest.NewECKey(t, ""))
		_ = i
	}
	rsaKey := idptest.NewRSAKey(t, "")
	doc := jose.JSONWebKeySet{}
	doc.Keys = append(doc.Keys, rsaKey.Public())
	for _, k := range keys {
		doc.Keys = append(doc.Keys, k.Public())
	}
	b, _ := json.Marshal(doc)
	f.idp.SetJWKS(string(b))
	if err := f.in.LoadKeys(context.Background()); err != nil {
		t.Fatal(err)
	}
	noKID := func(k idptest.Key) string { return idptest.SignWithHeaders(t, k, f.idp.Claims(audience, nil), nil) }
	for _, tc := range []struct {
		name string
		key  idptest.Key
		want int
	}{
		{"the RSA key, after no EC key is tried", rsaKey, 200},
		{"the first EC key", keys[0], 200},
		{"the fourth EC key", keys[3], 200},
		{"the fifth EC key", keys[4], 401},
		{"the last of 1,500", keys[1499], 401},
	} {
		if resp, _ := f.do(t, "/", bearer(noKID(tc.key))); resp.StatusCode != tc.want {
			t.Errorf("%s: status %d, want %d", tc.name, resp.StatusCode, tc.want)
		}
	}
}

func TestScopesAreSplitOnASCIISpacesOnly(t *testing.T) {
	f := newFixture(t, fixtureOptions{scopes: []string{"admin"}})
	for _, scope := range []string{"read\u00a0admin", "read\u2003admin", "read\tadmin"} {
		if resp, _ := f.do(t, "/", bearer(f.token(t, map[string]any{"scope": scope}))); resp.StatusCode != 403 {
			t.Errorf("scope %q: status %d, want 403: it is one scope, not admin", scope, resp.StatusCode)
		}
	}
	// A newline is no more a separator, but no header can carry it either:
	// the token is malformed (TestIdentityClaimsNoHeaderCanCarryAreRefused).
	if resp, _ := f.do(t, "/", bearer(f.token(t, map[string]any{"scope": "read\nadmin"}))); resp.StatusCode != 401 {
		t.Errorf(`scope "read\nadmin": status %d, want 401: it is one scope, and malformed`, resp.StatusCode)
	}
	if resp, _ := f.do(t, "/", bearer(f.token(t, map[string]any{"scope": "read  admin"}))); resp.StatusCode != 200 {
		t.Errorf(`scope "read  admin": status %d, want 200`, resp.StatusCode)
	}
}

func TestOnlyAVerifiedTokenReachesAPublicPath(t *testing.T) {
	f := newFixture(t, fixtureOptions{publicPaths: []string{"/public"}, forwardToken: true})
	good := f.token(t, nil)
	for _, tc := range []struct {
		name, auth, wantAuth, wantSubject string
	}{
		{"a valid token gives its identity and is forwarded", "Bearer " + good, "Bearer " + good, "svc-orders"},
		{"an unsigned token is removed", "Bearer " + unsigned(f.idp.Claims(audience, nil)), "", ""},
		{"a tampered token is removed", "Bearer " + tamper(good), "", ""},
		{"an expired token is removed", "Bearer " + f.token(t, map[string]any{"exp": time.Now().Add(-time.Hour).Unix()}), "", ""},
		{"a Basic credential is removed", "Basic dXNlcjpwYXNz", "", ""},
	} {
		before := len(f.app.requests())
		if resp, _ := f.do(t, "/public/x", http.Header{"Authorization": {tc.auth}}); resp.StatusCode != 200 {
			t.Fatalf("%s: status %d, want 200", tc.name, resp.StatusCode)
		}
		got := f.app.requests()[before].Header
		if got.Get("Authorization") != tc.wantAuth || got.Get("X-Auth-Subject") != tc.wantSubject {
			t.Errorf("%s: the app saw Authorization %q, X-Auth-Subject %q", tc.name, got.Get("Authorization"), got.Get("X-Auth-Subject"))
		}
	}
}

func TestHeadersAppsTakeForTheProxysWordAreRemoved(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	h := bearer(f.token(t, nil))
	spoofed := []string{"X-Real-Ip", "X-Forwarded-Prefix", "X-Forwarded-Port", "X-Forwarded-Uri", "X-Original-Uri",
		"X-Original-Url", "X-Rewrite-Url", "Forwarded", "X-Forwarded-Ssl", "X-Url-Scheme", "Front-End-Https", "X-Forwarded-Host",
		"X-Forwarded-Scheme", "X-Client-Ip", "Client-Ip", "True-Client-Ip", "Cf-Connecting-Ip", "Fastly-Client-Ip",
		"X-Cluster-Client-Ip", "X-Forwarded", "Forwarded-For"}
	for _, k := range spoofed {
		h.Set(k, "spoofed")
	}
	h["X_Real_IP"] = []string{"spoofed"}
	h.Set("X-Forwarded-Proto", "https")
	if resp, _ := f.do(t, "/", h); resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	got := f.app.requests()[0].Header
	noneSpoofed(t, got)
	if p := got.Get("X-Forwarded-Proto"); p != "http" {
		t.Errorf("X-Forwarded-Proto = %q, want the sidecar's http", p)
	}
}

func TestIntrospectionCallsInFlightAreBounded(t *testing.T) {
	f := newIntroFixture(t, false)
	arrived, release := f.idp.HoldIntrospectionArrivals()
	defer release()
	const bound = 64
	var wg sync.WaitGroup
	for i := range bound {
		wg.Go(func() { f.do(t, "/", bearer(fmt.Sprintf("junk-%d", i))) })
	}
	for range bound {
		<-arrived // each call holds its slot while the endpoint holds it
	}
	resp, _ := f.do(t, "/", bearer("one-junk-token-too-many"))
	if resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" {
		t.Errorf("a token over the bound: status %d, Retry-After %q, want 503 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	release()
	wg.Wait()
	if got := f.idp.IntrospectHits.Load(); got != bound {
		t.Errorf("%d introspection calls, want %d", got, bound)
	}
}

func TestARefusalDoesNotWaitForTheBody(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	c, err := net.Dial("tcp", f.sidecar.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	// A body announced and never sent, no token.
	if _, err := io.WriteString(c, "POST /orders HTTP/1.1\r\nHost: sidecar\r\nContent-Length: 100000\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("no answer while the body is outstanding: %v", err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != 401 || !resp.Close {
		t.Errorf("status %d, Connection: close %v; want 401 and the connection closed", resp.StatusCode, resp.Close)
	}
	if _, err := br.ReadByte(); err != io.EOF {
		t.Errorf("after the refusal the connection is still open: %v", err)
	}
}

func TestAStalledBodyEndsTheRequest(t *testing.T) {
	f := newFixture(t, fixtureOptions{bodyIdle: 200 * time.Millisecond})
	c, err := net.Dial("tcp", f.sidecar.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	start := time.Now()
	if _, err := io.WriteString(c, "POST /orders HTTP/1.1\r\nHost: sidecar\r\nAuthorization: Bearer "+f.token(t, nil)+
		"\r\nContent-Length: 100\r\n\r\nthe first bytes, then nothing"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("no answer: %v", err)
	}
	if resp.StatusCode != http.StatusRequestTimeout {
		t.Errorf("status %d, want 408", resp.StatusCode)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("answered after %s, want about the 200ms bound", d)
	}
}

// A query may name "_method" thousands of times within the header cap:
// each override is judged once, not by parsing the query again for each.
func TestManyMethodOverridesCostLinearWork(t *testing.T) {
	f := newFixture(t, fixtureOptions{rules: `
rules:
  - paths: ["/orders/*"]
    methods: [DELETE]
    scopes: [orders:write]
`})
	q := strings.Repeat("_method=PUT&", 2000) + "_method=DELETE"
	req := httptest.NewRequest(http.MethodPost, "/orders/1?"+q, nil)
	req.Header.Set("Authorization", "Bearer "+f.token(t, nil))
	serve := func() int {
		rec := httptest.NewRecorder()
		f.in.Handler().ServeHTTP(rec, req.Clone(context.Background()))
		return rec.Code
	}
	serve() // the token is verified and cached
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	status := serve()
	runtime.ReadMemStats(&after)
	if status != http.StatusForbidden {
		t.Errorf("POST ?_method=PUT×2000&_method=DELETE without orders:write: status %d, want 403", status)
	}
	// Parsing the query once allocates some 100 KiB; once per override,
	// some 200 MiB.
	if got := after.TotalAlloc - before.TotalAlloc; got > 8<<20 {
		t.Errorf("one request with 2,001 _method values allocated %d bytes, want at most 8 MiB", got)
	}
}

// noneSpoofed fails t for each header the app got with the value
// "spoofed", the tests' mark for a caller's copy.
func noneSpoofed(t *testing.T, got http.Header) {
	t.Helper()
	for k, v := range got {
		if strings.Join(v, ",") == "spoofed" {
			t.Errorf("the app saw the caller's %s", k)
		}
	}
}
