package inbound_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/authsidecar/authsidecar/inbound"
	"github.com/authsidecar/authsidecar/internal/clock"
	"github.com/authsidecar/authsidecar/internal/handoff"
	"github.com/authsidecar/authsidecar/internal/idptest"
	"github.com/authsidecar/authsidecar/internal/reload"
	"github.com/authsidecar/authsidecar/metrics"
	"github.com/authsidecar/authsidecar/rules"
)

const audience = "payments"

// app records what reaches the application behind the sidecar.
type app struct {
	*httptest.Server
	mu   sync.Mutex
	seen []*http.Request
	body []string
}

func newApp(t testing.TB) *app { return newAppWith(t, nil) }

// newAppWith is newApp answering with respond, once the request is
// recorded; nil: 200 "hello from app".
func newAppWith(t testing.TB, respond http.HandlerFunc) *app {
	a := &app{}
	a.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		a.mu.Lock()
		a.seen = append(a.seen, r)
		a.body = append(a.body, string(b))
		a.mu.Unlock()
		if respond != nil {
			respond(w, r)
			return
		}
		w.Header().Set("X-App", "yes")
		_, _ = io.WriteString(w, "hello from app")
	}))
	t.Cleanup(a.Close)
	return a
}

func (a *app) requests() []*http.Request {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]*http.Request(nil), a.seen...)
}

type fixture struct {
	idp     *idptest.IDP
	key     idptest.Key
	app     *app
	sidecar *httptest.Server
	in      *inbound.Inbound
	reg     *prometheus.Registry
}

type fixtureOptions struct {
	scopes, clients []string // the global REQUIRED_SCOPES and ALLOWED_CLIENTS
	publicPaths     []string
	rules           string // a rules file
	forwardToken    bool
	skipWarmUp      bool
	clock           *clock.Fake
	cacheSize       int
	introspection   *inbound.IntrospectionOptions
	clientCerts     inbound.ClientCertPolicy
	transport       http.RoundTripper
	// allowEncodedSlashes, caseInsensitive, requireATJWT and bodyIdle are
	// AUTHSIDECAR_INBOUND_ALLOW_ENCODED_SLASHES, …_CASE_INSENSITIVE_PATHS,
	// …_REQUIRE_AT_JWT and AUTHSIDECAR_BODY_IDLE_TIMEOUT.
	allowEncodedSlashes, caseInsensitive, requireATJWT bool
	bodyIdle                                           time.Duration
	// upstreamTimeout is AUTHSIDECAR_INBOUND_UPSTREAM_TIMEOUT; respond,
	// when set, is the app's answer.
	upstreamTimeout time.Duration
	respond         http.HandlerFunc
	// logger, with accessLog, gets an access-log line per request.
	logger    *slog.Logger
	accessLog bool
	handoff   *handoff.Store
	// requireDPoP, trustForwarded and resource are
	// AUTHSIDECAR_INBOUND_REQUIRE_DPOP, …_TRUST_FORWARDED and …_RESOURCE.
	requireDPoP, trustForwarded bool
	resource                    string
	// maxFormBytes and overrideBodies are AUTHSIDECAR_INBOUND_MAX_FORM_BYTES
	// and …_METHOD_OVERRIDE_BODIES.
	maxFormBytes   int64
	overrideBodies *inbound.OverrideBodies
}

func newFixture(t *testing.T, o fixtureOptions) *fixture { return newFixtureWith(t, o) }

func newFixtureTB(tb testing.TB) *fixture { return newFixtureWith(tb, fixtureOptions{}) }

