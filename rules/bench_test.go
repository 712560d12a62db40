package rules

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
)

// fiftyRules is a file of 50 rules with mixed globs; most start with
// "/api", so the first-segment index narrows little, and the last one is
// the only that matches benchHit.
func fiftyRules() string {
	var b strings.Builder
	b.WriteString("rules:\n")
	for i := 1; i < 50; i++ {
		switch i % 5 {
		case 0:
			fmt.Fprintf(&b, "  - paths: [\"/svc%d/**\"]\n    public: true\n", i)
		case 1:
			fmt.Fprintf(&b, "  - paths: [\"/api/v%d/*\"]\n    methods: [GET]\n    scopes: [read]\n", i)
		case 2:
			fmt.Fprintf(&b, "  - paths: [\"/api/v%d/**/items\", \"/api/v%d/*/detail\"]\n    scopes: [a, b]\n", i, i)
		case 3:
			fmt.Fprintf(&b, "  - paths: [\"/*/x%d/**\"]\n    clients: [c%d]\n", i, i)
		case 4:
			fmt.Fprintf(&b, "  - paths: [\"/api/orders/%d\"]\n    methods: [POST, PUT]\n", i)
		}
	}
	b.WriteString("  - paths: [\"/api/**/final\"]\n    scopes: [last]\n")
	return b.String()
}

const (
	benchHit  = "/api/v3/a/b/final"
	benchMiss = "/api/v3/a/b/none"
)

func BenchmarkMatch(b *testing.B) {
	s := mustParse(b, fiftyRules())
	if r := s.Match("GET", benchHit); r == nil || r.Index != 50 {
		b.Fatalf("Match(GET, %q) = %v, want rule 50", benchHit, r)
	}
	if r := s.Match("GET", benchMiss); r != nil {
		b.Fatalf("Match(GET, %q) = rule %d, want none", benchMiss, r.Index)
	}
	for _, bc := range []struct{ name, path string }{
		{"the 50th rule", benchHit},
		{"no rule", benchMiss},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				s.Match("GET", bc.path)
			}
		})
	}
}

func BenchmarkAllowWithCEL(b *testing.B) {
	s := mustParse(b, `
rules:
  - paths: ["/orders/*"]
    scopes: [orders:write]
    when: 'claims.tenant == request.headers["x-tenant"]'
`)
	r := s.Match("POST", "/orders/42")
	in := Input{
		Scopes:   []string{"openid", "orders:write"},
		ClientID: "web",
		Claims: []byte(`{"iss":"https://idp.example","sub":"u-1","aud":"orders","exp":1893456000,` +
			`"iat":1700000000,"scope":"openid orders:write","client_id":"web","tenant":"acme"}`),
		Method: "POST",
		Path:   "/orders/42",
		Header: http.Header{"X-Tenant": {"acme"}, "Content-Type": {"application/json"}, "Accept": {"*/*"}},
	}
	if d := r.Allow(in); !d.Allowed {
		b.Fatalf("Allow = %+v, want allowed", d)
	}
	b.ReportAllocs()
	for b.Loop() {
		r.Allow(in)
	}
}
