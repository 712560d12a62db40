package rules

import (
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func mustParse(t testing.TB, src string) *Set {
	t.Helper()
	s, err := Parse([]byte(src))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return s
}

// index is the matched rule's Index, 0 for none.
func index(r *Rule) int {
	if r == nil {
		return 0
	}
	return r.Index
}

const matchFile = `
rules:
  - paths: ["/healthz", "/docs/**"]          # 1
    public: true
  - paths: ["/admin/**"]                     # 2
    scopes: [admin]
    clients: [ops-console]
  - paths: ["/orders/*"]                     # 3
    methods: [POST, PUT, DELETE]
    scopes: [orders:write]
  - paths: ["/orders/*"]                     # 4
    methods: [GET]
    scopes: [orders:read]
  - paths: ["/orders/*/items/**/price"]      # 5
  - paths: ["/"]                             # 6
  - paths: ["/*/status"]                     # 7
  - paths: ["/a/**/b/**/c"]                  # 8
`

func TestMatch(t *testing.T) {
	s := mustParse(t, matchFile)
	tests := []struct {
		name, method, path string
		want               int
	}{
		{"an exact path matches its glob", "GET", "/healthz", 1},
		{"an exact glob does not match a longer segment", "GET", "/healthzz", 0},
		{"segments are case-sensitive", "GET", "/Healthz", 0},
		{"a trailing slash is significant for an exact glob", "GET", "/healthz/", 0},
		{"a double star matches zero segments", "GET", "/docs", 1},
		{"a double star matches a trailing slash", "GET", "/docs/", 1},
		{"a double star matches several segments", "GET", "/docs/a/b", 1},
		{"a double star needs a segment boundary", "GET", "/docsx", 0},
		{"a star matches one segment", "POST", "/orders/42", 3},
		{"a star does not match a missing segment", "POST", "/orders", 0},
		{"a star does not match an empty segment", "POST", "/orders/", 0},
		{"a star does not match two segments", "POST", "/orders/42/x", 0},
		{"a rule applies to the methods it lists", "DELETE", "/orders/42", 3},
		{"a rule is skipped for a method it does not list", "GET", "/orders/42", 4},
		{"a GET rule also applies to HEAD", "HEAD", "/orders/42", 4},
		{"no rule matches a method none of them lists", "PATCH", "/orders/42", 0},
		{"a rule without methods applies to any method", "BREW", "/admin/x", 2},
		{"a double star in the middle matches nested segments", "GET", "/orders/1/items/a/b/price", 5},
		{"a double star in the middle matches zero segments", "GET", "/orders/1/items/price", 5},
		{"a nested glob needs its last segment", "GET", "/orders/1/items/a/cost", 0},
		{"two double stars backtrack", "GET", "/a/x/b/y/b/z/c", 8},
		{"two double stars need every literal", "GET", "/a/x/b/y/c/z", 0},
		{"the root glob matches the root", "GET", "/", 6},
		{"a star first matches any first segment", "GET", "/x/status", 7},
		{"the first rule in the file decides", "GET", "/admin/status", 2},
		{"an unknown path matches nothing", "GET", "/nothing/here", 0},
		{"a path without a leading slash matches nothing", "OPTIONS", "*", 0},
		{"an empty path matches nothing", "GET", "", 0},
		{"dot-dot never reaches a public rule", "GET", "/docs/../healthz", 0},
		{"dot never reaches a public rule", "GET", "/docs/./a", 0},
		{"a trailing dot never reaches a public rule", "GET", "/healthz/.", 0},
		{"a double slash never reaches a public rule", "GET", "/docs//a", 0},
		{"a leading double slash never reaches a public rule", "GET", "//docs", 0},
		{"a backslash never reaches a public rule and counts as a slash", "GET", `/docs/..\admin`, 2},
		{"a Tomcat path parameter never reaches a public rule", "GET", "/docs/..;/admin/users", 2},
		{"an encoded dot-dot left after decoding is never public", "GET", "/docs/%2e%2e/admin", 0},
		{"a path parameter on a protected path is still protected", "GET", "/admin;x=1/users", 2},
		{"a trailing slash still gets the protected rule", "GET", "/admin/", 2},
		{"a lower-case method meets the rules of its upper-case twin", "post", "/orders/7", 3},
		{"dot-dot out of a public prefix is protected as what it resolves to", "GET", "/docs/../admin/users", 2},
		{"dot-dot into a protected prefix is protected", "GET", "/x/../admin", 2},
		{"dot-dot out of a protected prefix stays protected", "GET", "/admin/../elsewhere", 2},
		{"a double slash under a protected prefix is protected", "GET", "/admin//users", 2},
		{"a path longer than the split buffer still matches", "GET", "/docs" + strings.Repeat("/a", 40), 1},
		{"a long unclean path is still protected", "GET", strings.Repeat("/a", 40) + strings.Repeat("/..", 40) + "/admin", 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := index(s.Match(tt.method, tt.path)); got != tt.want {
				t.Errorf("Match(%q, %q) = rule %d, want rule %d", tt.method, tt.path, got, tt.want)
			}
		})
	}
}

