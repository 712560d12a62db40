package inbound_test

import (
	"net/http"
	"testing"
)

const rulesYAML = `
rules:
  - paths: ["/healthz", "/docs/**"]
    public: true
  - paths: ["/admin/**"]
    scopes: [admin]
    clients: [ops-console]
  - paths: ["/orders/*"]
    methods: [POST, PUT, DELETE]
    scopes: [orders:write]
    when: 'claims.tenant == request.headers["x-tenant"]'
`

func TestRulesDecidePerPathAndMethod(t *testing.T) {
	f := newFixture(t, fixtureOptions{rules: rulesYAML, scopes: []string{"payments:read"}})
	ops := f.token(t, map[string]any{"client_id": "ops-console", "scope": "admin"})
	orders := f.token(t, map[string]any{"scope": "orders:write", "tenant": "acme"})
	plain := f.token(t, nil) // scope payments:read payments:write, client orders

	cases := []struct {
		name, method, path string
		header             http.Header
		status             int
		www                string
	}{
		{"a public rule needs no token", "GET", "/docs/api/index.html", nil, 200, ""},
		{"a dot-segment path is not public", "GET", "/docs/../admin/users", nil, 401, `Bearer realm="authsidecar"`},
		{"the admin rule accepts the ops console", "GET", "/admin/users", bearer(ops), 200, ""},
		{"the admin rule wants its scope", "GET", "/admin/users", bearer(plain), 403, `Bearer realm="authsidecar", error="insufficient_scope", scope="admin"`},
		{"the admin rule wants its client", "GET", "/admin/users", bearer(f.token(t, map[string]any{"scope": "admin"})), 403, ""},
		{"a CEL condition on claim and header holds", "POST", "/orders/7", withHeader(bearer(orders), "X-Tenant", "acme"), 200, ""},
		{"a CEL condition that fails is refused", "POST", "/orders/7", withHeader(bearer(orders), "X-Tenant", "globex"), 403, ""},
		{"a CEL condition over a missing header fails closed", "POST", "/orders/7", bearer(orders), 403, ""},
		{"another method falls to the global policy", "GET", "/orders/7", bearer(plain), 200, ""},
		{"the global policy applies where no rule matches", "GET", "/payments", bearer(orders), 403, `Bearer realm="authsidecar", error="insufficient_scope", scope="payments:read"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(tc.method, f.sidecar.URL+tc.path, nil)
			req.Header = tc.header
			if req.Header == nil {
				req.Header = http.Header{}
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.status || resp.Header.Get("WWW-Authenticate") != tc.www {
				t.Errorf("got %d %q, want %d %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"), tc.status, tc.www)
			}
		})
	}
}

func withHeader(h http.Header, k, v string) http.Header {
	h.Set(k, v)
	return h
}