// newFixtureWith builds the inbound direction the way the sidecar does,
// in front of a recording app, trusting one identity provider.
func newFixtureWith(t testing.TB, o fixtureOptions) *fixture {
	t.Helper()
	f := &fixture{key: idptest.NewRSAKey(t, "key-1"), app: newAppWith(t, o.respond), reg: prometheus.NewRegistry()}
	f.idp = idptest.New(t, f.key)
	upstream, _ := url.Parse(f.app.URL)
	opts := inbound.Options{
		Issuers:              []string{f.idp.Issuer},
		Audiences:            []string{"other", audience},
		Algorithms:           []string{"RS256", "ES256"},
		ClockSkew:            30 * time.Second,
		TokenCacheSize:       o.cacheSize,
		Introspection:        o.introspection,
		Rules:                reload.Static(ruleSet(t, o)),
		ClientCerts:          o.clientCerts,
		Upstream:             upstream,
		ForwardToken:         o.forwardToken,
		RequireATJWT:         o.requireATJWT,
		AllowEncodedSlashes:  o.allowEncodedSlashes,
		BodyIdleTimeout:      o.bodyIdle,
		MaxFormBytes:         o.maxFormBytes,
		MethodOverrideBodies: o.overrideBodies,
		UpstreamTimeout:      o.upstreamTimeout,
		Logger:               o.logger,
		AccessLog:            o.accessLog,
		Handoff:              o.handoff,
		RequireDPoP:          o.requireDPoP,
		TrustForwarded:       o.trustForwarded,
		Resource:             o.resource,
		Metrics:              metrics.New(f.reg, "test"),
		IdentityClient:       &http.Client{Timeout: 5 * time.Second},
		Transport:            o.transport,
	}
	if o.clock != nil {
		opts.Clock = o.clock
	}
	in, err := inbound.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	f.in = in
	if !o.skipWarmUp {
		if err := f.in.LoadKeys(context.Background()); err != nil {
			t.Fatalf("warm-up: %v", err)
		}
	}
	f.sidecar = httptest.NewServer(in.Handler())
	t.Cleanup(f.sidecar.Close)
	return f
}

// ruleSet is what config.Load makes of the rules file and the globals.
func ruleSet(t testing.TB, o fixtureOptions) *rules.Set {
	t.Helper()
	var file *rules.Set
	if o.rules != "" {
		var err error
		if file, err = rules.Parse([]byte(o.rules)); err != nil {
			t.Fatal(err)
		}
	}
	set, err := file.WithDefaults(rules.Defaults{PublicPaths: o.publicPaths, RequiredScopes: o.scopes,
		AllowedClients: o.clients, CaseInsensitive: o.caseInsensitive})
	if err != nil {
		t.Fatal(err)
	}
	return set
}

// ready reports whether every issuer's keys are loaded.
func (f *fixture) ready() error {
	for _, check := range f.in.Checks() {
		if err := check(); err != nil {
			return err
		}
	}
	return nil
}

func (f *fixture) token(t testing.TB, extra map[string]any) string {
	return idptest.Sign(t, f.key, f.idp.Claims(audience, extra))
}

func (f *fixture) do(t testing.TB, path string, header http.Header) (*http.Response, string) {
	t.Helper()
	return f.send(t, http.MethodGet, path, "", header)
}