func TestMatchPrecedence(t *testing.T) {
	s := mustParse(t, `
rules:
  - paths: ["/api/**"]
    methods: [GET]
    scopes: [read]
  - paths: ["/api/special"]
    scopes: [special]
  - paths: ["/**"]
    scopes: [any]
`)
	tests := []struct {
		name, method, path string
		want               int
	}{
		{"an earlier broad rule shadows a later exact one", "GET", "/api/special", 1},
		{"a later rule decides when the earlier one skips the method", "POST", "/api/special", 2},
		{"a catch-all last rule takes what the others leave", "POST", "/api/other", 3},
		{"a catch-all matches the root", "GET", "/", 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := index(s.Match(tt.method, tt.path)); got != tt.want {
				t.Errorf("Match(%q, %q) = rule %d, want rule %d", tt.method, tt.path, got, tt.want)
			}
		})
	}
}

func TestMatchOnNilSetFindsNothing(t *testing.T) {
	var s *Set
	if r := s.Match("GET", "/"); r != nil {
		t.Errorf("Match on a nil Set = rule %d, want none", r.Index)
	}
	if rs := s.Rules(); rs != nil {
		t.Errorf("Rules on a nil Set = %d rules, want none", len(rs))
	}
}

func TestMatchDoesNotAllocate(t *testing.T) {
	s := mustParse(t, matchFile)
	for _, p := range []string{"/orders/1/items/a/b/price", "/nothing/here", "/docs/a/b", "/"} {
		if n := testing.AllocsPerRun(100, func() { s.Match("GET", p) }); n != 0 {
			t.Errorf("Match(GET, %q) allocates %v times, want 0", p, n)
		}
	}
}

func TestAllowWithoutConditionDoesNotAllocate(t *testing.T) {
	s := mustParse(t, allowFile)
	in := Input{Scopes: []string{"a", "b", "c"}, ClientID: "x"}
	for _, p := range []string{"/public", "/scopes", "/both", "/clients"} {
		r := s.Match("GET", p)
		if n := testing.AllocsPerRun(100, func() { r.Allow(in) }); n != 0 {
			t.Errorf("Allow on %s allocates %v times, want 0", p, n)
		}
	}
}

const allowFile = `
rules:
  - paths: ["/public"]                                     # 1
    public: true
  - paths: ["/scopes"]                                     # 2
    scopes: [a, b, c]
  - paths: ["/clients"]                                    # 3
    clients: [x, y]
  - paths: ["/both"]                                       # 4
    scopes: [a]
    clients: [x]
  - paths: ["/any-token"]                                  # 5
  - paths: ["/tenant"]                                     # 6
    when: 'claims.tenant == request.headers["x-tenant"]'
  - paths: ["/header-only"]                                # 7
    when: 'request.method == "POST" && request.headers["x-a"] == "1" && request.path == "/header-only"'
  - paths: ["/level"]                                      # 8
    when: 'claims.level >= 3 && "ops" in claims.groups'
  - paths: ["/expensive"]                                  # 9
    when: 'claims.list.map(x, claims.list.map(y, x + y)).size() > 0'
  - paths: ["/scoped-condition"]                           # 10
    scopes: [a]
    when: 'claims.tenant == "acme"'
`

