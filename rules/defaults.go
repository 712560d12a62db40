package rules

import (
	"errors"
	"fmt"
	"strings"
)

// Defaults are the global settings, AUTHSIDECAR_INBOUND_PUBLIC_PATHS,
// …_REQUIRED_SCOPES and …_ALLOWED_CLIENTS: what a request that no rule of
// the file matches is held to.
type Defaults struct {
	// PublicPaths are path prefixes matched by whole segments: "/health"
	// covers "/health" and "/health/live", not "/healthz". Each segment is
	// literal: "*" is no wildcard here.
	PublicPaths    []string
	RequiredScopes []string
	AllowedClients []string
	// CaseInsensitive matches every rule's paths without regard to ASCII
	// case, for apps that route so (Express, ASP.NET Core by default):
	// "/ADMIN/x" then needs what "/admin/**" asks for.
	CaseInsensitive bool
}

// Names the trailing rules go by in logs and errors.
const (
	publicPathsSource = "AUTHSIDECAR_INBOUND_PUBLIC_PATHS"
	defaultSource     = "the default rule (AUTHSIDECAR_INBOUND_REQUIRED_SCOPES, …_ALLOWED_CLIENTS)"
)

// WithDefaults returns a Set of s's rules (s may be nil: no rules file)
// followed by the global ones: one public rule per public path, then a
// catch-all that asks for the required scopes and allowed clients. It is
// the one authorization engine: every request a Set with defaults is asked
// about matches a rule.
func (s *Set) WithDefaults(d Defaults) (*Set, error) {
	var rules []*Rule
	for _, r := range s.Rules() {
		if d.CaseInsensitive {
			r = r.lowerCased()
		}
		rules = append(rules, r)
	}
	var errs []error
	for _, p := range d.PublicPaths {
		r, err := publicPrefix(p)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if d.CaseInsensitive {
			r = r.lowerCased()
		}
		rules = append(rules, r)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	rules = append(rules, &Rule{
		Source:  defaultSource,
		Paths:   []string{"/**"},
		Scopes:  d.RequiredScopes,
		Clients: d.AllowedClients,
		methods: allMethods,
		globs:   []glob{{src: "/**", segs: []seg{{kind: doubleStar}}, hasDouble: true}},
	})
	out := newSet(rules)
	out.fallback = rules[len(rules)-1]
	out.caseInsensitive = d.CaseInsensitive
	return out, nil
}

// lowerCased returns a copy of r whose literal path segments are lower
// case; r itself is shared and never modified.
func (r *Rule) lowerCased() *Rule {
	c := *r
	c.globs = make([]glob, len(r.globs))
	for i, g := range r.globs {
		g.segs = append([]seg(nil), g.segs...)
		for j := range g.segs {
			g.segs[j].lit = asciiLower(g.segs[j].lit)
		}
		g.lastLit = asciiLower(g.lastLit)
		c.globs[i] = g
	}
	return &c
}

// publicPrefix is the rule for one public path: the path itself and
// everything below it. A trailing slash adds nothing ("/docs/" is
// "/docs"): the path and its subtree are public either way.
func publicPrefix(p string) (*Rule, error) {
	if !strings.HasPrefix(p, "/") {
		return nil, fmt.Errorf("%q must start with /", p)
	}
	trimmed := strings.TrimSuffix(p, "/")
	g := glob{src: trimmed + "/**", hasDouble: true}
	if trimmed != "" {
		for s := range strings.SplitSeq(trimmed[1:], "/") {
			if s == "" || s == "." || s == ".." || strings.ContainsAny(s, `\;%`) {
				return nil, fmt.Errorf("%q is not a clean path: no empty, \".\" or \"..\" segments, no \\ ; %%", p)
			}
			g.segs = append(g.segs, seg{kind: literal, lit: s})
			g.minSegs++
		}
	}
	g.segs = append(g.segs, seg{kind: doubleStar})
	return &Rule{Source: publicPathsSource + " " + p, Paths: []string{p}, Public: true, methods: allMethods, globs: []glob{g}}, nil
}
