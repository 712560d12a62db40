package rules

import "path"

// Set is a compiled rules file. It is safe for concurrent use.
type Set struct {
	rules []*Rule
	// byFirst holds, for each literal first segment some glob starts with,
	// the globs that can match a path starting with it, in file order;
	// other holds those for any other first segment.
	byFirst map[string][]candidate
	other   []candidate
}

// candidate is one glob of one rule.
type candidate struct {
	rule *Rule
	glob *glob
}

func newSet(rules []*Rule) *Set {
	s := &Set{rules: rules, byFirst: map[string][]candidate{}}
	var all []candidate
	for _, r := range rules {
		for i := range r.globs {
			all = append(all, candidate{r, &r.globs[i]})
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

// Rules returns the rules in file order. The slice and the rules MUST NOT
// be modified.
func (s *Set) Rules() []*Rule { return s.rules }

// Match returns the first rule, in file order, whose methods include method
// and one of whose globs matches p, the request's decoded path
// (URL.Path); nil when none does or s is nil. A path with dot segments,
// "//" or a backslash never matches a public rule (see the package doc).
func (s *Set) Match(method, p string) *Rule {
	if s == nil || p == "" || p[0] != '/' {
		return nil
	}
	m, rest := methodBit(method), p[1:]
	if unclean(rest) {
		return s.matchUnclean(m, rest, path.Clean(p)[1:])
	}
	first, _ := nextSeg(rest, 0)
	cands, ok := s.byFirst[first]
	if !ok {
		cands = s.other
	}
	for _, c := range cands {
		if c.rule.methods&m != 0 && c.glob.match(rest) {
			return c.rule
		}
	}
	return nil
}

// matchUnclean skips public rules and matches the others against the path
// as sent and as cleaned, so that what the app may resolve the path to is
// still protected. It is the slow path: such requests are rare.
func (s *Set) matchUnclean(m methodMask, rest, cleaned string) *Rule {
	for _, r := range s.rules {
		if r.Public || r.methods&m == 0 {
			continue
		}
		for i := range r.globs {
			if r.globs[i].match(rest) || r.globs[i].match(cleaned) {
				return r
			}
		}
	}
	return nil
}