func TestAllow(t *testing.T) {
	s := mustParse(t, allowFile)
	hdr := func(kv ...string) http.Header {
		h := http.Header{}
		for i := 0; i+1 < len(kv); i += 2 {
			h.Set(kv[i], kv[i+1])
		}
		return h
	}
	long := `{"list":[` + strings.TrimSuffix(strings.Repeat("1,", 200), ",") + `]}`
	tests := []struct {
		name    string
		path    string
		in      Input
		reason  string
		missing []string
	}{
		{"a public rule allows without a token", "/public", Input{}, "", nil},
		{"a rule with every scope allows", "/scopes", Input{Scopes: []string{"c", "b", "a", "z"}}, "", nil},
		{"a rule lists every missing scope in its order", "/scopes", Input{Scopes: []string{"b"}}, ReasonInsufficientScope, []string{"a", "c"}},
		{"a rule with no scope held lists them all", "/scopes", Input{}, ReasonInsufficientScope, []string{"a", "b", "c"}},
		{"a rule allows any of its clients", "/clients", Input{ClientID: "y"}, "", nil},
		{"a rule refuses a client it does not list", "/clients", Input{ClientID: "z"}, ReasonClientNotAllowed, nil},
		{"a rule refuses a caller without a client id", "/clients", Input{}, ReasonClientNotAllowed, nil},
		{"missing scopes are reported before a wrong client", "/both", Input{ClientID: "z"}, ReasonInsufficientScope, []string{"a"}},
		{"a rule asking for nothing allows any verified caller", "/any-token", Input{}, "", nil},
		{"a condition on a claim and a header allows when they agree", "/tenant",
			Input{Claims: []byte(`{"tenant":"acme"}`), Header: hdr("X-Tenant", "acme")}, "", nil},
		{"a condition that is false refuses as client_not_allowed", "/tenant",
			Input{Claims: []byte(`{"tenant":"acme"}`), Header: hdr("X-Tenant", "other")}, ReasonClientNotAllowed, nil},
		{"a condition on a missing claim fails closed", "/tenant",
			Input{Claims: []byte(`{"sub":"u"}`), Header: hdr("X-Tenant", "acme")}, ReasonClientNotAllowed, nil},
		{"a condition on a missing header fails closed", "/tenant",
			Input{Claims: []byte(`{"tenant":"acme"}`), Header: hdr()}, ReasonClientNotAllowed, nil},
		{"a condition on claims that are not JSON fails closed", "/tenant",
			Input{Claims: []byte(`not json`), Header: hdr("X-Tenant", "acme")}, ReasonClientNotAllowed, nil},
		{"a condition on claims that are absent fails closed", "/tenant",
			Input{Header: hdr("X-Tenant", "acme")}, ReasonClientNotAllowed, nil},
		{"a condition on the request alone needs no claims", "/header-only",
			Input{Method: "POST", Path: "/header-only", Header: hdr("X-A", "1")}, "", nil},
		{"a condition on the request alone refuses another method", "/header-only",
			Input{Method: "GET", Path: "/header-only", Header: hdr("X-A", "1")}, ReasonClientNotAllowed, nil},
		{"a condition compares a JSON number with an integer", "/level",
			Input{Claims: []byte(`{"level":3,"groups":["dev","ops"]}`)}, "", nil},
		{"a condition refuses a number below the bound", "/level",
			Input{Claims: []byte(`{"level":2.5,"groups":["ops"]}`)}, ReasonClientNotAllowed, nil},
		{"a condition on a claim of the wrong type fails closed", "/level",
			Input{Claims: []byte(`{"level":"9","groups":["ops"]}`)}, ReasonClientNotAllowed, nil},
		{"a condition past its cost limit fails closed", "/expensive",
			Input{Claims: []byte(long)}, ReasonClientNotAllowed, nil},
		{"missing scopes are reported before the condition runs", "/scoped-condition",
			Input{Claims: []byte(`{"tenant":"acme"}`)}, ReasonInsufficientScope, []string{"a"}},
		{"scopes and a true condition allow", "/scoped-condition",
			Input{Scopes: []string{"a"}, Claims: []byte(`{"tenant":"acme"}`)}, "", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := s.Match("GET", tt.path)
			if r == nil {
				t.Fatalf("Match(GET, %q) = none", tt.path)
			}
			d := r.Allow(tt.in)
			if d.Allowed != (tt.reason == "") || d.Reason != tt.reason || !slices.Equal(d.MissingScopes, tt.missing) {
				t.Errorf("Allow = {Allowed: %v, Reason: %q, MissingScopes: %q, Detail: %q}, want {Allowed: %v, Reason: %q, MissingScopes: %q}",
					d.Allowed, d.Reason, d.MissingScopes, d.Detail, tt.reason == "", tt.reason, tt.missing)
			}
		})
	}
}

