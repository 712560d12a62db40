package rules

import (
	"bytes"
	"net/http"
	"path"
	"slices"
	"strings"
	"testing"
)

// isDotty reports whether p holds a "." or ".." segment or a "//": what an
// app may resolve to another path, and so must never be public.
func isDotty(p string) bool {
	return strings.Contains(p, "//") || strings.Contains(p, `\`) ||
		strings.Contains(p+"/", "/./") || strings.Contains(p+"/", "/../")
}

func FuzzMatch(f *testing.F) {
	s := mustParse(f, matchFile+`
  - paths: ["/**"]
    public: true
`)
	for _, seed := range []string{
		"/", "", "*", "/healthz", "/docs/../admin", "/docs/./x", "/docs//x", "//",
		"/docs/..", "/./", "/a/x/b/y/c", "/orders/1/items/price", `/docs\..\admin`,
		"/docs/%2e%2e/admin", "/docs/a/", "/../", "/...", "/docs/.../x",
	} {
		f.Add("GET", seed)
	}
	f.Fuzz(func(t *testing.T, method, p string) {
		r := s.Match(method, p)
		if r == nil || !r.Public {
			return
		}
		if isDotty(p) {
			t.Errorf("Match(%q, %q) = public rule %d for a path with dot segments", method, p, r.Index)
		}
		if p != path.Clean(p) && !strings.HasSuffix(p, "/") {
			t.Errorf("Match(%q, %q) = public rule %d for a path Clean changes to %q", method, p, r.Index, path.Clean(p))
		}
	})
}

// refMatch is the obvious recursive matcher that glob.match must agree with.
func refMatch(g []seg, path []string) bool {
	if len(g) == 0 {
		return len(path) == 0
	}
	switch g[0].kind {
	case doubleStar:
		for i := 0; i <= len(path); i++ {
			if refMatch(g[1:], path[i:]) {
				return true
			}
		}
		return false
	case star:
		return len(path) > 0 && path[0] != "" && refMatch(g[1:], path[1:])
	}
	return len(path) > 0 && path[0] == g[0].lit && refMatch(g[1:], path[1:])
}

func FuzzGlobMatch(f *testing.F) {
	for _, seed := range [][2]string{
		{"/a/**/b/**/c", "/a/x/b/y/b/z/c"}, {"/**", "/"}, {"/", "/"}, {"/*", "/"},
		{"/**/x", "/x/x/x"}, {"/a/*/**", "/a/"}, {"/docs/**", "/docs/"}, {"/**/**/a", "/b/a"},
	} {
		f.Add(seed[0], seed[1])
	}
	f.Fuzz(func(t *testing.T, src, p string) {
		g, err := compileGlob(src)
		if err != nil || !strings.HasPrefix(p, "/") {
			return
		}
		segs := split(nil, p[1:])
		if got, want := g.match(segs), refMatch(g.segs, segs); got != want {
			t.Errorf("glob %q on %q: match = %v, reference = %v", src, p, got, want)
		}
	})
}

// FuzzRulesFile compiles a fuzzed rules file, then matches a fuzzed
// request against it and evaluates the rule that matched with fuzzed
// claims and headers. What must hold:
//   - Parse gives a Set or an error, every part of which says "rules: ";
//   - a Set's rules are as the file says (numbered in order, each with a
//     path, public ones asking for nothing);
//   - Match, with the defaults after the file's rules, always finds a
//     rule, the first one that matches (checked against a brute-force
//     search for clean paths), never a public rule for a path with dot
//     segments, and only a rule whose methods take the request's;
//   - Allow allows exactly when every scope is held, the client is among
//     the rule's (when it has any) and the condition is true; a refusal
//     names the missing scopes; the credentials, which conditions cannot
//     read, change nothing and never show in the detail.
func FuzzRulesFile(f *testing.F) {
	for _, s := range rulesFileSeeds {
		f.Add([]byte(s.file), s.method, s.path, []byte(s.claims), s.headers, "payments:read orders:write", "orders")
	}
	f.Fuzz(func(t *testing.T, file []byte, method, p string, claims []byte, headers, scopes, client string) {
		set, err := Parse(file)
		if err != nil {
			checkParseError(t, file, set, err)
			return
		}
		checkRules(t, file, set)
		full, err := set.WithDefaults(Defaults{PublicPaths: []string{"/healthz"}, RequiredScopes: []string{"payments:read"}})
		if err != nil {
			t.Fatalf("WithDefaults on a parsed file: %v", err)
		}
		r := full.Match(method, p)
		checkMatch(t, file, full, method, p, r)
		in := Input{Scopes: strings.Split(scopes, " "), ClientID: client, Claims: claims, Method: method, Path: p, Header: parseHeaders(headers)}
		checkAllow(t, file, r, in)
	})
}

// rulesFileSeeds are rules files as the README, the e2e tests and real
// deployments write them, with requests that meet them, and files that
// must be refused.
var rulesFileSeeds = []struct{ file, method, path, claims, headers string }{
	{`
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
`, "POST", "/orders/7", `{"sub":"svc-orders","tenant":"acme","scope":"orders:write"}`, "X-Tenant: acme"},
	{`
rules:
  - paths: ["/healthz"]
    public: true
  - paths: ["/admin/**"]
    scopes: [payments:admin]
  - paths: ["/orders/**"]
    when: 'claims.client_id == "orders" && request.headers["x-tenant"] == "eu"'
`, "GET", "/orders/1/items", `{"client_id":"orders","sub":"svc"}`, "X-Tenant: eu\nX-Tenant: us"},
	{`
rules:
  - paths: ["/reports/*/export"]
    methods: [GET]
    when: 'claims.level >= 3 && "ops" in claims.groups'
  - paths: ["/tenants/*/**"]
    when: 'request.path.startsWith("/tenants/" + claims.tenant + "/") && request.method in ["GET", "HEAD"]'
  - paths: ["/beta/**"]
    when: 'has(claims.features) && claims.features.exists(f, f == "beta")'
  - paths: ["/internal/**"]
    when: 'request.headers["x-forwarded-for"].matches("^10\\.")'
`, "HEAD", "/tenants/acme/invoices", `{"tenant":"acme","level":4,"groups":["ops","dev"],"features":["beta"]}`, "X-Forwarded-For: 10.1.2.3"},
	{`
rules:
  - paths: ["/a/**/b/**/c", "/x/*/y"]
  - paths: ["/**"]
    methods: [DELETE]
    scopes: [root]
  - paths: ["/"]
    public: true
`, "delete", "/a/1/b/2/3/c", `{}`, ""},
	{`
rules:
  - &r
    paths: ["/one"]
    scopes: [s]
  - *r
  - paths: ["/two"]
    when: 'request.headers["authorization"] != ""'
`, "GET", "/two", `{"sub":"x"}`, "Authorization: Bearer secret-token\nCookie: session=1"},
	{`
rules:
  - paths: ["/expensive"]
    when: 'claims.list.map(x, claims.list.map(y, x + y)).size() > 0'
`, "GET", "/expensive", `{"list":[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31,32,33,34,35,36,37,38,39,40]}`, ""},
	{`
rules:
  - paths: ["/docs/**"]
    public: true
`, "GET", "/docs/../admin", `{}`, ""},
	// Files that must be refused, every problem named.
	{"rules:\n  - paths: [\"/a\"]\n    when: 'claim.tenant == \"acme\"'\n", "GET", "/a", `{}`, ""},
	{"rules:\n  - paths: [\"/a\"]\n    when: '1 + 2'\n  - paths: [\"a/*x\"]\n    scope: [s]\n", "GET", "/a", `{}`, ""},
	{"rules:\n  - paths: [\"/a\"]\n    public: true\n    scopes: [s]\n    methods: [get, FETCH]\n", "GET", "/a", `{}`, ""},
	{"rules: []\n", "GET", "/", `{}`, ""},
	{"rules: {}\nextra: 1\n", "GET", "/", `{}`, ""},
	{"---\nrules:\n  - paths: [\"/a\"]\n---\nrules: []\n", "GET", "/", `{}`, ""},
	{"rules:\n  - paths: [\"/a\", 7, [\"/b\"]]\n    scopes: [\"a b\", \"\"]\n", "GET", "/", `{}`, ""},
	{"", "GET", "/", `{}`, ""},
}

func checkParseError(t *testing.T, file []byte, set *Set, err error) {
	t.Helper()
	if set != nil {
		t.Fatalf("Parse(%q) gave a Set and %v", file, err)
	}
	parts := []error{err}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		parts = j.Unwrap()
	}
	for _, e := range parts {
		if !strings.HasPrefix(e.Error(), "rules: ") {
			t.Fatalf("Parse(%q): error %q lacks the package prefix", file, e)
		}
	}
}

func checkRules(t *testing.T, file []byte, set *Set) {
	t.Helper()
	if len(set.Rules()) == 0 {
		t.Fatalf("Parse(%q) gave a Set without rules", file)
	}
	for i, r := range set.Rules() {
		switch {
		case r.Index != i+1:
			t.Fatalf("Parse(%q): rule %d has index %d", file, i+1, r.Index)
		case len(r.Paths) == 0 || len(r.globs) != len(r.Paths):
			t.Fatalf("Parse(%q): rule %d has %d paths, %d globs", file, i+1, len(r.Paths), len(r.globs))
		case r.Public && (len(r.Scopes) > 0 || len(r.Clients) > 0 || r.When != ""):
			t.Fatalf("Parse(%q): public rule %d asks for something", file, i+1)
		case (r.When != "") != (r.program != nil):
			t.Fatalf("Parse(%q): rule %d: condition %q, program %v", file, i+1, r.When, r.program != nil)
		}
		for _, m := range r.Methods {
			if !slices.Contains(knownMethods, m) {
				t.Fatalf("Parse(%q): rule %d takes method %q", file, i+1, m)
			}
		}
		for _, name := range append(slices.Clone(r.Scopes), r.Clients...) {
			if name == "" || strings.ContainsAny(name, " \t\r\n") {
				t.Fatalf("Parse(%q): rule %d names %q", file, i+1, name)
			}
		}
	}
}

func checkMatch(t *testing.T, file []byte, set *Set, method, p string, r *Rule) {
	t.Helper()
	if r == nil || !slices.Contains(set.Rules(), r) {
		t.Fatalf("%q: Match(%q, %q) = %v, not a rule of the set with defaults", file, method, p, r)
	}
	if r.Public && isDotty(p) {
		t.Fatalf("%q: Match(%q, %q) = public %s for a path with dot segments", file, method, p, r.Source)
	}
	if r.methods&methodBit(method) == 0 {
		t.Fatalf("%q: Match(%q, %q) = %s, whose methods %q do not take it", file, method, p, r.Source, r.Methods)
	}
	if !strings.HasPrefix(p, "/") || unclean(p[1:], split(nil, p[1:])) || strings.HasSuffix(p, "/") && p != "/" {
		return // the brute force below knows clean paths only
	}
	segs := split(nil, p[1:])
	for _, c := range set.Rules() {
		if c.methods&methodBit(method) != 0 && slices.ContainsFunc(c.globs, func(g glob) bool { return refMatch(g.segs, segs) }) {
			if c != r {
				t.Fatalf("%q: Match(%q, %q) = %s, but %s comes first and matches", file, method, p, r.Source, c.Source)
			}
			return
		}
	}
	t.Fatalf("%q: Match(%q, %q) = %s, which no glob of matches", file, method, p, r.Source)
}

// parseHeaders reads "Name: value" lines; the credentials a condition
// cannot read are set after, so that checkAllow can vary them.
func parseHeaders(s string) http.Header {
	h := http.Header{}
	for line := range strings.SplitSeq(s, "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok {
			h.Add(k, strings.TrimSpace(v))
		}
	}
	return h
}

const credentialCanary = "Bearer canary-9xq2"

func checkAllow(t *testing.T, file []byte, r *Rule, in Input) {
	t.Helper()
	d := r.Allow(in)
	held := slices.DeleteFunc(slices.Clone(r.Scopes), func(s string) bool { return slices.Contains(in.Scopes, s) })
	clientOK := len(r.Clients) == 0 || slices.Contains(r.Clients, in.ClientID)
	switch {
	case r.Public && !d.Allowed:
		t.Fatalf("%q: public %s refused: %+v", file, r.Source, d)
	case r.Public:
		return
	case len(held) > 0:
		if d.Allowed || d.Reason != ReasonInsufficientScope || !slices.Equal(d.MissingScopes, held) {
			t.Fatalf("%q: %s lacks scopes %q, Allow = %+v", file, r.Source, held, d)
		}
	case !clientOK:
		if d.Allowed || d.Reason != ReasonClientNotAllowed {
			t.Fatalf("%q: %s does not take client %q, Allow = %+v", file, r.Source, in.ClientID, d)
		}
	case r.When == "" && !d.Allowed:
		t.Fatalf("%q: %s asks for nothing more, Allow = %+v", file, r.Source, d)
	case !d.Allowed && d.Reason != ReasonClientNotAllowed:
		t.Fatalf("%q: %s condition refused with reason %q", file, r.Source, d.Reason)
	}
	if r.When == "" {
		return
	}
	// Conditions cannot read credentials: no value of them changes the
	// decision, and none shows in the detail.
	for _, cred := range []string{credentialCanary, "Basic b3RoZXI6c2VjcmV0"} {
		h := in.Header.Clone()
		h["Authorization"] = []string{cred}
		h["Cookie"] = []string{"session=" + cred}
		h["Proxy-Authorization"] = []string{cred}
		with := in
		with.Header = h
		got := r.Allow(with)
		if got.Allowed != d.Allowed || got.Reason != d.Reason {
			t.Fatalf("%q: %s decides %+v with credentials %q, %+v without", file, r.Source, got, cred, d)
		}
		if strings.Contains(got.Detail, "canary-9xq2") && !bytes.Contains(file, []byte("canary-9xq2")) && !bytes.Contains(in.Claims, []byte("canary-9xq2")) {
			t.Fatalf("%q: %s shows the credential in its detail: %q", file, r.Source, got.Detail)
		}
	}
}