// send makes a method request for path with body and header to the
// sidecar and returns the answer and its body.
func (f *fixture) send(t testing.TB, method, path, body string, header http.Header) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest(method, f.sidecar.URL+path, strings.NewReader(body))
	if body == "" {
		req.Body = http.NoBody
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func bearer(tok string) http.Header { return http.Header{"Authorization": {"Bearer " + tok}} }

func invalidToken(desc string) string {
	return `Bearer realm="authsidecar", error="invalid_token", error_description="` + desc + `"`
}

// hs256 signs claims with HMAC-SHA256 keyed by secret: the classic attack
// of using an RSA public key, which everyone has, as an HMAC secret.
func hs256(claims map[string]any, kid string, secret []byte) string {
	h, _ := json.Marshal(map[string]string{"alg": "HS256", "typ": "JWT", "kid": kid})
	p, _ := json.Marshal(claims)
	signing := b64(h) + "." + b64(p)
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(signing))
	return signing + "." + base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func unsigned(claims map[string]any) string {
	h, _ := json.Marshal(map[string]string{"alg": "none", "typ": "JWT"})
	p, _ := json.Marshal(claims)
	return b64(h) + "." + b64(p) + "."
}

func TestRefusedRequestsNeverReachTheApp(t *testing.T) {
	f := newFixture(t, fixtureOptions{scopes: []string{"payments:read"}, clients: []string{"orders", "billing"}})
	stranger := idptest.NewECKey(t, "key-1") // a real kid, the wrong key
	now := time.Now()
	pubDER, _ := x509.MarshalPKIXPublicKey(f.key.Private.Public())

	cases := []struct {
		name     string
		header   http.Header
		status   int
		wwwAuth  string
		reason   string
		errorKey string
	}{
		{"no token", nil, 401, `Bearer realm="authsidecar"`, "missing", "invalid_request"},
		{"a basic credential", http.Header{"Authorization": {"Basic dXNlcjpwYXNz"}}, 401, invalidToken("the token is malformed"), "malformed", "invalid_token"},
		{"the scheme alone", http.Header{"Authorization": {"Bearer "}}, 401, invalidToken("the token is malformed"), "malformed", "invalid_token"},
		{"two tokens", http.Header{"Authorization": {"Bearer a.b.c", "Bearer d.e.f"}}, 401, invalidToken("the token is malformed"), "malformed", "invalid_token"},
		{"a token with a space", bearer("abc def"), 401, invalidToken("the token is malformed"), "malformed", "invalid_token"},
		{"two segments", bearer("eyJhbGciOiJSUzI1NiJ9.e30"), 401, invalidToken("the token is malformed"), "malformed", "invalid_token"},
		{"garbage segments", bearer("a.b.c"), 401, invalidToken("the token is malformed"), "malformed", "invalid_token"},
		{"alg none", bearer(unsigned(f.idp.Claims(audience, nil))), 401, invalidToken("the token signing algorithm is not accepted"), "disallowed_algorithm", "invalid_token"},
		{"HS256 keyed with the RSA public key", bearer(hs256(f.idp.Claims(audience, nil), "key-1", pubDER)), 401, invalidToken("the token signing algorithm is not accepted"), "disallowed_algorithm", "invalid_token"},
		{"a real kid signed by another key", bearer(idptest.Sign(t, stranger, f.idp.Claims(audience, nil))), 401, invalidToken("the token signature is invalid"), "bad_signature", "invalid_token"},
		{"a tampered payload", bearer(tamper(f.token(t, nil))), 401, invalidToken("the token signature is invalid"), "bad_signature", "invalid_token"},
		{"an unknown kid", bearer(idptest.Sign(t, idptest.NewECKey(t, "forged"), f.idp.Claims(audience, nil))), 401, invalidToken("the token is signed by an unknown key"), "unknown_key", "invalid_token"},
		{"expired past the skew", bearer(f.token(t, map[string]any{"exp": now.Add(-time.Minute).Unix()})), 401, invalidToken("the token is expired"), "expired", "invalid_token"},
		{"no exp", bearer(f.token(t, map[string]any{"exp": nil})), 401, invalidToken("the token is malformed"), "malformed", "invalid_token"},
		{"not yet valid", bearer(f.token(t, map[string]any{"nbf": now.Add(5 * time.Minute).Unix()})), 401, invalidToken("the token is not valid yet"), "not_yet_valid", "invalid_token"},
		{"issued in the future", bearer(f.token(t, map[string]any{"iat": now.Add(5 * time.Minute).Unix()})), 401, invalidToken("the token is not valid yet"), "not_yet_valid", "invalid_token"},
		{"a wrong issuer", bearer(f.token(t, map[string]any{"iss": "https://evil.example"})), 401, invalidToken("the token issuer is not trusted"), "wrong_issuer", "invalid_token"},
		{"a wrong audience", bearer(f.token(t, map[string]any{"aud": []string{"inventory"}})), 401, invalidToken("the token audience is not accepted"), "wrong_audience", "invalid_token"},
		{"a missing scope", bearer(f.token(t, map[string]any{"scope": "payments:write"})), 403, `Bearer realm="authsidecar", error="insufficient_scope", scope="payments:read"`, "insufficient_scope", "insufficient_scope"},
		{"a client not allowed", bearer(f.token(t, map[string]any{"client_id": "intruder"})), 403, "", "client_not_allowed", "access_denied"},
	}
	for _, tc := range cases {
		t.Run(tc.name+" is refused", func(t *testing.T) {
			before := len(f.app.requests())
			counter := testutil.ToFloat64(mustCounter(t, f.reg, tc.reason))
			resp, body := f.do(t, "/orders", tc.header)
			if resp.StatusCode != tc.status {
				t.Errorf("status = %d, want %d (body %s)", resp.StatusCode, tc.status, body)
			}
			if got := resp.Header.Get("WWW-Authenticate"); got != tc.wwwAuth {
				t.Errorf("WWW-Authenticate = %q, want %q", got, tc.wwwAuth)
			}
			var eb struct {
				Error       string `json:"error"`
				Description string `json:"error_description"`
			}
			if err := json.Unmarshal([]byte(body), &eb); err != nil || eb.Error != tc.errorKey || eb.Description == "" {
				t.Errorf("body = %s, want JSON with error %q and a description", body, tc.errorKey)
			}
			if got := len(f.app.requests()) - before; got != 0 {
				t.Errorf("the app saw %d requests, want 0", got)
			}
			if got := testutil.ToFloat64(mustCounter(t, f.reg, tc.reason)) - counter; got != 1 {
				t.Errorf("rejections{reason=%q} grew by %v, want 1", tc.reason, got)
			}
		})
	}
}

func mustCounter(t *testing.T, reg *prometheus.Registry, reason string) prometheus.Collector {
	t.Helper()
	return counterFrom(t, reg, "authsidecar_inbound_token_rejections_total", "reason", reason)
}

// counterFrom reads one series from reg as a collector for testutil.
func counterFrom(t *testing.T, reg *prometheus.Registry, name, label, value string) prometheus.Collector {
	t.Helper()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "probe"})
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetName() == label && lp.GetValue() == value {
					c.Add(m.GetCounter().GetValue())
				}
			}
		}
	}
	return c
}

