package e2e

// Beyond bearer tokens, against oidc-provider: DPoP-bound tokens both ways
// (RFC 9449), calls on behalf of the caller by token exchange (RFC 8693),
// and protected-resource metadata (RFC 9728).

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"reflect"
	"strings"
	"sync"
	"testing"
)

// TestDPoPBetweenTwoSidecars: A, with outbound DPoP, gets a DPoP-bound
// client-credentials token (the provider asks it for a nonce first) and
// calls B, which verifies token and proof. What A sent, taken by another,
// opens nothing.
func TestDPoPBetweenTwoSidecars(t *testing.T) {
	t.Parallel()
	cfg := chainIDPConfig()
	cfg.DPoP = IDPDPoP{RequireNonce: true}
	idp := startIDP(t, cfg)
	appB := startApp(t)
	b := startInbound(t, idp, paymentsES, "payments:write", appB, nil)
	// A calls B through a tap that keeps what A sent, as one on the
	// network could; it passes the Host on, so B is addressed as the tap.
	var mu sync.Mutex
	var sent http.Header
	target, _ := url.Parse(b.Addrs.InboundURL())
	tap := httptest.NewServer(&httputil.ReverseProxy{Rewrite: func(pr *httputil.ProxyRequest) {
		pr.SetURL(target)
		pr.Out.Host = pr.In.Host
		mu.Lock()
		sent = pr.In.Header.Clone()
		mu.Unlock()
	}})
	t.Cleanup(tap.Close)
	addrs := freeSidecarAddrs(t)
	a := startSidecar(t, mergeEnv(addrs.Env(), map[string]string{
		"AUTHSIDECAR_OUTBOUND_ROUTES":         "payments",
		"AUTHSIDECAR_OUTBOUND_TOKEN_URL":      idp.TokenURL(),
		"AUTHSIDECAR_OUTBOUND_CLIENT_ID":      basicClient,
		"AUTHSIDECAR_OUTBOUND_CLIENT_SECRET":  basicSecret,
		"AUTHSIDECAR_OUTBOUND_DPOP":           "true",
		"AUTHSIDECAR_ROUTE_PAYMENTS_URL":      tap.URL,
		"AUTHSIDECAR_ROUTE_PAYMENTS_RESOURCE": paymentsES,
		"AUTHSIDECAR_ROUTE_PAYMENTS_SCOPES":   "payments:write",
	}))
	b.WaitReady(t, b.Addrs.AdminURL())
	a.WaitReady(t, addrs.AdminURL())

	if r := call(t, http.MethodPost, addrs.OutboundURL()+"/payments/charges", []byte("42"), nil); r.Status != http.StatusOK {
		t.Fatalf("through A and B: %s", r)
	}
	seen := appB.Last(t)
	mu.Lock()
	tok, ok := strings.CutPrefix(sent.Get("Authorization"), "DPoP ")
	proof := sent.Get("Dpop")
	mu.Unlock()
	if !ok || proof == "" {
		t.Fatalf("A sent Authorization %q and DPoP %q, want a DPoP token and proof", sent.Get("Authorization"), proof)
	}
	if seen.Header.Get("Authorization") != "" || seen.Header.Get("Dpop") != "" {
		t.Errorf("app B got Authorization %q, DPoP %q; want neither", seen.Header.Get("Authorization"), seen.Header.Get("Dpop"))
	}
	claims := tokenClaims(t, tok)
	cnf, _ := claims["cnf"].(map[string]any)
	if jkt, _ := cnf["jkt"].(string); jkt == "" {
		t.Fatalf("A's token carries cnf %v, want a jkt", claims["cnf"])
	}
	if seen.Header.Get("X-Auth-Client-Id") != basicClient || seen.Header.Get("X-Auth-Subject") != basicClient {
		t.Errorf("app B saw client %q subject %q, want A's", seen.Header.Get("X-Auth-Client-Id"), seen.Header.Get("X-Auth-Subject"))
	}
	if got := metric(t, addrs.AdminURL(), "authsidecar_token_fetches_total", "route", "payments", "result", "success"); got != 1 {
		t.Errorf("A fetched %v tokens, want 1 (the nonce challenge answered within one fetch)", got)
	}

	n := len(appB.Requests())
	inB := tap.URL // B as A addressed it
	for _, tc := range []struct {
		name, method, path string
		header             map[string]string
		say                string
	}{
		{"the token as a bearer token", http.MethodPost, "/charges", map[string]string{"Authorization": "Bearer " + tok},
			"the token is bound to a DPoP key: send it as DPoP with a proof"},
		{"the token without a proof", http.MethodPost, "/charges", map[string]string{"Authorization": "DPoP " + tok},
			"the request must carry exactly one DPoP proof"},
		{"the proof for another URL", http.MethodPost, "/refunds", map[string]string{"Authorization": "DPoP " + tok, "DPoP": proof},
			"the DPoP proof's htu is not the request's URL"},
		{"the proof for another method", http.MethodDelete, "/charges", map[string]string{"Authorization": "DPoP " + tok, "DPoP": proof},
			"the DPoP proof's htm is not the request's method"},
		{"the proof again", http.MethodPost, "/charges", map[string]string{"Authorization": "DPoP " + tok, "DPoP": proof},
			"the DPoP proof was used before"},
		{"a proof by another key", http.MethodPost, "/charges", map[string]string{"Authorization": "DPoP " + tok,
			"DPoP": dpopProof(t, newDPoPKey(t), http.MethodPost, inB+"/charges", tok, "")},
			"the DPoP proof's key is not the one the token is bound to"},
	} {
		r := call(t, tc.method, inB+tc.path, []byte("stolen"), tc.header)
		want := `DPoP realm="authsidecar", algs="RS256 RS384 RS512 PS256 PS384 PS512 ES256 ES384 ES512 EdDSA", error="invalid_dpop_proof", error_description="` + tc.say + `"`
		if r.Status != http.StatusUnauthorized || r.errorCode() != "invalid_dpop_proof" || r.Header.Values("WWW-Authenticate")[0] != want {
			t.Errorf("%s: %s %q; want 401 invalid_dpop_proof with %s", tc.name, r, r.Header.Values("WWW-Authenticate"), want)
		}
	}
	if len(appB.Requests()) != n {
		t.Errorf("app B saw %d of the stolen calls", len(appB.Requests())-n)
	}
	expectMetric(t, b.Addrs.AdminURL(), "invalid_dpop_proof refusals", 6, "authsidecar_inbound_token_rejections_total", "reason", "invalid_dpop_proof")
}

