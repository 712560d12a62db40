package e2e

// Two sidecars in a chain, as in production: service A's app calls its
// sidecar's outbound route, which gets a client-credentials token from the
// real identity provider and calls service B's sidecar, which verifies the
// token and hands the request, with A's identity, to app B.

import (
	"bytes"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

type chainCase struct {
	name             string
	resource, alg    string
	client, secret   string
	method           string
	tokenURL         bool // configure the token endpoint instead of discovering it
	grantedScopes    string
	requiredByServer string
}

func TestChainCarriesCallerIdentityAndRequestIntact(t *testing.T) {
	t.Parallel()
	idp := startIDP(t, chainIDPConfig())
	for _, tc := range []chainCase{
		{name: "RS256 resource, client_secret_basic, discovery", resource: paymentsRS, alg: "RS256",
			client: basicClient, secret: basicSecret, method: "client_secret_basic"},
		{name: "RS256 resource, client_secret_post, token URL", resource: paymentsRS, alg: "RS256",
			client: postClient, secret: postSecret, method: "client_secret_post", tokenURL: true},
		{name: "ES256 resource, client_secret_basic, token URL", resource: paymentsES, alg: "ES256",
			client: basicClient, secret: basicSecret, method: "client_secret_basic", tokenURL: true},
		{name: "ES256 resource, client_secret_post, discovery", resource: paymentsES, alg: "ES256",
			client: postClient, secret: postSecret, method: "client_secret_post"},
	} {
		tc.grantedScopes = "payments:read payments:write"
		tc.requiredByServer = "payments:write"
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			testChain(t, idp, tc)
		})
	}
}

