package e2e

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/authsidecar/authsidecar/internal/idptest"
)

// hostile is sidecar B trusting a fake identity provider (internal/idptest)
// whose keys and answers a test controls, in front of a recording app.
type hostile struct {
	idp   *idptest.IDP
	key   idptest.Key
	app   *App
	b     *Sidecar
	addrs SidecarAddrs
}

func startHostile(t *testing.T, extra map[string]string, keys ...idptest.Key) *hostile {
	t.Helper()
	return startHostileWith(t, extra, nil, keys...)
}

// startHostileWith is startHostile with prepare run on the provider before
// the sidecar starts.
func startHostileWith(t *testing.T, extra map[string]string, prepare func(h *hostile), keys ...idptest.Key) *hostile {
	t.Helper()
	h := &hostile{key: idptest.NewRSAKey(t, "good"), app: startApp(t), addrs: freeSidecarAddrs(t)}
	h.idp = idptest.New(t, append([]idptest.Key{h.key}, keys...)...)
	if prepare != nil {
		prepare(h)
	}
	h.b = startSidecar(t, mergeEnv(h.addrs.Env(), map[string]string{
		"AUTHSIDECAR_INBOUND_ISSUERS":   h.idp.Issuer,
		"AUTHSIDECAR_INBOUND_AUDIENCES": "payments",
		"AUTHSIDECAR_INBOUND_UPSTREAM":  h.app.URL,
		"AUTHSIDECAR_LOG_LEVEL":         "debug",
	}, extra))
	h.b.WaitReady(t, "http://"+h.addrs.Admin)
	return h
}

func (h *hostile) token(t *testing.T, extra map[string]any) string {
	return idptest.Sign(t, h.key, h.idp.Claims("payments", extra))
}

func (h *hostile) get(t *testing.T, path string, header map[string]string) reply {
	return call(t, http.MethodGet, "http://"+h.addrs.Inbound+path, nil, header)
}

