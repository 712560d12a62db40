package rules

import "testing"

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name, src, want string
	}{
		{"an unknown key names the rule and the key", `
rules:
  - paths: ["/healthz"]
    public: true
  - paths: ["/admin/**"]
    scope: [admin]
`, `rules: rule 2 (/admin/**): unknown key "scope"`},
		{"a glob without a leading slash is bad", `
rules:
  - paths: [admin]
`, `rules: rule 1 (admin): bad glob "admin": want a path starting with "/"`},
		{"a double star inside a segment is bad", `
rules:
  - paths: ["/a**b"]
`, `rules: rule 1 (/a**b): bad glob "/a**b": "*" and "**" must be whole segments, got "a**b"`},
		{"a star inside a segment is bad", `
rules:
  - paths: ["/ok", "/v1/*.json"]
`, `rules: rule 1 (/ok): bad glob "/v1/*.json": "*" and "**" must be whole segments, got "*.json"`},
		{"an empty segment in a glob is bad", `
rules:
  - paths: ["/a//b"]
`, `rules: rule 1 (/a//b): bad glob "/a//b": empty segment`},
		{"a trailing slash in a glob is an empty segment", `
rules:
  - paths: ["/a/"]
`, `rules: rule 1 (/a/): bad glob "/a/": empty segment`},
		{"a dot-dot segment in a glob is bad", `
rules:
  - paths: ["/a/../b"]
`, `rules: rule 1 (/a/../b): bad glob "/a/../b": ".." segment`},
		{"a question mark in a glob is bad", `
rules:
  - paths: ["/a?b"]
`, `rules: rule 1 (/a?b): bad glob "/a?b": segment "a?b" holds one of \ ? #`},
		{"a lower-case method is bad", `
rules:
  - paths: ["/a"]
    methods: [get]
`, `rules: rule 1 (/a): bad method "get": want one of GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS, CONNECT, TRACE`},
		{"a CEL condition that does not compile names the rule and CEL's message", `
rules:
  - paths: ["/a"]
    when: 'claim.tenant == "acme"'
`, "rules: rule 1 (/a): when: ERROR: <input>:1:1: undeclared reference to 'claim' (in container '')\n" +
			" | claim.tenant == \"acme\"\n" +
			" | ^"},
		{"a CEL condition of type dyn is not a bool", `
rules:
  - paths: ["/a"]
    when: 'claims.admin'
`, `rules: rule 1 (/a): when: want a bool condition, got dyn`},
		{"a CEL condition of type int is not a bool", `
rules:
  - paths: ["/a"]
    when: '1 + 2'
`, `rules: rule 1 (/a): when: want a bool condition, got int`},
		{"an empty CEL condition is refused", `
rules:
  - paths: ["/a"]
    when: " "
`, `rules: rule 1 (/a): when: empty condition`},
		{"a public rule with scopes and a condition is refused", `
rules:
  - paths: ["/a"]
    public: true
    scopes: [admin]
    when: 'true'
`, `rules: rule 1 (/a): public: true cannot go with scopes, when: a public rule checks no token`},
		{"a public rule with clients is refused", `
rules:
  - paths: ["/a"]
    public: true
    clients: [c]
`, `rules: rule 1 (/a): public: true cannot go with clients: a public rule checks no token`},
		{"an empty paths list is refused", `
rules:
  - paths: []
    scopes: [a]
`, `rules: rule 1: no paths`},
		{"a rule without paths is refused", `
rules:
  - scopes: [a]
`, `rules: rule 1: no paths`},
		{"paths given as a string are refused", `
rules:
  - paths: /a
`, `rules: rule 1: paths: want a list of strings, got string "/a"`},
		{"a public flag that is not a bool is refused", `
rules:
  - paths: ["/a"]
    public: yes
`, `rules: rule 1 (/a): public: want true or false, got string "yes"`},
		{"a numeric client id must be quoted", `
rules:
  - paths: ["/a"]
    clients: [12345]
`, `rules: rule 1 (/a): clients: want a string, got integer "12345" (quote it)`},
		{"an empty scope is refused", `
rules:
  - paths: ["/a"]
    scopes: [""]
`, `rules: rule 1 (/a): empty scope`},
		{"scopes written as one string are refused", `
rules:
  - paths: ["/a"]
    scopes: ["read write"]
`, `rules: rule 1 (/a): scope "read write" holds a space: list each scope on its own`},
		{"a key given twice is refused", `
rules:
  - paths: ["/a"]
    paths: ["/b"]
`, `rules: rule 1 (/a): key "paths" given twice`},
		{"a rule that is not a mapping is refused", `
rules:
  - "/a"
`, `rules: rule 1: want a mapping, got string "/a"`},
		{"an empty file has no rules", ``, `rules: no rules: want a top-level "rules" list with at least one rule`},
		{"a file of comments has no rules", "# nothing\n", `rules: no rules: want a top-level "rules" list with at least one rule`},
		{"a file without the rules key has no rules", "{}\n", `rules: no rules: want a top-level "rules" list with at least one rule`},
		{"an empty rules key has no rules", "rules:\n", `rules: no rules: want a top-level "rules" list with at least one rule`},
		{"an empty rules list has no rules", "rules: []\n", `rules: no rules: want a top-level "rules" list with at least one rule`},
		{"an unknown top-level key is refused", "rule:\n  - paths: [/a]\n", `rules: unknown top-level key "rule"`},
		{"rules that are not a list are refused", "rules: {paths: [/a]}\n", `rules: "rules" must be a list, got a mapping`},
		{"a top level that is not a mapping is refused", "- paths: [/a]\n", `rules: want a mapping with a "rules" list at the top, got a list`},
		{"two YAML documents are refused", "rules: [{paths: [/a]}]\n---\nrules: [{paths: [/b]}]\n", `rules: want one YAML document, got more`},
		{"YAML that does not parse is refused", "rules: [", `rules: yaml: line 1: did not find expected node content`},
		{"several bad rules are reported together, in order", `
rules:
  - paths: ["/ok"]
  - paths: ["/admin/**"]
    scope: [admin]
    methods: [GET, FETCH, get]
  - paths: ["/orders/*", "orders"]
    public: true
    scopes: [w]
  - paths: ["/x"]
    when: 'claims.x'
`, `rules: rule 2 (/admin/**): unknown key "scope"
rules: rule 2 (/admin/**): bad method "FETCH": want one of GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS, CONNECT, TRACE
rules: rule 2 (/admin/**): bad method "get": want one of GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS, CONNECT, TRACE
rules: rule 3 (/orders/*): bad glob "orders": want a path starting with "/"
rules: rule 3 (/orders/*): public: true cannot go with scopes: a public rule checks no token
rules: rule 4 (/x): when: want a bool condition, got dyn`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := Parse([]byte(tt.src))
			if err == nil {
				t.Fatalf("Parse = %d rules, want error %q", len(s.Rules()), tt.want)
			}
			if err.Error() != tt.want {
				t.Errorf("Parse error:\n%s\nwant:\n%s", err, tt.want)
			}
		})
	}
}

func TestParseAcceptsTheSpecExample(t *testing.T) {
	s := mustParse(t, `
rules:
  - paths: ["/healthz", "/docs/**"]   # exact, or * for one segment, ** for any
    public: true                      # no token needed
  - paths: ["/admin/**"]
    scopes: [admin]                   # all of these
    clients: [ops-console]            # any of these
  - paths: ["/orders/*"]
    methods: [POST, PUT, DELETE]      # all methods when absent
    scopes: [orders:write]
    when: 'claims.tenant == request.headers["x-tenant"]'   # optional CEL expression
`)
	if got := len(s.Rules()); got != 3 {
		t.Errorf("Parse gave %d rules, want 3", got)
	}
}

func TestParseFollowsAliases(t *testing.T) {
	s := mustParse(t, `
rules:
  - &admin {paths: ["/admin/**"], scopes: [admin]}
  - *admin
`)
	if r := s.Match("GET", "/admin/x"); r == nil || r.Index != 1 || r.Scopes[0] != "admin" {
		t.Errorf("Match(GET, /admin/x) = %+v, want rule 1 asking for admin", r)
	}
}