// TestTokenExchangeOnBehalfOfTheCaller: caller C calls A; app A, serving
// it, calls B through A's token-exchange route, passing on the
// X-Auth-Context handle A gave it. B's app sees C as the subject, in a
// token that says A acts for C.
func TestTokenExchangeOnBehalfOfTheCaller(t *testing.T) {
	t.Parallel()
	const ordersRS = "http://orders.example"
	cfg := chainIDPConfig()
	cfg.Clients = append(cfg.Clients,
		IDPClient{ID: "svc-orders-te", Secret: "orders-te-secret-5a1b", TokenExchange: true},
		IDPClient{ID: "svc-web", Secret: "web-secret-9c2e", Scopes: []string{"orders:read"}}, // caller C
	)
	cfg.Resources[ordersRS] = IDPResource{Scopes: []string{"orders:read"}, Alg: "RS256"}
	idp := startIDP(t, cfg)
	appB := startApp(t)
	b := startInbound(t, idp, paymentsRS, "payments:write", appB, map[string]string{"AUTHSIDECAR_INBOUND_FORWARD_TOKEN": "true"})

	addrs := freeSidecarAddrs(t)
	appA := startApp(t)
	var sawHandle, sawToken string
	appA.Respond(func(w http.ResponseWriter, r *http.Request) {
		sawHandle, sawToken = r.Header.Get("X-Auth-Context"), r.Header.Get("Authorization")
		h := map[string]string{}
		if r.URL.Query().Get("handle") != "no" {
			h["X-Auth-Context"] = r.Header.Get("X-Auth-Context")
		}
		out, err := tryCall(http.MethodPost, addrs.OutboundURL()+"/payments/charges", []byte("on behalf"), h)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		w.Header().Set("X-Outbound-Error", out.Header.Get("X-Authsidecar-Error")) // A's own would be removed
		w.WriteHeader(out.Status)
		_, _ = w.Write(out.Body)
	})
	a := startSidecar(t, mergeEnv(addrs.Env(), map[string]string{
		"AUTHSIDECAR_INBOUND_ISSUERS":         idp.Issuer,
		"AUTHSIDECAR_INBOUND_AUDIENCES":       ordersRS,
		"AUTHSIDECAR_INBOUND_UPSTREAM":        appA.URL,
		"AUTHSIDECAR_OUTBOUND_ROUTES":         "payments",
		"AUTHSIDECAR_OUTBOUND_TOKEN_URL":      idp.TokenURL(),
		"AUTHSIDECAR_OUTBOUND_CLIENT_ID":      "svc-orders-te",
		"AUTHSIDECAR_OUTBOUND_CLIENT_SECRET":  "orders-te-secret-5a1b",
		"AUTHSIDECAR_ROUTE_PAYMENTS_URL":      b.Addrs.InboundURL(),
		"AUTHSIDECAR_ROUTE_PAYMENTS_GRANT":    "token-exchange",
		"AUTHSIDECAR_ROUTE_PAYMENTS_ACTOR":    "true",
		"AUTHSIDECAR_ROUTE_PAYMENTS_RESOURCE": paymentsRS,
		"AUTHSIDECAR_ROUTE_PAYMENTS_SCOPES":   "payments:write",
	}))
	b.WaitReady(t, b.Addrs.AdminURL())
	a.WaitReady(t, addrs.AdminURL())

	callerC := idp.ClientCredentialsToken(t, "svc-web", "web-secret-9c2e", ordersRS, "orders:read").AccessToken
	subjectC := tokenClaims(t, callerC)["sub"]
	before := idp.Exchanges(t)
	for i := range 20 {
		if r := call(t, http.MethodGet, addrs.InboundURL()+"/orders/7", nil, bearer(callerC)); r.Status != http.StatusOK {
			t.Fatalf("call %d of C through A to B: %s", i+1, r)
		}
	}
	if got := idp.Exchanges(t) - before; got != 1 {
		t.Errorf("%d token exchanges for 20 calls of one caller, want 1", got)
	}
	if sawHandle == "" || strings.Contains(sawToken, callerC) || strings.Contains(sawHandle, callerC[:20]) {
		t.Errorf("app A saw handle %q and Authorization %q; want a handle, never C's token", sawHandle, sawToken)
	}
	seen := appB.Last(t)
	if got := seen.Header.Get("X-Auth-Subject"); got != subjectC {
		t.Errorf("app B saw X-Auth-Subject %q, want C's subject %v", got, subjectC)
	}
	if seen.Header.Get("X-Auth-Context") != "" {
		t.Error("app B saw A's handle")
	}
	exchanged := tokenClaims(t, strings.TrimPrefix(seen.Header.Get("Authorization"), "Bearer "))
	act, _ := exchanged["act"].(map[string]any)
	if exchanged["sub"] != subjectC || exchanged["client_id"] != "svc-orders-te" || act["sub"] != "svc-orders-te" || exchanged["aud"] != paymentsRS {
		t.Errorf("the token B got: sub %v client_id %v act %v aud %v; want C's subject, A's client, A acting, B's audience",
			exchanged["sub"], exchanged["client_id"], exchanged["act"], exchanged["aud"])
	}

	// App A calling without the handle: the route cannot call for nobody.
	n := len(appB.Requests())
	r := call(t, http.MethodGet, addrs.InboundURL()+"/orders/7?handle=no", nil, bearer(callerC))
	if r.Status != http.StatusUnauthorized || r.Header.Get("X-Outbound-Error") != "no_caller_token" || r.errorCode() != "no_caller_token" {
		t.Errorf("app A's call without the handle: %s (%s); want 401 no_caller_token", r, r.Header.Get("X-Outbound-Error"))
	}
	if len(appB.Requests()) != n {
		t.Error("a call without a caller reached app B")
	}
}

