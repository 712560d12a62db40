package rules

import (
	"path"
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
