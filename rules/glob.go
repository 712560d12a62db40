package rules

import (
	"fmt"
	"path"
	"strings"
)

type segKind uint8

const (
	literal    segKind = iota
	star               // "*": one non-empty segment
	doubleStar         // "**": zero or more segments
)

type seg struct {
	kind segKind
	lit  string
}

// glob is a compiled path glob: its segments after the leading "/", and
// what lets Match rule it out before walking them (see candidate).
type glob struct {
	src  string
	segs []seg
	// minSegs is how many segments a path needs (those not "**"); without
	// a "**" it needs exactly that many.
	minSegs   int
	hasDouble bool
	// lastLit is the last segment when it is a literal, which the path's
	// last segment must then equal; "" otherwise.
	lastLit string
}

// compileGlob checks a glob and splits it into segments once, so Match
// compares strings and never parses.
func compileGlob(src string) (glob, error) {
	if !strings.HasPrefix(src, "/") {
		return glob{}, fmt.Errorf("bad glob %q: want a path starting with \"/\"", src)
	}
	g := glob{src: src}
	if src == "/" {
		return g, nil
	}
	for s := range strings.SplitSeq(src[1:], "/") {
		switch {
		case s == "":
			return glob{}, fmt.Errorf("bad glob %q: empty segment", src)
		case s == "." || s == "..":
			return glob{}, fmt.Errorf("bad glob %q: %q segment", src, s)
		case s == "*":
			g.segs = append(g.segs, seg{kind: star})
		case s == "**":
			// "/a/**/**" is "/a/**": drop the repeat, it only costs time.
			if n := len(g.segs); n > 0 && g.segs[n-1].kind == doubleStar {
				continue
			}
			g.segs = append(g.segs, seg{kind: doubleStar})
		case strings.Contains(s, "*"):
			return glob{}, fmt.Errorf("bad glob %q: \"*\" and \"**\" must be whole segments, got %q", src, s)
		case strings.ContainsAny(s, "\\?#"):
			return glob{}, fmt.Errorf("bad glob %q: segment %q holds one of \\ ? #", src, s)
		default:
			g.segs = append(g.segs, seg{kind: literal, lit: s})
		}
	}
	for _, s := range g.segs {
		if s.kind == doubleStar {
			g.hasDouble = true
		} else {
			g.minSegs++
		}
	}
	if n := len(g.segs); n > 0 && g.segs[n-1].kind == literal {
		g.lastLit = g.segs[n-1].lit
	}
	return g, nil
}

// firstLiteral is the glob's first segment when it is a literal, else "".
func (g *glob) firstLiteral() string {
	if len(g.segs) > 0 && g.segs[0].kind == literal {
		return g.segs[0].lit
	}
	return ""
}

// match reports whether a request path's segments match g. "**" is handled
// like "*" in wildcard string matching: remember the last one seen and, when
// what follows it fails, let it absorb one more segment and retry.
func (g *glob) match(path []string) bool {
	pi, si, starP, starS := 0, 0, -1, 0
	for si < len(path) {
		if pi < len(g.segs) {
			switch p := g.segs[pi]; {
			case p.kind == doubleStar:
				starP, starS = pi, si
				pi++
				continue
			case p.kind == star && path[si] != "", p.kind == literal && path[si] == p.lit:
				pi, si = pi+1, si+1
				continue
			}
		}
		if starP < 0 {
			return false
		}
		starS++
		pi, si = starP+1, starS
	}
	for pi < len(g.segs) && g.segs[pi].kind == doubleStar {
		pi++
	}
	return pi == len(g.segs)
}

// split appends the segments of rest, a request path without its leading
// "/", to buf: none for the root, and a last empty one for a trailing
// slash. Given a stack array's slice, it does not allocate for paths that
// fit.
func split(buf []string, rest string) []string {
	if rest == "" {
		return buf
	}
	for {
		i := strings.IndexByte(rest, '/')
		if i < 0 {
			return append(buf, rest)
		}
		buf = append(buf, rest[:i])
		rest = rest[i+1:]
	}
}

// unclean reports whether a request path holds something the app might
// resolve differently than a glob reads it: a "." or ".." segment, an empty
// segment before the last, a backslash, a ";" (Java servers drop
// ";params" from each segment, then resolve dots: "/public/..;/admin" is
// "/admin" to Tomcat), or a "%" left after decoding (apps that decode
// twice).
func unclean(rest string, path []string) bool {
	if strings.ContainsAny(rest, "\\;%") {
		return true
	}
	for i, s := range path {
		if s == "." || s == ".." || s == "" && i < len(path)-1 {
			return true
		}
	}
	return false
}

// cleanPath is what an app may resolve p to: ";params" dropped from each
// segment, backslashes read as slashes, dot segments and doubled slashes
// resolved.
func cleanPath(p string) string {
	p = strings.ReplaceAll(p, "\\", "/")
	if strings.IndexByte(p, ';') >= 0 {
		segs := strings.Split(p, "/")
		for i, s := range segs {
			if j := strings.IndexByte(s, ';'); j >= 0 {
				segs[i] = s[:j]
			}
		}
		p = strings.Join(segs, "/")
	}
	return path.Clean(p)
}