func tamper(tok string) string {
	parts := strings.Split(tok, ".")
	payload, _ := base64.RawURLEncoding.DecodeString(parts[1])
	payload = []byte(strings.Replace(string(payload), `"svc-orders"`, `"svc-admin1"`, 1))
	return parts[0] + "." + b64(payload) + "." + parts[2]
}

func TestAllowedRequestCarriesTheCallersIdentity(t *testing.T) {
	f := newFixture(t, fixtureOptions{scopes: []string{"payments:read"}})
	h := bearer(f.token(t, map[string]any{"client_id": nil, "azp": "orders-v2"}))
	h.Set("X-Auth-Subject", "admin")
	h.Set("X-AUTH-SCOPES", "everything")
	h.Set("X-Auth-Whatever", "spoofed")
	h.Set("X-Forwarded-For", "6.6.6.6")
	h.Set("X-Request-Id", "req-42")
	resp, body := f.do(t, "/orders?id=7", h)
	if resp.StatusCode != 200 || body != "hello from app" {
		t.Fatalf("got %d %q, want 200 from the app", resp.StatusCode, body)
	}
	seen := f.app.requests()
	if len(seen) != 1 {
		t.Fatalf("app saw %d requests, want 1", len(seen))
	}
	got := seen[0]
	want := map[string]string{
		"X-Auth-Subject":   "svc-orders",
		"X-Auth-Issuer":    f.idp.Issuer,
		"X-Auth-Client-Id": "orders-v2",
		"X-Auth-Scopes":    "payments:read payments:write",
		"X-Auth-Whatever":  "",
		"Authorization":    "",
		"X-Forwarded-For":  "127.0.0.1",
		"X-Request-Id":     "req-42",
	}
	for k, v := range want {
		if vals := got.Header.Values(k); strings.Join(vals, ",") != v {
			t.Errorf("app saw %s = %q, want %q", k, vals, v)
		}
	}
	if got.URL.RequestURI() != "/orders?id=7" {
		t.Errorf("app saw %q, want /orders?id=7", got.URL.RequestURI())
	}
	if got.Host != strings.TrimPrefix(f.sidecar.URL, "http://") {
		t.Errorf("app saw Host %q, want the caller's %q", got.Host, f.sidecar.URL)
	}
}

func TestForwardTokenKeepsAuthorization(t *testing.T) {
	f := newFixture(t, fixtureOptions{forwardToken: true})
	tok := f.token(t, nil)
	if resp, _ := f.do(t, "/", bearer(tok)); resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if got := f.app.requests()[0].Header.Get("Authorization"); got != "Bearer "+tok {
		t.Errorf("app saw Authorization %q, want the caller's token", got)
	}
	if id := f.app.requests()[0].Header.Get("X-Request-Id"); len(id) != 32 {
		t.Errorf("X-Request-Id = %q, want a generated 32-hex id", id)
	}
}

