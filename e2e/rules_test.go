package e2e

// A rules file on sidecar B (AUTHSIDECAR_INBOUND_RULES_FILE) deciding per
// path and method on the provider's real tokens: a public path, a scope
// A's token lacks, a CEL condition on a claim and a request header.

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

const (
	rulesOrders, rulesOrdersSecret   = "orders", "orders-rules-secret-3f2b" // payments:read, payments:write
	rulesBilling, rulesBillingSecret = "billing", "billing-rules-secret-c81d"
)

const paymentsRules = `rules:
  - paths: ["/healthz"]
    public: true
  - paths: ["/admin/**"]
    scopes: [payments:admin]
  - paths: ["/charges/**"]
    methods: [POST]
    scopes: [payments:write]
    when: 'claims.client_id == "orders" && request.headers["x-tenant"] == "eu"'
  - paths: ["/charges/*"]
    methods: [GET]
    scopes: [payments:read]
`

func writeFile(t testing.TB, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestRulesFileDecidesPerPathOnRealTokens(t *testing.T) {
	t.Parallel()
	all := []string{"payments:read", "payments:write", "payments:admin"}
	idp := startIDP(t, IDPConfig{
		Clients: []IDPClient{
			{ID: rulesOrders, Secret: rulesOrdersSecret, Scopes: []string{"payments:read", "payments:write"}},
			{ID: rulesBilling, Secret: rulesBillingSecret, Scopes: all},
		},
		Resources: map[string]IDPResource{paymentsRS: {Scopes: all}},
	})
	appB := startApp(t)
	b := startInbound(t, idp, paymentsRS, "payments:read", appB, map[string]string{
		"AUTHSIDECAR_INBOUND_RULES_FILE": writeFile(t, t.TempDir(), "rules.yaml", paymentsRules),
	})
	a := startOutbound(t, idp, rulesOrders, rulesOrdersSecret, "client_secret_basic", "", outboundRoute{
		Name: "payments", URL: b.Addrs.InboundURL(), Resource: paymentsRS, Scopes: "payments:read payments:write",
	})
	b.WaitReady(t, b.Addrs.AdminURL())
	a.WaitReady(t, a.Addrs.AdminURL())
	viaA := a.Addrs.OutboundURL() + "/payments"
	inB := b.Addrs.InboundURL()
	ordersTok := idp.ClientCredentialsToken(t, rulesOrders, rulesOrdersSecret, paymentsRS, "payments:read payments:write").AccessToken
	if c := tokenClaims(t, ordersTok); c["client_id"] != rulesOrders || c["scope"] != "payments:read payments:write" {
		t.Fatalf("the provider's token for %s has claims %v", rulesOrders, c)
	}
	billingTok := idp.ClientCredentialsToken(t, rulesBilling, rulesBillingSecret, paymentsRS, strings.Join(all, " ")).AccessToken

	const realm = `Bearer realm="authsidecar"`
	adminScope := realm + `, error="insufficient_scope", scope="payments:admin"`
	for _, c := range []struct {
		name          string
		method, url   string
		header        map[string]string
		status        int
		wwwAuth, code string // checked when not empty
	}{
		{name: "public path, no token", method: "GET", url: inB + "/healthz",
			header: map[string]string{"X-Auth-Client-Id": "orders"}, status: 200},
		{name: "public prefix with dot segments, no token", method: "GET", url: inB + "/healthz/../admin/users",
			status: 401, wwwAuth: realm},
		{name: "public prefix with dot segments, A's token", method: "GET", url: inB + "/healthz/../admin/users",
			header: bearer(ordersTok), status: 403, wwwAuth: adminScope, code: "insufficient_scope"},
		{name: "admin through A, scope missing", method: "GET", url: viaA + "/admin/users",
			status: 403, wwwAuth: adminScope, code: "insufficient_scope"},
		{name: "admin with billing's token", method: "GET", url: inB + "/admin/users",
			header: bearer(billingTok), status: 200},
		{name: "POST charge through A, tenant eu", method: "POST", url: viaA + "/charges/1",
			header: map[string]string{"X-Tenant": "eu"}, status: 200},
		{name: "POST charge through A, tenant us", method: "POST", url: viaA + "/charges/1",
			header: map[string]string{"X-Tenant": "us"}, status: 403, code: "access_denied"},
		{name: "POST charge through A, no tenant header", method: "POST", url: viaA + "/charges/1",
			status: 403, code: "access_denied"},
		{name: "POST charge as billing (all scopes), tenant eu", method: "POST", url: inB + "/charges/1",
			header: mergeEnv(bearer(billingTok), map[string]string{"X-Tenant": "eu"}), status: 403, code: "access_denied"},
		{name: "GET charge through A", method: "GET", url: viaA + "/charges/1", status: 200},
		{name: "no rule: global scope, through A", method: "GET", url: viaA + "/reports", status: 200},
		{name: "no rule: no token", method: "GET", url: inB + "/reports", status: 401, wwwAuth: realm},
	} {
		var body []byte
		if c.method == "POST" {
			body = []byte(`{"amount":3}`)
		}
		r := call(t, c.method, c.url, body, c.header)
		if r.Status != c.status || c.wwwAuth != "" && r.Header.Get("WWW-Authenticate") != c.wwwAuth || c.code != "" && r.errorCode() != c.code {
			t.Errorf("%s: %s; want %d %s %s", c.name, r, c.status, c.wwwAuth, c.code)
		}
	}

	// The app saw the allowed calls and nothing else, each with the
	// identity that passed (none on the public path).
	var got []string
	for _, r := range appB.Requests() {
		got = append(got, fmt.Sprintf("%s %s %s", r.Method, r.RequestURI, r.Header.Get("X-Auth-Client-Id")))
		if r.Path == "/healthz" && len(identityHeaders(r)) != 0 {
			t.Errorf("app saw identity headers %v on the public path", identityHeaders(r))
		}
	}
	want := []string{
		"GET /healthz ",
		"GET /admin/users billing",
		"POST /charges/1 orders",
		"GET /charges/1 orders",
		"GET /reports orders",
	}
	if !slices.Equal(got, want) {
		t.Errorf("app saw\n  %s\nwant\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}

	bm := scrape(t, b.Addrs.AdminURL())
	for reason, want := range map[string]float64{"missing": 2, "insufficient_scope": 2, "client_not_allowed": 3} {
		if v := sumMetric(bm, "authsidecar_inbound_token_rejections_total", "reason", reason); v != want {
			t.Errorf("B counted %v rejections for %s, want %v", v, reason, want)
		}
	}
	for result, want := range map[string]float64{"public": 1, "allowed": 4, "unauthenticated": 2, "forbidden": 5} {
		expectMetric(t, b.Addrs.AdminURL(), "B's requests", want, "authsidecar_inbound_requests_total", "result", result)
	}
	// A's 403s were not a reason to fetch another token.
	expectMetric(t, a.Addrs.AdminURL(), "A's token fetches", 1, "authsidecar_token_fetches_total", "route", "payments", "result", "success")
}

// identityHeaders are the X-Auth-* headers of r.
func identityHeaders(r RecordedRequest) []string {
	var out []string
	for name := range r.Header {
		if strings.HasPrefix(strings.ToLower(name), "x-auth-") {
			out = append(out, name)
		}
	}
	return out
}

// A bad rules file stops the sidecar with exit status 2, naming each bad
// rule by number, before it opens a port: the ports are held by the test,
// so a sidecar that bound first would fail differently.
func TestBadRulesFileStopsStartUpNamingTheRule(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	bad := writeFile(t, dir, "rules.yaml", `rules:
  - paths: ["/healthz"]
    public: true
  - paths: ["/admin/**"]
    scopes: [payments:admin]
    when: 'claims.client_id =='
  - paths: ["/orders/x**"]
    scopes: [orders:write]
`)
	addrs := SidecarAddrs{}
	for _, p := range []*string{&addrs.Inbound, &addrs.Outbound, &addrs.Admin} {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Close() })
		*p = l.Addr().String()
	}
	env := mergeEnv(addrs.Env(), map[string]string{
		"AUTHSIDECAR_INBOUND_ISSUERS":    "http://127.0.0.1:9", // never reached
		"AUTHSIDECAR_INBOUND_AUDIENCES":  paymentsRS,
		"AUTHSIDECAR_INBOUND_RULES_FILE": bad,
	})
	for _, args := range [][]string{nil, {"check"}} {
		t.Run(strings.TrimSpace("authsidecar "+strings.Join(args, " ")), func(t *testing.T) {
			s := startSidecar(t, env, args...)
			code, ok := s.WaitTimeout(20 * time.Second)
			if !ok {
				t.Fatalf("still running after 20 s with a bad rules file; output:\n%s", s.Output())
			}
			if code != 2 {
				t.Errorf("exit status %d, want 2", code)
			}
			stderr := s.Stderr()
			for _, want := range []string{"AUTHSIDECAR_INBOUND_RULES_FILE", "rule 2 (/admin/**)", "when:", "rule 3 (/orders/x**)"} {
				if !strings.Contains(stderr, want) {
					t.Errorf("stderr does not name %q:\n%s", want, stderr)
				}
			}
			if strings.Contains(stderr, "rule 1") {
				t.Errorf("stderr names the good rule 1:\n%s", stderr)
			}
			if out := s.Output(); strings.Contains(out, "listening") || strings.Contains(out, "address already in use") {
				t.Errorf("the sidecar got as far as its listeners:\n%s", out)
			}
			t.Logf("stderr: %s", strings.TrimSpace(stderr))
		})
	}
}
