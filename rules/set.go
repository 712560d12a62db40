package rules

import "slices"

// Set is a compiled rules file. It is safe for concurrent use.
type Set struct {
	rules []*Rule
	// byFirst holds, for each literal first segment some glob starts with,
	// the globs that can match a path starting with it, in file order;
	// other holds those for any other first segment.
	byFirst map[string][]candidate
	other   []candidate
	// fallback is the catch-all of a Set with defaults, which Match
	// returns for a path no glob can match (one not starting with "/").
	fallback *Rule
	// caseInsensitive: the globs are lower case, and Match lowers paths.
	caseInsensitive bool
}

// candidate is one glob of one rule, with what rules it out copied in so
// that scanning a list touches one slice and no pointers.
type candidate struct {
	methods   methodMask
	hasDouble bool
	minSegs   int
	lastLit   string
	glob      *glob
	rule      *Rule
}

// mayMatch is a cheap test on the method and the path's segments: false
// means the candidate does not match.
func (c *candidate) mayMatch(m methodMask, path []string) bool {
	if c.methods&m == 0 {
		return false
	}
	if n := len(path); n < c.minSegs || !c.hasDouble && n != c.minSegs {
		return false
	}
	// A glob ending in a literal needs a segment, so path is not empty here.
	return c.lastLit == "" || c.lastLit == path[len(path)-1]
}

func newSet(rules []*Rule) *Set {
	s := &Set{rules: rules, byFirst: map[string][]candidate{}}
	var all []candidate
	for _, r := range rules {
		for i := range r.globs {
			g := &r.globs[i]
			all = append(all, candidate{r.methods, g.hasDouble, g.minSegs, g.lastLit, g, r})
		}
	}
	for _, c := range all {
		if lit := c.glob.firstLiteral(); lit != "" {
			s.byFirst[lit] = nil
		}
	}
	for lit := range s.byFirst {
		for _, c := range all {
			if f := c.glob.firstLiteral(); f == "" || f == lit {
				s.byFirst[lit] = append(s.byFirst[lit], c)
			}
		}
	}
	for _, c := range all {
		if c.glob.firstLiteral() == "" {
			s.other = append(s.other, c)
		}
	}
	return s
}

// Rules returns the rules in file order, none for a nil Set. The slice and
// the rules MUST NOT be modified.
func (s *Set) Rules() []*Rule {
	if s == nil {
		return nil
	}
	return s.rules
}

// Match returns the first rule, in file order, whose methods include method
// and one of whose globs matches p, the request's decoded path
// (URL.Path); nil when none does or s is nil. A path with dot segments,
// "//" or a backslash never matches a public rule (see the package doc).
func (s *Set) Match(method, p string) *Rule {
	if s == nil {
		return nil
	}
	if p == "" || p[0] != '/' {
		return s.fallback
	}
	if s.caseInsensitive && hasUpper(p) {
		p = asciiLower(p)
	}
	var buf [maxSegs]string
	segs := split(buf[:0], p[1:])
	m := methodBit(method)
	if unclean(p[1:], segs) {
		return s.matchUnclean(m, segs, cleanPath(p))
	}
	if len(segs) > 1 && segs[len(segs)-1] == "" {
		return s.matchTrailingSlash(m, segs)
	}
	cands := s.other
	if len(segs) > 0 {
		if c, ok := s.byFirst[segs[0]]; ok {
			cands = c
		}
	}
	for i := range cands {
		if c := &cands[i]; c.mayMatch(m, segs) && c.glob.match(segs) {
			return c.rule
		}
	}
	return nil
}

// maxSegs is how many segments Match splits a path into without allocating.
const maxSegs = 32

// matchTrailingSlash matches a path ending in "/": a rule matches it as
// sent, and a protected rule also without the slash, since most frameworks
// route "/admin/" to "/admin"; a public rule never matches it that way.
func (s *Set) matchTrailingSlash(m methodMask, segs []string) *Rule {
	trimmed := segs[:len(segs)-1]
	for _, r := range s.rules {
		if r.methods&m == 0 {
			continue
		}
		for i := range r.globs {
			if r.globs[i].match(segs) || !r.Public && r.globs[i].match(trimmed) {
				return r
			}
		}
	}
	return nil
}

// matchUnclean skips public rules and matches the others against the path
// as sent and as cleaned, so that what the app may resolve the path to is
// still protected. It is the slow path: such requests are rare.
func (s *Set) matchUnclean(m methodMask, segs []string, cleaned string) *Rule {
	clean := split(nil, cleaned[1:])
	for _, r := range s.rules {
		if r.Public || r.methods&m == 0 {
			continue
		}
		for i := range r.globs {
			if r.globs[i].match(segs) || r.globs[i].match(clean) {
				return r
			}
		}
	}
	return nil
}

func hasUpper(s string) bool {
	for i := range len(s) {
		if 'A' <= s[i] && s[i] <= 'Z' {
			return true
		}
	}
	return false
}

// asciiLower lowers ASCII letters only, as the option promises: "İ" is
// not "i" to an app that routes by ASCII case.
func asciiLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

// Scopes lists, sorted and once each, every scope some rule requires: the
// scopes a client may need, for protected-resource metadata (RFC 9728).
func (s *Set) Scopes() []string {
	if s == nil {
		return nil
	}
	seen := map[string]bool{}
	var out []string
	all := make([]*Rule, 0, len(s.rules)+1)
	all = append(append(all, s.rules...), s.fallback)
	for _, r := range all {
		if r == nil {
			continue
		}
		for _, sc := range r.Scopes {
			if !seen[sc] {
				seen[sc] = true
				out = append(out, sc)
			}
		}
	}
	slices.Sort(out)
	return out
}
