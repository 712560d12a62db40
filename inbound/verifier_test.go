package inbound_test

import (
	"testing"
)

func TestIdentityClaimsNoHeaderCanCarryAreRefused(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	for _, tc := range []struct {
		name   string
		claims map[string]any
		status int
	}{
		{"a subject that tries to add a header", map[string]any{"sub": "svc\r\nX-Auth-Scopes: admin"}, 401},
		{"a NUL in the client id", map[string]any{"client_id": "orders\x00"}, 401},
		{"a DEL in a scope", map[string]any{"scope": "payments:read x\x7f"}, 401},
		{"a tab, which a header may carry", map[string]any{"sub": "svc\torders"}, 200},
	} {
		before := len(f.app.requests())
		resp, body := f.do(t, "/", bearer(f.token(t, tc.claims)))
		if resp.StatusCode != tc.status {
			t.Errorf("%s: status %d %s, want %d", tc.name, resp.StatusCode, body, tc.status)
		}
		if tc.status == 401 {
			if got := resp.Header.Get("WWW-Authenticate"); got != invalidToken("the token is malformed") {
				t.Errorf("%s: WWW-Authenticate %q", tc.name, got)
			}
			if len(f.app.requests()) != before {
				t.Errorf("%s: the app saw the request", tc.name)
			}
		}
	}
}
