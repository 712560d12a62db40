package inbound

import (
	"bufio"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/authsidecar/authsidecar/proxy"
)

// captured answers every request with 204 and keeps the last one.
type captured struct{ req *http.Request }

func (c *captured) RoundTrip(r *http.Request) (*http.Response, error) {
	c.req = r
	return &http.Response{StatusCode: 204, Body: io.NopCloser(strings.NewReader("")), Header: http.Header{}, Request: r}, nil
}

// FuzzJudgedPathIsThePathTheAppGets holds the normaliser to its promise for
// any request-target a caller can write: the path the rules judge is the
// path the app receives, as the app's server parses it from the request
// line the sidecar sends, and it is normal (no dot segments, no empty
// segments but a trailing slash, no encoded slash left to split on).
func FuzzJudgedPathIsThePathTheAppGets(f *testing.F) {
	for _, seed := range []string{
		"/", "/a/b", "/a/../b", "/a/%2e%2E/b", "/a//b", "//a", "/a/./b/", "/a/..;/b", "/a;x=1/b",
		"/a%2Fb", "/a%5cb", `/a\..\b`, "/%252e%252e/x", "/a%20b/c%3Bd", "/ä/%C3%A4", "/a?x=../y",
		"http://h", "http://h/a/../b", "*", "/a/%00/b", "/a/%zz", "/../../../etc", "/a/.../b",
	} {
		f.Add(seed, false)
		f.Add(seed, true)
	}
	app, _ := url.Parse("http://app.internal")
	f.Fuzz(func(t *testing.T, target string, allowEncodedSlashes bool) {
		r, err := http.ReadRequest(bufio.NewReader(strings.NewReader("GET " + target + " HTTP/1.1\r\nHost: sidecar\r\n\r\n")))
		if err != nil {
			return // net/http refuses it before the sidecar sees it
		}
		if p, ok := sentPath(r); ok && plainPath(p) {
			if slow, err := resolvePath(p, allowEncodedSlashes); err != nil || slow != p {
				t.Fatalf("%q: taken for a plain path, but resolved it is %q (%v)", p, slow, err)
			}
		}
		tg, status, err := normalize(r, allowEncodedSlashes)
		if err != nil {
			if status != 400 && status != 405 {
				t.Fatalf("%q: refused with %d, want 400 or 405", target, status)
			}
			return
		}
		checkNormal(t, target, tg.path)
		setTarget(r, tg)
		c := &captured{}
		proxy.NewReverseProxy(app, proxy.ReverseProxyOptions{Transport: c}).ServeHTTP(httptest.NewRecorder(), r)
		if c.req == nil {
			t.Fatalf("%q: nothing was sent to the app", target)
		}
		line := c.req.URL.RequestURI()
		got, err := url.ParseRequestURI(line)
		if err != nil {
			t.Fatalf("%q: the app cannot parse the request-target %q: %v", target, line, err)
		}
		if got.Path != tg.path {
			t.Fatalf("%q: the rules judged %q, the app gets %q (request line %q)", target, tg.path, got.Path, line)
		}
	})
}

func checkNormal(t *testing.T, target, p string) {
	t.Helper()
	if !strings.HasPrefix(p, "/") {
		t.Fatalf("%q: judged %q, which does not start with /", target, p)
	}
	segs := strings.Split(p[1:], "/")
	for i, s := range segs {
		if s == "." || s == ".." || s == "" && i < len(segs)-1 && p != "/" {
			t.Fatalf("%q: judged %q, which still holds a %q segment", target, p, s)
		}
		if name, _, _ := strings.Cut(s, ";"); name == "." || name == ".." {
			t.Fatalf("%q: judged %q, which holds a dot segment with parameters", target, p)
		}
	}
	if strings.Contains(p, `\`) {
		t.Fatalf("%q: judged %q, which holds a backslash", target, p)
	}
}