func testChain(t *testing.T, idp *IDP, tc chainCase) {
	appB := startApp(t)
	appB.Respond(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-App", "payments")
		w.WriteHeader(http.StatusCreated)
		fmt.Fprintf(w, `{"charged":true,"path":%q}`, r.URL.Path)
	})
	// B accepts only tc.alg: a pass proves the token was signed with it.
	b := startInbound(t, idp, tc.resource, tc.requiredByServer, appB,
		map[string]string{"AUTHSIDECAR_INBOUND_ALGORITHMS": tc.alg})
	// With a configured token URL, A's token requests go through a tap
	// that records them and holds each back, so that the calls below
	// arrive while the first fetch is still under way.
	var tap *tokenTap
	tokenURL := ""
	if tc.tokenURL {
		tap = startTokenTap(t, idp, 500*time.Millisecond)
		tokenURL = tap.TokenURL()
	}
	b.WaitReady(t, b.Addrs.AdminURL())
	a := startOutbound(t, idp, tc.client, tc.secret, tc.method, tokenURL, outboundRoute{
		Name: "payments", URL: b.Addrs.InboundURL(), Resource: tc.resource, Scopes: tc.grantedScopes,
	})
	a.WaitReady(t, a.Addrs.AdminURL())

	// Many concurrent calls as soon as A listens: each reaches app B with
	// its own body and query, and they all share A's one token fetch.
	const n = 50
	var wg sync.WaitGroup
	errs := make(chan string, n)
	for i := range n {
		wg.Go(func() {
			r, err := tryCall(http.MethodPost, fmt.Sprintf("%s/payments/charges/%d?i=%d", a.Addrs.OutboundURL(), i, i),
				[]byte("call-"+strconv.Itoa(i)), map[string]string{"X-Request-Id": "c-" + strconv.Itoa(i)})
			switch {
			case err != nil:
				errs <- err.Error()
			case r.Status != http.StatusCreated:
				errs <- r.String()
			}
		})
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Errorf("concurrent call: %s", e)
	}
	reqs := appB.Requests()
	if len(reqs) != n {
		t.Fatalf("app B saw %d concurrent calls, want %d", len(reqs), n)
	}
	seenIdx := map[string]bool{}
	for _, r := range reqs {
		i := strings.TrimPrefix(r.RawQuery, "i=")
		if r.Path != "/charges/"+i || string(r.Body) != "call-"+i || r.Header.Get("X-Request-Id") != "c-"+i || seenIdx[i] {
			t.Errorf("app B saw %s %s with body %q and request id %q: calls mixed up", r.Method, r.RequestURI, r.Body, r.Header.Get("X-Request-Id"))
		}
		seenIdx[i] = true
		checkIdentity(t, r, idp.Issuer, tc.client, tc.grantedScopes)
	}
	appB.Reset()

	// One call with everything an app might send: a body larger than a
	// socket buffer, an escaped character in the path (an escaped slash
	// would be refused: see TestEncodedSlashesAreRefusedBeforeTheToken), a repeated and an empty query
	// parameter, a request id, hop-by-hop headers (one naming
	// Authorization, which A sets after dropping them), and identity
	// headers it has no business setting, which B must replace.
	body := bytes.Repeat([]byte(`{"amount":1234,"currency":"EUR"}`+"\n"), 8192) // 264 KiB
	const target = "/charges/42%20x?currency=EUR&tag=a%20b&tag=c&empty="
	got := call(t, http.MethodPost, a.Addrs.OutboundURL()+"/payments"+target, body, map[string]string{
		"Content-Type":     "application/json",
		"X-Request-Id":     "req-chain-1",
		"X-Custom":         "kept",
		"X-Hop":            "dropped",
		"Connection":       "keep-alive, X-Hop, Authorization",
		"Authorization":    "Bearer made-up-by-app-a",
		"X-Auth-Subject":   "admin",
		"X-Auth-Client-Id": "root",
		"X-Auth-Issuer":    "https://evil.example",
		"X-Auth-Scopes":    "payments:admin",
		"X-Auth-Tenant":    "everyone",
	})
	if got.Status != http.StatusCreated || got.Header.Get("X-App") != "payments" ||
		string(got.Body) != `{"charged":true,"path":"/charges/42 x"}` {
		t.Fatalf("app A got %s, X-App %q; want app B's 201 unchanged", got, got.Header.Get("X-App"))
	}
	reqs = appB.Requests()
	if len(reqs) != 1 {
		t.Fatalf("app B saw %d requests, want 1", len(reqs))
	}
	seen := reqs[0]
	if seen.Method != http.MethodPost || seen.RequestURI != target {
		t.Errorf("app B saw %s %s, want POST %s", seen.Method, seen.RequestURI, target)
	}
	if !bytes.Equal(seen.Body, body) {
		t.Errorf("app B saw a body of %d bytes, want the %d bytes app A sent", len(seen.Body), len(body))
	}
	for name, want := range map[string]string{
		"Content-Type": "application/json", "X-Request-Id": "req-chain-1", "X-Custom": "kept",
		"X-Forwarded-For": "127.0.0.1", "X-Forwarded-Proto": "http",
	} {
		if v := seen.Header.Values(name); len(v) != 1 || v[0] != want {
			t.Errorf("app B saw %s %q, want [%q]", name, v, want)
		}
	}
	for _, name := range []string{"X-Auth-Tenant", "X-Hop", "Connection"} {
		if v := seen.Header.Values(name); len(v) != 0 {
			t.Errorf("app B saw %s %q, want none", name, v)
		}
	}
	checkIdentity(t, seen, idp.Issuer, tc.client, tc.grantedScopes)

	// What the provider got: one client-credentials request for the
	// resource and scopes, authenticated the configured way.
	if tap != nil {
		treqs := tap.Requests()
		if len(treqs) != 1 {
			t.Errorf("the provider got %d token requests for %d calls, want 1", len(treqs), n+1)
		}
		for _, tr := range treqs {
			f := tr.Form
			if f.Get("grant_type") != "client_credentials" || f.Get("resource") != tc.resource ||
				scopeSet(f.Get("scope")) != scopeSet(tc.grantedScopes) {
				t.Errorf("token request form %v, want client_credentials for %s with scope %q", f, tc.resource, tc.grantedScopes)
			}
			basic := tr.BasicUser == tc.client && !f.Has("client_secret")
			post := tr.BasicUser == "" && f.Get("client_id") == tc.client && f.Get("client_secret") == tc.secret
			if (tc.method == "client_secret_basic" && !basic) || (tc.method == "client_secret_post" && !post) {
				t.Errorf("token request authenticated with basic user %q and form client_id %q (secret in form: %v), want %s",
					tr.BasicUser, f.Get("client_id"), f.Has("client_secret"), tc.method)
			}
		}
	}
	am, bm := scrape(t, a.Addrs.AdminURL()), scrape(t, b.Addrs.AdminURL())
	if ok, bad := sumMetric(am, "authsidecar_token_fetches_total", "route", "payments", "result", "success"),
		sumMetric(am, "authsidecar_token_fetches_total", "route", "payments", "result", "error"); ok != 1 || bad != 0 {
		t.Errorf("A made %v successful and %v failed token fetches for %d calls, want exactly 1 and 0", ok, bad, n+1)
	}
	exp := sumMetric(am, "authsidecar_token_expiry_timestamp_seconds", "route", "payments")
	if now := float64(time.Now().Unix()); exp < now+240 || exp > now+305 {
		t.Errorf("token expiry gauge %v is not about 300 s from now (%v)", exp, now)
	}
	if v := sumMetric(bm, "authsidecar_inbound_token_rejections_total"); v != 0 {
		t.Errorf("B counted %v token rejections, want 0", v)
	}
	expectMetric(t, a.Addrs.AdminURL(), "A's outbound calls", n+1, "authsidecar_outbound_requests_total", "route", "payments", "code", "201")
	expectMetric(t, b.Addrs.AdminURL(), "B's allowed requests", n+1, "authsidecar_inbound_requests_total", "result", "allowed")
	if out := a.Output() + b.Output(); strings.Contains(out, tc.secret) {
		t.Errorf("a sidecar logged the client secret")
	}
}