func TestRuleFieldsSayWhatTheFileSays(t *testing.T) {
	r := mustParse(t, allowFile).Match("GET", "/both")
	if r.Index != 4 || !slices.Equal(r.Paths, []string{"/both"}) || !slices.Equal(r.Scopes, []string{"a"}) ||
		!slices.Equal(r.Clients, []string{"x"}) || r.Public || r.When != "" || r.Methods != nil {
		t.Errorf("rule = %+v, want rule 4 on /both with scopes [a] and clients [x]", *r)
	}
}

func TestLoad(t *testing.T) {
	t.Run("a file on disk loads", func(t *testing.T) {
		p := filepath.Join(t.TempDir(), "rules.yaml")
		if err := os.WriteFile(p, []byte(matchFile), 0o600); err != nil {
			t.Fatal(err)
		}
		s, err := Load(p)
		if err != nil {
			t.Fatalf("Load: %v", err)
		}
		if got := len(s.Rules()); got != 8 {
			t.Errorf("Load gave %d rules, want 8", got)
		}
	})
	t.Run("a missing file is an error naming it", func(t *testing.T) {
		p := filepath.Join(t.TempDir(), "absent.yaml")
		_, err := Load(p)
		if want := "rules: open " + p + ": no such file or directory"; err == nil || err.Error() != want {
			t.Errorf("Load error = %v, want %q", err, want)
		}
	})
}

func TestConditionsFailClosedOnAmbiguousHeaders(t *testing.T) {
	s := mustParse(t, `
rules:
  - paths: ["/t"]
    when: 'request.headers["x-tenant"] == "a"'
  - paths: ["/auth"]
    when: 'request.headers["authorization"] != ""'
`)
	for _, tc := range []struct {
		name   string
		path   string
		header http.Header
		want   bool
	}{
		{"one copy is read", "/t", http.Header{"X-Tenant": {"a"}}, true},
		{"two copies fail closed", "/t", http.Header{"X-Tenant": {"a", "b"}}, false},
		{"an underscore twin fails closed", "/t", http.Header{"X-Tenant": {"a"}, "X_tenant": {"b"}}, false},
		{"credentials are not visible", "/auth", http.Header{"Authorization": {"Bearer x"}}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := s.Match("GET", tc.path).Allow(Input{Method: "GET", Path: tc.path, Header: tc.header})
			if d.Allowed != tc.want {
				t.Errorf("Allowed = %v (%s), want %v", d.Allowed, d.Detail, tc.want)
			}
		})
	}
}
