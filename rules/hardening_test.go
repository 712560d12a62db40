package rules

import (
	"net/http"
	"testing"
)

func TestCaseInsensitivePathsMeetTheRulesOfAnyCase(t *testing.T) {
	file := mustParse(t, `
rules:
  - paths: ["/admin/**"]
    scopes: [admin]
  - paths: ["/Docs/**"]
    public: true
`)
	for _, ci := range []bool{false, true} {
		s, err := file.WithDefaults(Defaults{PublicPaths: []string{"/Health"}, CaseInsensitive: ci})
		if err != nil {
			t.Fatal(err)
		}
		for _, tc := range []struct {
			path          string
			wantCI, wantS string // the rule's source with and without the option
		}{
			{"/admin/x", "rule 1", "rule 1"},
			{"/ADMIN/x", "rule 1", defaultSource},
			{"/Admin/X", "rule 1", defaultSource},
			{"/docs/a", "rule 2", defaultSource},
			{"/Docs/a", "rule 2", "rule 2"},
			{"/HEALTH", publicPathsSource + " /Health", defaultSource},
			{"/health/live", publicPathsSource + " /Health", defaultSource},
			{"/\u0130dmin/x", defaultSource, defaultSource}, // "İ" is not ASCII
		} {
			want := tc.wantS
			if ci {
				want = tc.wantCI
			}
			if r := s.Match("GET", tc.path); r == nil || r.Source != want {
				t.Errorf("CaseInsensitive=%v: Match(%q) = %v, want %s", ci, tc.path, r, want)
			}
		}
	}
	if file.Rules()[0].globs[0].segs[0].lit != "admin" || file.Rules()[1].globs[0].segs[0].lit != "Docs" {
		t.Error("WithDefaults changed the rules of the file it started from")
	}
}

func TestConditionsSeeTheHeadersTheAppGets(t *testing.T) {
	s := mustParse(t, `
rules:
  - paths: ["/x"]
    when: 'request.headers["x-tenant"] == "acme"'
  - paths: ["/raw/**"]
    when: 'request.path == "/raw/b" && request.raw_path == "/raw/a/../b"'
  - paths: ["/ka"]
    when: '!("keep-alive" in request.headers)'
`)
	// Keep-Alive goes on the way; Keep_Alive is another header, which
	// reaches the app, and which WSGI and PHP read as keep-alive.
	ka := s.Match("GET", "/ka")
	if d := ka.Allow(Input{Header: http.Header{"Keep-Alive": {"300"}}}); !d.Allowed {
		t.Errorf("Keep-Alive, which a proxy removes, was seen: %s", d.Detail)
	}
	if d := ka.Allow(Input{Header: http.Header{"Keep_alive": {"300"}}}); d.Allowed {
		t.Errorf("Keep_Alive, which the app gets, was not seen")
	}
	tenant := s.Match("GET", "/x")
	for _, tc := range []struct {
		name   string
		header http.Header
		want   bool
	}{
		{"a plain header", http.Header{"X-Tenant": {"acme"}}, true},
		{"a header the Connection header drops", http.Header{"X-Tenant": {"acme"}, "Connection": {"keep-alive, X-Tenant"}}, false},
		{"listed in lower case", http.Header{"X-Tenant": {"acme"}, "Connection": {"x-tenant"}}, false},
		{"listed with a tab", http.Header{"X-Tenant": {"acme"}, "Connection": {"close,\tX-Tenant "}}, false},
		// A proxy removes the header a token names exactly: X_Tenant is
		// another header, and X-Tenant reaches the app.
		{"listed with _ for -", http.Header{"X-Tenant": {"acme"}, "Connection": {"X_Tenant"}}, true},
		{"a hop-by-hop name", http.Header{"Te": {"acme"}}, false},
	} {
		if d := tenant.Allow(Input{Header: tc.header}); d.Allowed != tc.want {
			t.Errorf("%s: allowed %v, want %v (%s)", tc.name, d.Allowed, tc.want, d.Detail)
		}
	}
	raw := s.Match("GET", "/raw/b")
	if d := raw.Allow(Input{Path: "/raw/b", RawPath: "/raw/a/../b"}); !d.Allowed {
		t.Errorf("request.path and request.raw_path: %s", d.Detail)
	}
}
