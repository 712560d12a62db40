package outbound

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestClientAuthenticationMethods(t *testing.T) {
	for _, method := range []string{"client_secret_basic", "client_secret_post"} {
		t.Run(method, func(t *testing.T) {
			ts := newTokenServer(t)
			ts.set(func(ts *tokenServer) { ts.style = strings.TrimPrefix(method, "client_secret_") })
			h := build(t, env(ts, "http://upstream.test", map[string]string{"AUTHSIDECAR_OUTBOUND_AUTH_METHOD": method}), nil)
			if _, err := h.route("payments").cache.Token(t.Context()); err != nil {
				t.Fatalf("Token: %v", err)
			}
			form := ts.lastForm()
			wantID := ""
			if method == "client_secret_post" {
				wantID = testClientID
			}
			if got := form.Get("client_id"); got != wantID {
				t.Errorf("client_id in the body = %q, want %q", got, wantID)
			}
		})
	}
}

func TestWrongMethodIsRefusedByTheEndpoint(t *testing.T) {
	ts := newTokenServer(t) // wants basic
	h := build(t, env(ts, "http://upstream.test", map[string]string{"AUTHSIDECAR_OUTBOUND_AUTH_METHOD": "client_secret_post"}), nil)
	_, err := h.route("payments").cache.Token(t.Context())
	want := `outbound: no valid token for route "payments": outbound: token endpoint ` + ts.URL + `/token answered 401: error "invalid_client" ("want client_secret_basic, got no Basic header")`
	if err == nil || err.Error() != want {
		t.Fatalf("error = %v, want %s", err, want)
	}
}

func TestEachRouteSendsItsAudienceResourceAndScopes(t *testing.T) {
	ts := newTokenServer(t)
	h := build(t, env(ts, "", map[string]string{
		"AUTHSIDECAR_OUTBOUND_ROUTES":         "payments,billing",
		"AUTHSIDECAR_ROUTE_PAYMENTS_URL":      "http://payments.test",
		"AUTHSIDECAR_ROUTE_PAYMENTS_AUDIENCE": "https://payments.example/api",
		"AUTHSIDECAR_ROUTE_PAYMENTS_SCOPES":   "payments:read, payments:write",
		"AUTHSIDECAR_ROUTE_BILLING_URL":       "http://billing.test",
		"AUTHSIDECAR_ROUTE_BILLING_RESOURCE":  "https://billing.example/",
	}), nil)
	for _, tc := range []struct {
		route                     string
		audience, resource, scope string
	}{
		{"payments", "https://payments.example/api", "", "payments:read payments:write"},
		{"billing", "", "https://billing.example/", ""},
	} {
		if _, err := h.route(tc.route).cache.Token(t.Context()); err != nil {
			t.Fatalf("%s: Token: %v", tc.route, err)
		}
		form := ts.lastForm()
		for param, want := range map[string]string{"audience": tc.audience, "resource": tc.resource, "scope": tc.scope} {
			if got := form.Get(param); got != want || form.Has(param) != (want != "") {
				t.Errorf("%s: %s = %q (sent: %v), want %q", tc.route, param, got, form.Has(param), want)
			}
		}
	}
	if got := ts.calls.Load(); got != 2 {
		t.Errorf("token requests = %d, want one per route", got)
	}
}

func TestSecretFileIsReReadWhenItChanges(t *testing.T) {
	t.Run("Kubernetes swaps the ..data symlink", func(t *testing.T) {
		dir := t.TempDir()
		writeVersion := func(version, secret string) {
			must(t, os.Mkdir(filepath.Join(dir, version), 0o700))
			must(t, os.WriteFile(filepath.Join(dir, version, "client-secret"), []byte(secret+"\n"), 0o600))
			must(t, os.Symlink(version, filepath.Join(dir, "..data_tmp")))
			must(t, os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")))
		}
		writeVersion("..2026_01_01", "first-secret")
		must(t, os.Symlink(filepath.Join("..data", "client-secret"), filepath.Join(dir, "client-secret")))
		// The same length: only the file's identity tells them apart.
		rotate(t, filepath.Join(dir, "client-secret"), "first-secret", "other-secret", func() { writeVersion("..2026_01_02", "other-secret") })
	})
	t.Run("the file is rewritten in place", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "client-secret")
		must(t, os.WriteFile(path, []byte("first-secret"), 0o600))
		rotate(t, path, "first-secret", "the-second-secret", func() { must(t, os.WriteFile(path, []byte("the-second-secret"), 0o600)) })
	})
}