// TestRealTokensForAnotherAudienceOrScopeNeverReachTheApp sends tokens the
// provider really issued, but for the wrong resource or without the
// required scope: directly, and through an outbound sidecar that relays
// B's refusal to its app.
func TestRealTokensForAnotherAudienceOrScopeNeverReachTheApp(t *testing.T) {
	t.Parallel()
	idp := startIDP(t, chainIDPConfig())
	appB := startApp(t)
	b := startInbound(t, idp, paymentsRS, "payments:write", appB, nil)
	a := startOutbound(t, idp, readerClient, readerSecret, "client_secret_basic", "",
		outboundRoute{Name: "reader", URL: b.Addrs.InboundURL(), Resource: paymentsRS, Scopes: "payments:read"},
		outboundRoute{Name: "elsewhere", URL: b.Addrs.InboundURL(), Resource: otherAPI, Scopes: "payments:read"},
	)
	b.WaitReady(t, b.Addrs.AdminURL())
	a.WaitReady(t, a.Addrs.AdminURL())
	inB := b.Addrs.InboundURL() + "/charges?x=1"
	realm := `Bearer realm="authsidecar"`

	// The control: a token with the scope passes, so the refusals below
	// are about the tokens, not the set-up.
	good := idp.ClientCredentialsToken(t, basicClient, basicSecret, paymentsRS, "payments:write").AccessToken
	if r := call(t, http.MethodGet, inB, nil, bearer(good)); r.Status != http.StatusOK {
		t.Fatalf("a good token: %s, want 200", r)
	}
	checkIdentity(t, appB.Last(t), idp.Issuer, basicClient, "payments:write")
	appB.Reset()

	if r := call(t, http.MethodGet, inB, nil, nil); r.Status != http.StatusUnauthorized || r.Header.Get("WWW-Authenticate") != realm {
		t.Errorf("no token: %s; want 401 with WWW-Authenticate %s", r, realm)
	}

	other := idp.ClientCredentialsToken(t, basicClient, basicSecret, otherAPI, "payments:read payments:write").AccessToken
	if aud := tokenClaims(t, other)["aud"]; aud != otherAPI {
		t.Fatalf("the provider issued aud %v, want %s", aud, otherAPI)
	}
	r := call(t, http.MethodPost, inB, []byte(`{"amount":1}`), bearer(other))
	if r.Status != http.StatusUnauthorized || !strings.HasPrefix(r.Header.Get("WWW-Authenticate"), realm+`, error="invalid_token", error_description="`) ||
		r.errorCode() != "invalid_token" {
		t.Errorf("a token for another resource: %s; want 401 invalid_token", r)
	}
	if strings.Contains(string(r.Body), other) || strings.Contains(r.Header.Get("WWW-Authenticate"), other) {
		t.Errorf("the refusal echoes the token")
	}

	readOnly := idp.ClientCredentialsToken(t, readerClient, readerSecret, paymentsRS, "payments:read").AccessToken
	r = call(t, http.MethodPost, inB, []byte(`{"amount":1}`), bearer(readOnly))
	wantScope := realm + `, error="insufficient_scope", scope="payments:write"`
	if r.Status != http.StatusForbidden || r.Header.Get("WWW-Authenticate") != wantScope || r.errorCode() != "insufficient_scope" {
		t.Errorf("a token without the required scope: %s; want 403 with WWW-Authenticate %s", r, wantScope)
	}
	checkAppSawNothing(t, appB, "after direct refusals")

	// Through A: B's 403 reaches app A as B sent it, and a 403 is no
	// reason to fetch a new token.
	r = call(t, http.MethodPost, a.Addrs.OutboundURL()+"/reader/charges", []byte(`{"amount":1}`), nil)
	if r.Status != http.StatusForbidden || r.Header.Get("WWW-Authenticate") != wantScope {
		t.Errorf("through A, a token without the scope: %s; want B's 403 relayed", r)
	}
	// B's 401 for the wrong audience makes A drop its token, fetch a new
	// one and retry once (the body is replayable); the new token is for
	// the same wrong resource, so app A gets B's second 401.
	r = call(t, http.MethodPost, a.Addrs.OutboundURL()+"/elsewhere/charges", []byte(`{"amount":1}`), nil)
	if r.Status != http.StatusUnauthorized || !strings.Contains(r.Header.Get("WWW-Authenticate"), `error="invalid_token"`) {
		t.Errorf("through A, a token for another resource: %s; want B's 401 relayed", r)
	}
	checkAppSawNothing(t, appB, "after refusals through A")

	am, bm := scrape(t, a.Addrs.AdminURL()), scrape(t, b.Addrs.AdminURL())
	for _, c := range []struct {
		route string
		want  float64
	}{{"reader", 1}, {"elsewhere", 2}} {
		if v := sumMetric(am, "authsidecar_token_fetches_total", "route", c.route, "result", "success"); v != c.want {
			t.Errorf("A fetched %v tokens for route %s, want %v", v, c.route, c.want)
		}
	}
	for reason, want := range map[string]float64{"missing": 1, "wrong_audience": 3, "insufficient_scope": 2} {
		if v := sumMetric(bm, "authsidecar_inbound_token_rejections_total", "reason", reason); v != want {
			t.Errorf("B counted %v rejections for %s, want %v", v, reason, want)
		}
	}
	for result, want := range map[string]float64{"allowed": 1, "unauthenticated": 4, "forbidden": 2} {
		expectMetric(t, b.Addrs.AdminURL(), "B's requests", want, "authsidecar_inbound_requests_total", "result", result)
	}
}