func writeTempFile(t *testing.T, name, content string) string {
	t.Helper()
	p := t.TempDir() + "/" + name
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestHostileCallersAgainstTheBuiltSidecar sends the built sidecar what
// an attacker would around the token check, one point of the hardening
// review each; every subtest fails against a sidecar without its fix.
func TestHostileCallersAgainstTheBuiltSidecar(t *testing.T) {
	t.Parallel()
	t.Run("a header a condition reads is the header the app gets", func(t *testing.T) {
		t.Parallel()
		h := startHostile(t, map[string]string{"AUTHSIDECAR_INBOUND_RULES_FILE": writeTempFile(t, "rules.yaml",
			"rules:\n  - paths: [\"/**\"]\n    when: 'request.headers[\"x-tenant\"] == \"acme\"'\n")})
		got := h.get(t, "/orders", mergeEnv(bearer(h.token(t, nil)), map[string]string{"X-Tenant": "acme", "Connection": "X-Tenant"}))
		if got.Status != 403 {
			t.Errorf("a condition on a header the Connection header removes: %s, want 403", got)
		}
		checkAppSawNothing(t, h.app, "a header that vanishes after the condition")
	})
	t.Run("ID and logout tokens are not access tokens", func(t *testing.T) {
		t.Parallel()
		h := startHostile(t, nil)
		logout := idptest.SignWithHeaders(t, h.key, h.idp.Claims("payments", map[string]any{
			"events": map[string]any{"http://schemas.openid.net/event/backchannel-logout": map[string]any{}}, "sid": "s1",
		}), map[jose.HeaderKey]any{"kid": h.key.ID, "typ": "logout+jwt"})
		keycloakID := idptest.SignWithHeaders(t, h.key, h.idp.Claims("payments", map[string]any{"typ": "ID", "nonce": "n"}),
			map[jose.HeaderKey]any{"kid": h.key.ID, "typ": "JWT"})
		for name, tok := range map[string]string{"a logout token": logout, "a Keycloak ID token": keycloakID} {
			if got := h.get(t, "/", bearer(tok)); got.Status != 401 || !strings.Contains(got.Header.Get("WWW-Authenticate"), "not an access token") {
				t.Errorf("%s: %s %q, want 401 not an access token", name, got, got.Header.Get("WWW-Authenticate"))
			}
		}
		checkAppSawNothing(t, h.app, "tokens that are not access tokens")
	})
	t.Run("an introspected refresh token is refused", func(t *testing.T) {
		t.Parallel()
		idp := idptest.New(t, idptest.NewRSAKey(t, "k"))
		idp.SetIntrospectionClient("payments-rs", "rs-secret")
		idp.SetAnswer("hydra-refresh-token", map[string]any{"active": true, "token_use": "refresh_token", "client_id": "orders",
			"sub": "alice", "aud": []string{"payments"}, "iss": idp.Issuer, "exp": time.Now().Add(time.Hour).Unix()})
		app, addrs := startApp(t), freeSidecarAddrs(t)
		b := startSidecar(t, mergeEnv(addrs.Env(), map[string]string{
			"AUTHSIDECAR_INBOUND_ISSUERS": idp.Issuer, "AUTHSIDECAR_INBOUND_AUDIENCES": "payments", "AUTHSIDECAR_INBOUND_UPSTREAM": app.URL,
			"AUTHSIDECAR_INBOUND_INTROSPECTION_CLIENT_ID": "payments-rs", "AUTHSIDECAR_INBOUND_INTROSPECTION_CLIENT_SECRET": "rs-secret",
		}))
		b.WaitReady(t, "http://"+addrs.Admin)
		if got := call(t, "GET", "http://"+addrs.Inbound+"/", nil, bearer("hydra-refresh-token")); got.Status != 401 {
			t.Errorf("an introspected refresh token: %s, want 401", got)
		}
		checkAppSawNothing(t, app, "an introspected refresh token")
	})
	t.Run("keys unfit for verifying never verify", func(t *testing.T) {
		t.Parallel()
		weak, err := rsa.GenerateKey(rand.Reader, 1024)
		if err != nil {
			t.Fatal(err)
		}
		weakKey := idptest.Key{ID: "weak", Alg: jose.RS256, Private: weak}
		encKey, opsKey := idptest.NewECKey(t, "enc"), idptest.NewECKey(t, "ops")
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
		h := startHostileWith(t, nil, func(h *hostile) {
			doc, _ := json.Marshal(map[string]any{"keys": []any{jwk(h.key, nil), jwk(weakKey, nil),
				jwk(encKey, map[string]any{"use": "enc"}), jwk(opsKey, map[string]any{"use": nil, "key_ops": []string{"encrypt"}})}})
			h.idp.SetJWKS(string(doc))
		})
		for _, k := range []idptest.Key{weakKey, encKey, opsKey} {
			if got := h.get(t, "/", bearer(idptest.Sign(t, k, h.idp.Claims("payments", nil)))); got.Status != 401 {
				t.Errorf("a token signed by the %s key: %s, want 401", k.ID, got)
			}
		}
		checkAppSawNothing(t, h.app, "keys unfit for verifying")
	})
	t.Run("scopes are split on ASCII spaces only", func(t *testing.T) {
		t.Parallel()
		h := startHostile(t, map[string]string{"AUTHSIDECAR_INBOUND_REQUIRED_SCOPES": "admin"})
		if got := h.get(t, "/", bearer(h.token(t, map[string]any{"scope": "read\u00a0admin"}))); got.Status != 403 {
			t.Errorf(`scope "read\u00a0admin": %s, want 403`, got)
		}
		checkAppSawNothing(t, h.app, "a scope with a no-break space")
	})
	t.Run("only a verified token reaches a public path", func(t *testing.T) {
		t.Parallel()
		h := startHostile(t, map[string]string{"AUTHSIDECAR_INBOUND_PUBLIC_PATHS": "/public", "AUTHSIDECAR_INBOUND_FORWARD_TOKEN": "true"})
		hdr, _ := json.Marshal(map[string]string{"alg": "none", "typ": "JWT"})
		claims, _ := json.Marshal(h.idp.Claims("payments", map[string]any{"sub": "admin"}))
		none := base64.RawURLEncoding.EncodeToString(hdr) + "." + base64.RawURLEncoding.EncodeToString(claims) + "."
		if got := h.get(t, "/public/x", bearer(none)); got.Status != 200 {
			t.Fatalf("public path: %s", got)
		}
		if a := h.app.Last(t).Header.Get("Authorization"); a != "" {
			t.Errorf("the app got an unsigned token in Authorization: %q", a)
		}
	})
	t.Run("headers apps read as the proxy's word are removed", func(t *testing.T) {
		t.Parallel()
		h := startHostile(t, nil)
		spoofed := map[string]string{"X-Real-IP": "10.0.0.1", "X-Forwarded-Prefix": "/admin", "X-Forwarded-Port": "443",
			"X-Forwarded-Uri": "/admin", "X-Original-URI": "/admin", "Forwarded": "for=10.0.0.1;proto=https",
			"X-Client-IP": "10.0.0.1", "Client-IP": "10.0.0.1", "True-Client-IP": "10.0.0.1", "CF-Connecting-IP": "10.0.0.1"}
		if got := h.get(t, "/", mergeEnv(bearer(h.token(t, nil)), spoofed)); got.Status != 200 {
			t.Fatalf("%s", got)
		}
		seen := h.app.Last(t).Header
		for k := range spoofed {
			if v := seen.Get(k); v != "" {
				t.Errorf("the app saw the caller's %s: %q", k, v)
			}
		}
	})
	t.Run("a refusal does not wait for the body", func(t *testing.T) {
		t.Parallel()
		h := startHostile(t, nil)
		if got := rawRequest(t, h.addrs.Inbound, "POST /orders HTTP/1.1\r\nHost: sidecar\r\nContent-Length: 100000\r\n\r\n"); got != 401 {
			t.Errorf("a POST without a token announcing a body it never sends: status %d, want 401 at once (0: no answer in 2s)", got)
		}
	})
	t.Run("a token without kid is tried against few keys", func(t *testing.T) {
		t.Parallel()
		var keys []idptest.Key
		for range 1500 {
			keys = append(keys, idptest.NewECKey(t, ""))
		}
		h := startHostile(t, nil, keys...)
		tok := idptest.SignWithHeaders(t, keys[1499], h.idp.Claims("payments", nil), nil)
		if got := h.get(t, "/", bearer(tok)); got.Status != 401 {
			t.Errorf("a kid-less token signed by the last of 1,500 keys: %s, want 401 (not tried)", got)
		}
	})
	t.Run("junk opaque tokens cannot pile up introspection calls", func(t *testing.T) {
		t.Parallel()
		idp := idptest.New(t, idptest.NewRSAKey(t, "k"))
		idp.SetIntrospectionClient("payments-rs", "rs-secret")
		arrived, release := idp.HoldIntrospectionArrivals()
		defer release()
		app, addrs := startApp(t), freeSidecarAddrs(t)
		b := startSidecar(t, mergeEnv(addrs.Env(), map[string]string{
			"AUTHSIDECAR_INBOUND_ISSUERS": idp.Issuer, "AUTHSIDECAR_INBOUND_AUDIENCES": "payments", "AUTHSIDECAR_INBOUND_UPSTREAM": app.URL,
			"AUTHSIDECAR_INBOUND_INTROSPECTION_CLIENT_ID": "payments-rs", "AUTHSIDECAR_INBOUND_INTROSPECTION_CLIENT_SECRET": "rs-secret",
		}))
		b.WaitReady(t, "http://"+addrs.Admin)
		var wg sync.WaitGroup
		for i := range 64 {
			wg.Go(func() { _, _ = tryCall("GET", "http://"+addrs.Inbound+"/", nil, bearer("junk-"+strconv.Itoa(i))) })
		}
		for range 64 {
			select {
			case <-arrived:
			case <-time.After(10 * time.Second):
				t.Fatal("fewer than 64 introspection calls arrived")
			}
		}
		got, err := tryCallTimeout(2*time.Second, "GET", "http://"+addrs.Inbound+"/", bearer("junk-one-more"))
		if err != nil || got.Status != 503 || got.Header.Get("Retry-After") == "" {
			t.Errorf("a 65th junk token while 64 calls are held: %v %v, want 503 with Retry-After at once", got, err)
		}
		release()
		wg.Wait()
	})
}

func tryCallTimeout(d time.Duration, method, url string, header map[string]string) (reply, error) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, method, url, nil)
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return reply{}, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return reply{Status: resp.StatusCode, Header: resp.Header, Body: b}, nil
}