func TestProtectedResourceMetadataEndToEnd(t *testing.T) {
	t.Parallel()
	idp := startIDP(t, chainIDPConfig())
	appB := startApp(t)
	b := startInbound(t, idp, paymentsRS, "payments:write", appB, map[string]string{
		"AUTHSIDECAR_INBOUND_RESOURCE":     "http://127.0.0.1/payments",
		"AUTHSIDECAR_INBOUND_REQUIRE_DPOP": "true",
		"AUTHSIDECAR_INBOUND_ALGORITHMS":   "ES256,RS256",
	})
	b.WaitReady(t, b.Addrs.AdminURL())
	r := call(t, http.MethodGet, b.Addrs.InboundURL()+"/.well-known/oauth-protected-resource/payments", nil, nil)
	if r.Status != http.StatusOK || r.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("the metadata: %s", r)
	}
	var doc map[string]any
	if err := json.Unmarshal(r.Body, &doc); err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]any{
		"resource":                          "http://127.0.0.1/payments",
		"authorization_servers":             []any{idp.Issuer},
		"scopes_supported":                  []any{"payments:write"},
		"bearer_methods_supported":          []any{"header"},
		"dpop_signing_alg_values_supported": []any{"ES256", "RS256"},
		"dpop_bound_access_tokens_required": true,
	} {
		if !reflect.DeepEqual(doc[k], want) {
			t.Errorf("%s = %v, want %v", k, doc[k], want)
		}
	}
	if len(doc) != 6 {
		t.Errorf("the document has %d fields, want 6: %v", len(doc), doc)
	}
	r = call(t, http.MethodGet, b.Addrs.InboundURL()+"/charges", nil, nil)
	want := `DPoP realm="authsidecar", algs="ES256 RS256", resource_metadata="http://127.0.0.1/.well-known/oauth-protected-resource/payments"`
	if r.Status != http.StatusUnauthorized || r.Header.Get("WWW-Authenticate") != want {
		t.Errorf("a call without a token: %d %q, want 401 %s", r.Status, r.Header.Get("WWW-Authenticate"), want)
	}
	checkAppSawNothing(t, appB, "metadata and refusals")
}