func TestExpiredWithinSkewIsAccepted(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	tok := f.token(t, map[string]any{"exp": time.Now().Add(-10 * time.Second).Unix()})
	if resp, body := f.do(t, "/", bearer(tok)); resp.StatusCode != 200 {
		t.Fatalf("status %d %s, want 200: 10s past exp is within the 30s skew", resp.StatusCode, body)
	}
}

func TestPublicPathsNeedNoTokenButStillLoseSpoofedHeaders(t *testing.T) {
	f := newFixture(t, fixtureOptions{publicPaths: []string{"/healthz", "/docs/"}})
	spoof := http.Header{"X-Auth-Subject": {"admin"}, "X-Auth-Client-Id": {"ops"}, "Authorization": {"Bearer whatever"}}
	resp, _ := f.do(t, "/docs/index.html", spoof)
	if resp.StatusCode != 200 {
		t.Fatalf("public path: status %d, want 200", resp.StatusCode)
	}
	got := f.app.requests()[0].Header
	for _, k := range []string{"X-Auth-Subject", "X-Auth-Client-Id", "Authorization"} {
		if v := got.Get(k); v != "" {
			t.Errorf("app saw %s = %q on a public path, want it removed", k, v)
		}
	}
	for _, path := range []string{"/docs/../admin", "/docs//x/../../admin", "/private"} {
		if resp, _ := f.do(t, path, nil); resp.StatusCode != 401 {
			t.Errorf("%s: status %d, want 401: not a public path", path, resp.StatusCode)
		}
	}
	if n := len(f.app.requests()); n != 1 {
		t.Errorf("app saw %d requests, want 1", n)
	}
}

func TestProtectedPathLosesSpoofedSubjectEvenWhenRefused(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	h := bearer(f.token(t, nil))
	h["X-Auth-Subject"] = []string{"admin", "root"}
	f.do(t, "/", h)
	if got := f.app.requests()[0].Header.Values("X-Auth-Subject"); len(got) != 1 || got[0] != "svc-orders" {
		t.Errorf("app saw X-Auth-Subject %q, want only [svc-orders]", got)
	}
}

// TestKeysNotLoadedAnswers503ThenARequestLoadsThem: with no keys, because
// the provider was down at start, requests get 503; once it is back, the
// first request past coldProbeInterval loads them instead of waiting out
// the start-up backoff.
func TestKeysNotLoadedAnswers503ThenARequestLoadsThem(t *testing.T) {
	clk := clock.NewFake(time.Now())
	f := newFixture(t, fixtureOptions{skipWarmUp: true, clock: clk})
	f.idp.SetFailing(true)
	tok := f.token(t, nil)
	resp, body := f.do(t, "/", bearer(tok))
	if resp.StatusCode != 503 || !strings.Contains(body, "temporarily_unavailable") {
		t.Fatalf("got %d %s, want 503 temporarily_unavailable", resp.StatusCode, body)
	}
	f.idp.SetFailing(false)
	if resp, body := f.do(t, "/", bearer(tok)); resp.StatusCode != 503 {
		t.Fatalf("right after a failed fetch: %d %s, want 503 without asking again", resp.StatusCode, body)
	}
	if len(f.app.requests()) != 0 {
		t.Error("the app saw a request")
	}
	clk.Advance(inbound.ColdProbeInterval)
	if resp, body := f.do(t, "/", bearer(tok)); resp.StatusCode != 200 {
		t.Fatalf("past the probe interval with the provider back: %d %s, want 200", resp.StatusCode, body)
	}
	if err := f.ready(); err != nil {
		t.Errorf("after a request loaded the keys: %v", err)
	}
}

func TestAppDownAnswers502(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	f.app.Close()
	resp, body := f.do(t, "/", bearer(f.token(t, nil)))
	if resp.StatusCode != 502 || !strings.Contains(body, "upstream_unavailable") {
		t.Fatalf("got %d %s, want 502 upstream_unavailable", resp.StatusCode, body)
	}
	if got := testutil.ToFloat64(counterFrom(t, f.reg, "authsidecar_inbound_requests_total", "result", "upstream_error")); got != 1 {
		t.Errorf("requests{result=upstream_error} = %v, want 1", got)
	}
}