// TestOutboundHoldsItsTokenBack covers the outbound points of the review.
func TestOutboundHoldsItsTokenBack(t *testing.T) {
	t.Parallel()
	idp := startIDP(t, chainIDPConfig())
	tap := startTokenTap(t, idp, 0)
	up := startApp(t)
	var calls atomic.Int64
	up.Respond(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodTrace { // an upstream that echoes, as TRACE asks
			w.Header().Set("Content-Type", "message/http")
			_ = r.Write(w)
			return
		}
		if r.URL.Path == "/flaky" && calls.Add(1)%2 == 0 {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		w.WriteHeader(http.StatusOK)
	})
	a := startOutbound(t, idp, basicClient, basicSecret, "client_secret_basic", tap.TokenURL(),
		outboundRoute{Name: "payments", URL: up.URL, Resource: paymentsRS, Scopes: "payments:read"})
	a.WaitReady(t, "http://"+a.Addrs.Admin)
	got := call(t, http.MethodTrace, a.Addrs.OutboundURL()+"/payments/x", nil, nil)
	if got.Status != http.StatusMethodNotAllowed || strings.Contains(string(got.Body), "Bearer") {
		t.Errorf("TRACE through the route: %s, want 405 and no token echoed", got)
	}
	before := len(tap.Requests())
	for range 20 {
		call(t, http.MethodGet, a.Addrs.OutboundURL()+"/payments/flaky", nil, nil)
	}
	if n := len(tap.Requests()) - before; n > 1 {
		t.Errorf("20 calls to an upstream that refuses every other one cost %d token requests, want at most 1 per 5 s", n)
	}
}

