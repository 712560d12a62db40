package proxy

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"net/url"
	"reflect"
	"strings"
	"testing"
)

// FuzzHeadAgreesWithRequestWrite writes the same request with writeHead
// and with http.Request.Write, and fails unless a server reads the two the
// same (method, target, Host, header, framing), or writeHead declined and
// wrote nothing. The request comes from raw parts: a header block whose
// names are taken as they are (not canonicalised, possibly invalid) and
// whose values may hold line breaks, a host that may be unicode, zoned or
// invalid, a target with any bytes.
func FuzzHeadAgreesWithRequestWrite(f *testing.F) {
	for _, s := range []struct {
		method, path, query, host, header string
		flags                             uint8
	}{
		{"GET", "/p", "a=1", "app:8080", "Accept: */*\nUser-Agent: curl/8\nX-Multi: a\nX-Multi: b\n", 0},
		{"DELETE", "/a b/%2F/c", "", "app", "X-Request-Id: 1\n", 0},
		{"PATCH", "/", "", "app", "X-A: v\r\nInjected: 1\nX-B: \n", 0},
		{"GET", "/", "", "[fe80::1%25en0]:80", "", 0},
		{"GET", "/", "", "bücher.example", "", 0},
		{"", "", "", "app", "user-agent: lower\nHost: evil\nContent-Length: 5\nTransfer-Encoding: chunked\nTrailer: X-T\n", 0},
		{"GET", "/", "x\x01", "app", "", 0},
		{"OPTIONS", "*", "", "app", "Bad Name: v\nX-Ok:  padded \t\nX-Empty:\n", 0},
		{"HEAD", "/", "", "app", "User-Agent:\n", flagForceQuery},
		{"POST", "/", "", "", "", flagURLHost | flagNoBody},
		{"GET", "/", "", "app", "Connection: keep-alive\n", flagClose},
		{"PUT", "/", "", "a b", "X-A: 1\nx-a: 2\n", 0},
		{"GET", "/", "", "app", "", flagBody},
	} {
		f.Add(s.method, s.path, s.query, s.host, s.header, s.flags)
	}
	f.Fuzz(func(t *testing.T, method, path, query, host, header string, flags uint8) {
		raw := "http://upstream:8080" + path
		if query != "" || flags&flagForceQuery != 0 {
			raw += "?" + query
		}
		u, err := url.Parse(raw)
		if err != nil {
			return
		}
		req := func() *http.Request {
			r := &http.Request{Method: method, URL: u, Host: host, Header: rawHeader(header), Close: flags&flagClose != 0}
			if flags&flagURLHost != 0 {
				r.Host = ""
			}
			if flags&flagNoBody != 0 {
				r.Body = http.NoBody
			}
			if flags&flagBody != 0 {
				r.Body, r.ContentLength = io.NopCloser(strings.NewReader("hi")), 2
			}
			return r
		}
		var head, std bytes.Buffer
		bw := bufio.NewWriter(&head)
		wrote := writeHead(req(), bw)
		_ = bw.Flush()
		if !wrote {
			if head.Len() > 0 {
				t.Fatalf("writeHead declined and wrote %q", head.String())
			}
			return
		}
		if err := req().Write(&std); err != nil {
			t.Fatalf("writeHead wrote what Request.Write refuses (%v):\n%q", err, head.String())
		}
		got, gerr := http.ReadRequest(bufio.NewReader(&head))
		headBytes, stdBytes := head.String(), std.String()
		want, werr := http.ReadRequest(bufio.NewReader(&std))
		if (gerr == nil) != (werr == nil) {
			t.Fatalf("read as %v, Request.Write's as %v\nhead: %q\nstd:  %q", gerr, werr, headBytes, stdBytes)
		}
		if gerr != nil {
			return
		}
		type view struct {
			Method, RequestURI, Proto, Host string
			Header                          http.Header
			ContentLength                   int64
			TransferEncoding                []string
			Close                           bool
			Rest                            int
		}
		see := func(r *http.Request, b *bytes.Buffer) view {
			return view{r.Method, r.RequestURI, r.Proto, r.Host, r.Header, r.ContentLength, r.TransferEncoding, r.Close, b.Len()}
		}
		if g, w := see(got, &head), see(want, &std); !reflect.DeepEqual(g, w) {
			t.Fatalf("a server reads\n%+v\nfrom writeHead, and\n%+v\nfrom Request.Write\nhead: %q\nstd:  %q", g, w, headBytes, stdBytes)
		}
	})
}

const (
	flagClose = 1 << iota
	flagForceQuery
	flagURLHost
	flagNoBody
	flagBody
)

// rawHeader makes a header of "name: value" lines, names as they are.
func rawHeader(block string) http.Header {
	h := http.Header{}
	for line := range strings.SplitSeq(block, "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		h[k] = append(h[k], v)
	}
	return h
}
