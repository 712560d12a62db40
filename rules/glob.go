package rules

import (
	"fmt"
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

// glob is a compiled path glob: its segments after the leading "/".
type glob struct {
	src  string
	segs []seg
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
	return g, nil
}

// firstLiteral is the glob's first segment when it is a literal, else "".
func (g *glob) firstLiteral() string {
	if len(g.segs) > 0 && g.segs[0].kind == literal {
		return g.segs[0].lit
	}
	return ""
}

// nextSeg returns the segment of p starting at byte i and the start of the
// one after it; past the last segment the next start is len(p)+1.
func nextSeg(p string, i int) (string, int) {
	j := strings.IndexByte(p[i:], '/')
	if j < 0 {
		return p[i:], len(p) + 1
	}
	return p[i : i+j], i + j + 1
}

// match reports whether rest, a request path without its leading "/",
// matches g. It walks segments in place, without allocating; "**" is
// handled like "*" in wildcard string matching, by remembering the last one
// seen and letting it absorb one more segment when what follows fails.
func (g *glob) match(rest string) bool {
	end := len(rest) + 1 // the position past the last segment
	si := 0
	if rest == "" {
		si = end // the root has no segments
	}
	pi, starP, starS := 0, -1, 0
	for si < end {
		if pi < len(g.segs) {
			s, next := nextSeg(rest, si)
			switch p := g.segs[pi]; {
			case p.kind == doubleStar:
				starP, starS = pi, si
				pi++
				continue
			case p.kind == star && s != "", p.kind == literal && s == p.lit:
				pi, si = pi+1, next
				continue
			}
		}
		if starP < 0 {
			return false
		}
		_, starS = nextSeg(rest, starS)
		pi, si = starP+1, starS
	}
	for pi < len(g.segs) && g.segs[pi].kind == doubleStar {
		pi++
	}
	return pi == len(g.segs)
}

// unclean reports whether rest, a request path without its leading "/",
// holds something the app might resolve differently than a glob reads it:
// a "." or ".." segment, an empty segment before the last, or a backslash.
func unclean(rest string) bool {
	if strings.IndexByte(rest, '\\') >= 0 {
		return true
	}
	if rest == "" {
		return false
	}
	for i := 0; i < len(rest)+1; {
		s, next := nextSeg(rest, i)
		if s == "." || s == ".." || (s == "" && next <= len(rest)) {
			return true
		}
		i = next
	}
	return false
}