// TestThousandsOfStalledBodiesDoNotStarveTheSidecar opens 2,000
// connections that each announce a body and never send it, without a
// token; then a valid request must be served within a second.
func TestThousandsOfStalledBodiesDoNotStarveTheSidecar(t *testing.T) {
	t.Parallel()
	h := startHostile(t, nil)
	const n = 2000
	conns := make([]net.Conn, 0, n)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	answered := 0
	for i := range n {
		c, err := net.Dial("tcp", h.addrs.Inbound)
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		conns = append(conns, c)
		if _, err := io.WriteString(c, "POST /upload HTTP/1.1\r\nHost: sidecar\r\nContent-Length: 100000\r\n\r\n"); err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
	}
	deadline := time.Now().Add(5 * time.Second) // for all of them: the test stays bounded
	for _, c := range conns {
		_ = c.SetReadDeadline(deadline)
		if resp, err := http.ReadResponse(bufio.NewReader(c), nil); err == nil && resp.StatusCode == 401 {
			answered++
		}
	}
	rss := processRSS(t, h.b)
	start := time.Now()
	got := h.get(t, "/", bearer(h.token(t, nil)))
	elapsed := time.Since(start)
	t.Logf("%d of %d stalled bodies answered 401; then a valid request took %s; sidecar RSS %s", answered, n, elapsed, rss)
	if answered != n {
		t.Errorf("%d of %d stalled requests got their 401 within 5s", answered, n)
	}
	if got.Status != 200 || elapsed > time.Second {
		t.Errorf("a valid request after %d stalled bodies: %s in %s, want 200 within 1s", n, got, elapsed)
	}
}

// processRSS reads the sidecar process's resident memory from /proc.
func processRSS(t *testing.T, s *Sidecar) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", s.proc.cmd.Process.Pid))
	if err != nil {
		return "unknown"
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}
