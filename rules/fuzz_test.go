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
