package inbound

import (
	"errors"
	"net/http"
	"net/url"
	"strings"
)

// Refusals of a request-target, before any token is looked at: they do not
// depend on who asks.
var (
	errBadTarget     = errors.New("the request-target is neither a path nor an absolute URL")
	errEncodedSlash  = errors.New("the path holds an encoded slash or a backslash")
	errMethodRefused = errors.New("the method is not served")
)

// target is the path a request is judged by and sent to the app with.
type target struct {
	// path is decoded and normal: dot segments resolved, empty segments
	// merged, "/" when nothing is left; a trailing slash is kept.
	path string
	// rawPath is path as it goes to the app: the caller's own encoding of
	// each segment kept.
	rawPath string
	// sent is the path as the caller wrote it, escaped.
	sent string
}

// normalize computes the path the app will receive from r's request-target,
// so that what the rules judge and what the app serves are one path. It
// refuses what no app should be handed: CONNECT and TRACE (405), a target
// that is not origin-form or absolute-form (400; net/http answers
// OPTIONS * itself, before any handler), and,
// unless allowEncodedSlashes, a "%2F" or "%5C" or a backslash in the path
// (400), which frameworks disagree on: Express decodes "%2F" into a
// parameter, ASP.NET Core routes on it undecoded, IIS reads "\" as "/".
// With allowEncodedSlashes they are decoded and split on, so the rules and
// the app both get the decoded path.
func normalize(r *http.Request, allowEncodedSlashes bool) (target, int, error) {
	switch r.Method {
	case http.MethodConnect, http.MethodTrace:
		return target{}, http.StatusMethodNotAllowed, errMethodRefused
	}
	sent, ok := sentPath(r)
	if !ok {
		return target{}, http.StatusBadRequest, errBadTarget
	}
	raw, err := normalPath(sent, allowEncodedSlashes)
	if err != nil {
		return target{}, http.StatusBadRequest, err
	}
	path, err := url.PathUnescape(raw)
	if err != nil {
		return target{}, http.StatusBadRequest, errBadTarget
	}
	return target{path: path, rawPath: raw, sent: sent}, 0, nil
}

// sentPath is r's path as the caller wrote it, escaped, or false for a
// target that has none (the asterisk form, an authority).
func sentPath(r *http.Request) (string, bool) {
	sent := r.RequestURI
	if sent == "" { // a request made in-process, not read from a connection
		sent = r.URL.RequestURI()
	}
	if i := strings.IndexByte(sent, '?'); i >= 0 {
		sent = sent[:i]
	}
	switch {
	case strings.HasPrefix(sent, "/"):
		return sent, true
	case r.URL.IsAbs() && r.URL.Host != "":
		// Absolute-form (RFC 9112 3.2.2): the path is what follows the
		// authority, "/" when there is none.
		if sent = r.URL.EscapedPath(); sent == "" {
			sent = "/"
		}
		return sent, true
	}
	return "", false
}

// normalPath resolves an escaped path segment by segment: "." and ".."
// (in any encoding: "%2e%2E") per RFC 3986 5.2.4, and empty segments
// ("//") merged, as nginx and Envoy merge them; a dot segment with
// parameters ("..;x") is a dot segment, as Java servers read it. A
// trailing slash stays.
// Each kept segment keeps the caller's encoding.
func normalPath(escaped string, allowEncodedSlashes bool) (string, error) {
	if plainPath(escaped) {
		return escaped, nil
	}
	return resolvePath(escaped, allowEncodedSlashes)
}

// plainPath reports whether normalPath has nothing to do for escaped: no
// escape, backslash or parameters, no empty segment, and no segment that
// starts with a dot. Most paths are so, and cost no copy.
func plainPath(escaped string) bool {
	return !strings.ContainsAny(escaped, `%;\`) && !strings.Contains(escaped, "//") && !strings.Contains(escaped, "/.")
}

// resolvePath is normalPath for a path that may need work.
func resolvePath(escaped string, allowEncodedSlashes bool) (string, error) {
	var out []string
	trailing := false
	// add resolves one segment that holds no slash, seg as escaped and
	// dec decoded; last: no segment follows.
	add := func(seg, dec string, last bool) {
		if name, _, params := strings.Cut(dec, ";"); params && (name == "." || name == "..") {
			// Java servers drop ";params" and then resolve the dots:
			// Tomcat serves "/a/..;/b" as "/b", and so does the sidecar.
			dec = name
		}
		switch dec {
		case "", ".":
			trailing = last
		case "..":
			if len(out) > 0 {
				out = out[:len(out)-1]
			}
			trailing = last
		default:
			out = append(out, seg)
			trailing = false
		}
	}
	for rest, more := escaped[1:], true; more; {
		var seg string
		seg, rest, more = strings.Cut(rest, "/")
		dec, err := url.PathUnescape(seg)
		if err != nil {
			return "", errBadTarget
		}
		if !strings.ContainsAny(dec, `/\`) {
			add(seg, dec, !more)
			continue
		}
		if !allowEncodedSlashes {
			return "", errEncodedSlash
		}
		// Split on them, each part re-escaped as decoded: "a%2Fb" is
		// "a/b". The parts are resolved in place, not spliced back into
		// the segments, which would cost a copy of the rest per slash.
		parts := strings.FieldsFunc(dec, func(r rune) bool { return r == '/' || r == '\\' })
		endsInSlash := strings.HasSuffix(dec, "/") || strings.HasSuffix(dec, `\`)
		for j, part := range parts {
			add(url.PathEscape(part), part, !more && !endsInSlash && j == len(parts)-1)
		}
		if endsInSlash {
			add("", "", !more)
		}
	}
	p := "/" + strings.Join(out, "/")
	if trailing && len(out) > 0 {
		p += "/"
	}
	return p, nil
}