// rotate fetches a token with the secret in path, replaces it with
// replace, and checks that the next fetch sends the new secret.
func rotate(t *testing.T, path, oldSecret, newSecret string, replace func()) {
	ts := newTokenServer(t)
	ts.set(func(ts *tokenServer) { ts.secret = oldSecret })
	h := build(t, env(ts, "http://upstream.test", map[string]string{
		"AUTHSIDECAR_OUTBOUND_CLIENT_SECRET":      "",
		"AUTHSIDECAR_OUTBOUND_CLIENT_SECRET_FILE": path,
	}), nil)
	cache := h.route("payments").cache
	first, err := cache.Token(t.Context())
	if err != nil {
		t.Fatalf("Token with the first secret: %v", err)
	}
	replace()
	ts.set(func(ts *tokenServer) { ts.secret = newSecret }) // the old one is now refused
	cache.Invalidate(first)
	if _, err := cache.Token(t.Context()); err != nil {
		t.Fatalf("Token after the rotation: %v", err)
	}
	if got := ts.calls.Load(); got != 2 {
		t.Errorf("token requests = %d, want 2", got)
	}
}

func TestTokenEndpointFoundByDiscoveryLazilyAndRetried(t *testing.T) {
	ts := newTokenServer(t)
	var discoveries atomic.Int64
	var broken atomic.Bool
	broken.Store(true)
	var issuer *httptest.Server
	issuer = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		discoveries.Add(1)
		if broken.Load() || r.URL.Path != "/.well-known/openid-configuration" {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"issuer": issuer.URL, "token_endpoint": ts.URL + "/token"})
	}))
	t.Cleanup(issuer.Close)
	clock := newFakeClock()
	h := build(t, env(ts, "http://upstream.test", map[string]string{
		"AUTHSIDECAR_OUTBOUND_TOKEN_URL": "",
		"AUTHSIDECAR_OUTBOUND_ISSUER":    issuer.URL,
		"AUTHSIDECAR_OUTBOUND_ROUTES":    "payments,billing",
		"AUTHSIDECAR_ROUTE_BILLING_URL":  "http://billing.test",
	}), clock)
	if got := discoveries.Load(); got != 0 {
		t.Fatalf("Build asked the issuer %d times, want 0: start-up must not wait for it", got)
	}
	cache := h.route("payments").cache
	_, err := cache.Token(t.Context())
	if !errors.Is(err, errTokenUnavailable) || !strings.Contains(err.Error(), "finding the token endpoint of "+`"`+issuer.URL+`"`) {
		t.Fatalf("error = %v, want the discovery failure", err)
	}
	broken.Store(false)
	clock.Advance(2 * time.Second) // past the first backoff
	for _, route := range []string{"payments", "billing"} {
		if _, err := h.route(route).cache.Token(t.Context()); err != nil {
			t.Fatalf("%s: Token after the issuer recovered: %v", route, err)
		}
	}
	// Two well-known documents are tried per failed attempt; one is read
	// once it works, and the routes share it.
	if got, failed := discoveries.Load(), int64(2); got != failed+1 {
		t.Errorf("discovery requests = %d, want %d failed and 1 good", got, failed)
	}
	if got := ts.calls.Load(); got != 2 {
		t.Errorf("token requests = %d, want 2 (one per route) at the discovered endpoint", got)
	}
}

func TestNeitherTokensNorSecretsAreLogged(t *testing.T) {
	ts := newTokenServer(t)
	up := newUpstream(t, ts)
	up.handle = func(w http.ResponseWriter, _ *http.Request, _ []byte) { w.WriteHeader(http.StatusUnauthorized) }
	clock := newFakeClock()
	h := build(t, env(ts, up.URL, nil), clock)
	expectStatus(t, h.do(t, "GET", "/payments/x", nil), http.StatusUnauthorized) // fetch, 401, refetch
	ts.set(func(ts *tokenServer) { ts.secret = "rotated" })
	clock.Advance(refusalCooldown)
	expectStatus(t, h.do(t, "GET", "/payments/x", nil), http.StatusUnauthorized) // refetch fails
	expectStatus(t, h.do(t, "GET", "/payments/x", nil), http.StatusServiceUnavailable)
	logs := h.log.String()
	if !strings.Contains(logs, "token fetch failed") {
		t.Fatalf("the log lacks the fetch failure:\n%s", logs)
	}
	for _, secret := range []string{testSecret, "tok-1", "tok-2", "tok-3"} {
		if strings.Contains(logs, secret) {
			t.Errorf("the log shows %q:\n%s", secret, logs)
		}
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