func TestRequestBodyIsStreamedToTheApp(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	body := strings.Repeat("x", 3<<20)
	req, _ := http.NewRequest(http.MethodPost, f.sidecar.URL+"/upload", strings.NewReader(body))
	req.Header = bearer(f.token(t, nil))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	f.app.mu.Lock()
	defer f.app.mu.Unlock()
	if resp.StatusCode != 200 || len(f.app.body) != 1 || f.app.body[0] != body {
		t.Fatalf("status %d; app got %d bodies, want the 3 MiB body once", resp.StatusCode, len(f.app.body))
	}
}

func TestIdentityHeadersResistHopByHopAndUnderscoreTricks(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	h := bearer(f.token(t, nil))
	h.Set("Connection", "keep-alive, X-Auth-Subject, x-auth-client-id,X_Auth_Scopes")
	h["X_Auth_Subject"] = []string{"admin"}
	h["X-Auth_Issuer"] = []string{"https://evil.example"}
	h["x_auth_client_id"] = []string{"root"}
	if resp, body := f.do(t, "/", h); resp.StatusCode != 200 {
		t.Fatalf("status %d %s", resp.StatusCode, body)
	}
	got := f.app.requests()[0].Header
	for k, want := range map[string]string{
		"X-Auth-Subject": "svc-orders", "X-Auth-Client-Id": "orders", "X-Auth-Scopes": "payments:read payments:write",
		"X-Auth-Issuer": f.idp.Issuer, "X_auth_subject": "", "X-Auth_issuer": "", "X_auth_client_id": "",
	} {
		if v := got.Values(k); strings.Join(v, ",") != want {
			t.Errorf("app saw %s = %q, want %q", k, v, want)
		}
	}
	for k := range got {
		if strings.Contains(strings.ToLower(strings.ReplaceAll(k, "_", "-")), "x-auth-") && !strings.HasPrefix(k, "X-Auth-") {
			t.Errorf("app saw the caller's %s", k)
		}
	}
}

func TestStreamedResponsesAreNotHeldBack(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	release := make(chan struct{})
	f.app.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, "data: first\n\n")
		w.(http.Flusher).Flush()
		<-release
		io.WriteString(w, "data: second\n\n")
	})
	defer close(release)
	req, _ := http.NewRequest(http.MethodGet, f.sidecar.URL+"/events", nil)
	req.Header = bearer(f.token(t, nil))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	got := make(chan string, 1)
	go func() {
		buf := make([]byte, 64)
		n, _ := resp.Body.Read(buf)
		got <- string(buf[:n])
	}()
	select {
	case first := <-got:
		if first != "data: first\n\n" {
			t.Errorf("first read %q", first)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the first event did not arrive while the app held the stream open")
	}
}

func TestPublicPathsCannotBeStretched(t *testing.T) {
	f := newFixture(t, fixtureOptions{publicPaths: []string{"/health", "/public/"}})
	for _, tc := range []struct {
		path string
		want int
	}{
		{"/health", 200},
		{"/health/live", 200},
		{"/public/index.html", 200},
		{"/healthz-internal", 401},
		{"/health-admin", 401},
		{"/public/..;/admin", 401},
		{"/public/%2e%2e;/admin", 401},
		{"/public/%252e%252e/admin", 401},
		{"/public/a;jsessionid=1", 401},
	} {
		if resp, _ := f.do(t, tc.path, nil); resp.StatusCode != tc.want {
			t.Errorf("%s without a token: status %d, want %d", tc.path, resp.StatusCode, tc.want)
		}
	}
	if n := len(f.app.requests()); n != 3 {
		t.Errorf("the app saw %d requests, want 3", n)
	}
}

func TestURLOverrideHeadersAreRemoved(t *testing.T) {
	f := newFixture(t, fixtureOptions{publicPaths: []string{"/public/"}})
	f.do(t, "/public/x", http.Header{"X-Original-Url": {"/admin"}, "X-Rewrite-Url": {"/admin"}})
	got := f.app.requests()[0].Header
	if got.Get("X-Original-Url") != "" || got.Get("X-Rewrite-Url") != "" {
		t.Errorf("app saw URL override headers: %v", got)
	}
}
