package proxy

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"net/url"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// FuzzForwarderAgreesWithReverseProxy sends the same request through
// ReverseProxy's own path and through httputil.ReverseProxy (its slow
// path, built with the same Rewrite, transport and error handler), to a
// transport that records what it was sent and answers the same scripted
// answer to both, and fails unless both sent the same request on (method,
// URL, Host, headers, body, framing) and wrote the same answer back (1xx
// answers, status, headers, body, trailers, and a flush for answers that
// must stream).
//
// The request's headers and the answer's come from header blocks that
// net/textproto and http.ReadResponse parse, as the front and the
// client would have parsed them off the wire.
func FuzzForwarderAgreesWithReverseProxy(f *testing.F) {
	seeds := []struct {
		reqHead, query, resHead string
		mode                    uint16
	}{
		{"Accept: */*\nUser-Agent: curl/8\n", "a=1", "Content-Type: text/plain\n", 0},
		{"Connection: keep-alive, X-Forwarded-For, Te\nTe: trailers, deflate\nX-Forwarded-For: 6.6.6.6\n", "", "Content-Type: text/plain\n", modeBody},
		{"Connection: X-Custom\nX-Custom: gone\nX-Kept: kept\nKeep-Alive: 300\nProxy-Connection: keep-alive\nProxy-Authorization: Basic x\n", "q=%41", "", 0},
		{"Forwarded: for=6.6.6.6\nX-Forwarded-Host: evil\nX-Forwarded-Proto: https\nX-Request-Id: abc-123\n", "x=1&y=2", "", modeKeepHost},
		{"Upgrade: websocket\n", "", "Connection: close, X-Secret\nX-Secret: s\nKeep-Alive: timeout=5\nX-Authsidecar-Error: forged\n", 0},
		{"Trailer: X-Req-Trailer\n", "", "Content-Type: text/event-stream; charset=utf-8\n", modeBody | modeChunkedRequest},
		{"Accept: a\nAccept: b\nAccept: c\n", "", "Content-Type: TEXT/Event-Stream\n", modeChunked},
		{"", "", "Trailer: X-T, X-Authsidecar-Error\n", modeChunked | modeTrailers},
		{"", "", "Trailer: X-T\n", modeChunked | modeTrailers | modeHints},
		{"Connection: Upgrade\nUpgrade: h2c\n", "", "", 0},
		{"", "a=1;b=2", "", 0},
		{"", "a=%zz", "", 0},
		{"", "", "Upgrade: websocket\nConnection: Upgrade\n", 1 << 8}, // 101
		{"", "", "", modeFail},
		{"", "", "Content-Length: 5\n", 2 << 8}, // 204
		{"X-Request-Id: " + strings.Repeat("x", 200) + "\n", "", "", modeHead},
		{"Te: gzip\nConnection: te\n", "", "Content-Type: text/event-stream;;\n", modeUnknownLength},
		// From a review: an announced X-Authsidecar-Error trailer on answers
		// without a body; media types mime.ParseMediaType refuses or does
		// not fold; request trailers; an answer cut short.
		{"", "", "Trailer: X-Authsidecar-Error\n", modeChunked | 2<<8},
		{"", "", "Trailer: X-Authsidecar-Error\n", modeChunked | 3<<8},
		{"", "", "Trailer: X-Authsidecar-Error, X-T\n", modeChunked | modeHead},
		{"", "", "Content-Type: text/event-stream; a=1; a=2\n", 0},
		{"", "", "Content-Type: text/event-\u017ftream\n", 0},
		{"Trailer: X-Req-Trailer, X-Other\n", "", "", modeBody | modeChunkedRequest},
		{"", "", "Content-Type: text/event-stream\n", modeCut},
		{"", "", "", modeCut | modeChunked},
	}
	for _, s := range seeds {
		f.Add(s.reqHead, s.query, s.resHead, s.mode)
	}
	f.Fuzz(func(t *testing.T, reqHead, query, resHead string, mode uint16) {
		in, ok := fuzzRequest(reqHead, query, mode)
		if !ok {
			return
		}
		answer, ok := fuzzAnswer(resHead, mode)
		if !ok {
			return
		}
		fast := forwardOnce(t, in, answer, mode, false)
		slow := forwardOnce(t, in, answer, mode, true)
		if !reflect.DeepEqual(fast, slow) {
			t.Fatalf("request %q ?%q, answer %q, mode %#x:\n fast: %+v\n slow: %+v", reqHead, query, answer, mode, fast, slow)
		}
	})
}

const (
	modeBody           uint16 = 1 << iota // the request has a body
	modeChunkedRequest                    // ... of unknown length
	modeKeepHost                          // KeepHost
	modeChunked                           // the answer is chunked
	modeTrailers                          // ... with trailers
	modeHints                             // a 103 comes first
	modeFail                              // the transport fails
	modeUnknownLength                     // the answer's body runs to the connection's end
	// bits 8-10: the answer's status, from fuzzStatuses
	modeHead uint16 = 1 << 11 // a HEAD request
	modeCut  uint16 = 1 << 12 // the answer's body ends before its framing says
)

var fuzzStatuses = []int{200, 101, 204, 304, 500, 404, 302, 200}

type fuzzRequestSpec struct {
	method string
	header http.Header
	query  string
	body   bool
	length int64
}

func fuzzRequest(head, query string, mode uint16) (fuzzRequestSpec, bool) {
	h, err := textproto.NewReader(bufio.NewReader(strings.NewReader(strings.ReplaceAll(head, "\n", "\r\n") + "\r\n"))).ReadMIMEHeader()
	if err != nil || h["Host"] != nil || h["Content-Length"] != nil || h["Transfer-Encoding"] != nil {
		return fuzzRequestSpec{}, false
	}
	if _, err := url.ParseRequestURI("/p?" + query); err != nil || strings.ContainsAny(query, "# ") {
		return fuzzRequestSpec{}, false
	}
	spec := fuzzRequestSpec{method: http.MethodGet, header: http.Header(h), query: query}
	if mode&modeHead != 0 {
		spec.method = http.MethodHead
	}
	if mode&modeBody != 0 {
		spec.method, spec.body, spec.length = http.MethodPost, true, 5
		if mode&modeChunkedRequest != 0 {
			spec.length = -1
		}
	}
	return spec, true
}

// fuzzAnswer is the app's answer, as bytes on the wire.
func fuzzAnswer(head string, mode uint16) (string, bool) {
	status := fuzzStatuses[(mode>>8)&7]
	var b strings.Builder
	fmt.Fprintf(&b, "HTTP/1.1 %d %s\r\n%s", status, http.StatusText(status), strings.ReplaceAll(head, "\n", "\r\n"))
	switch {
	case mode&modeCut != 0 && mode&modeChunked != 0:
		b.WriteString("Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
	case mode&modeCut != 0:
		b.WriteString("Content-Length: 10\r\n\r\nhello")
	case mode&modeChunked != 0:
		b.WriteString("Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n")
		if mode&modeTrailers != 0 {
			b.WriteString("X-T: t\r\nX-Authsidecar-Error: forged\r\nX-Late: late\r\n")
		}
		b.WriteString("\r\n")
	case mode&modeUnknownLength != 0:
		b.WriteString("\r\nhello")
	default:
		b.WriteString("Content-Length: 5\r\n\r\nhello")
	}
	// Answers http.ReadResponse refuses, or reads other than as meant
	// (two framings), are the client's business, not the forwarder's.
	req := &http.Request{Method: http.MethodGet}
	res, err := http.ReadResponse(bufio.NewReader(strings.NewReader(b.String())), req)
	if err != nil {
		return "", false
	}
	_, err = io.Copy(io.Discard, res.Body)
	return b.String(), err == nil || mode&modeCut != 0
}

// forwarded is what one forward did, on both of its sides.
type forwarded struct {
	Sent    sentRequest
	Answers []writtenAnswer
	Body    string
	Flushed bool
	After   http.Header // the writer's header once the handler is done: trailers
	Aborted bool        // the handler panicked with http.ErrAbortHandler
}

type sentRequest struct {
	Method, URL, Host string
	Header            http.Header
	Close             bool
	ContentLength     int64
	Body              string
	Trailer           http.Header
	TrailerAfterBody  http.Header // as the request's body filled it in
}

type writtenAnswer struct {
	Code   int
	Header http.Header
}

func forwardOnce(t *testing.T, spec fuzzRequestSpec, answer string, mode uint16, slow bool) forwarded {
	var got forwarded
	rt := roundTripFunc(func(out *http.Request) (*http.Response, error) {
		s := sentRequest{Method: out.Method, URL: out.URL.String(), Host: out.Host, Header: out.Header.Clone(),
			Close: out.Close, ContentLength: out.ContentLength, Trailer: out.Trailer.Clone()}
		if id := out.Header.Get(RequestIDHeader); id != spec.header.Get(RequestIDHeader) && len(id) == 32 {
			s.Header.Set(RequestIDHeader, "generated")
		}
		if out.Body != nil {
			b, err := io.ReadAll(out.Body)
			if err != nil {
				return nil, err
			}
			s.Body = string(b)
		}
		s.TrailerAfterBody = out.Trailer.Clone()
		got.Sent = s
		// A transport may write into the values it was given: none of
		// that may reach the caller's request (whose identity headers
		// may be a cached token's, shared with every request).
		for _, vv := range out.Header {
			for i := range vv {
				vv[i] = "written by the transport"
			}
		}
		if mode&modeFail != 0 {
			return nil, errors.New("connection refused")
		}
		if mode&modeHints != 0 {
			if trace := httptrace.ContextClientTrace(out.Context()); trace != nil && trace.Got1xxResponse != nil {
				_ = trace.Got1xxResponse(http.StatusEarlyHints, textproto.MIMEHeader{"Link": {"</a.css>; rel=preload"}})
			}
		}
		return http.ReadResponse(bufio.NewReader(strings.NewReader(answer)), out)
	})
	p := NewReverseProxy(&url.URL{Scheme: "http", Host: "app.local:8080"}, ReverseProxyOptions{Transport: rt, KeepHost: mode&modeKeepHost != 0})
	var body io.ReadCloser
	var req *http.Request
	if spec.body {
		body = &trailingBody{r: strings.NewReader("hello"), req: &req}
	}
	// Under a server, as the sidecar's handlers are: a body cut short
	// then aborts the answer.
	ctx, cancel := context.WithCancel(context.WithValue(context.Background(), http.ServerContextKey, &http.Server{}))
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, spec.method, "http://sidecar.local/p?"+spec.query, body)
	if err != nil {
		t.Fatal(err)
	}
	req.Header = spec.header.Clone()
	if spec.length < 0 {
		for _, names := range spec.header["Trailer"] {
			for name := range strings.SplitSeq(names, ",") {
				if name = textproto.TrimString(name); name != "" {
					if req.Trailer == nil {
						req.Trailer = http.Header{}
					}
					req.Trailer[http.CanonicalHeaderKey(name)] = nil
				}
			}
		}
	}
	req.ContentLength = spec.length
	req.RemoteAddr = "192.0.2.1:4711"
	req.RequestURI = "/p?" + spec.query
	if spec.length < 0 {
		req.TransferEncoding = []string{"chunked"}
	}
	w := &answerRecorder{header: http.Header{}}
	func() {
		defer func() {
			if v := recover(); v != nil {
				if v != http.ErrAbortHandler {
					panic(v)
				}
				got.Aborted = true
			}
		}()
		if slow {
			p.slow.ServeHTTP(w, req)
		} else {
			p.ServeHTTP(w, req)
		}
	}()
	if !reflect.DeepEqual(req.Header, spec.header) {
		t.Fatalf("slow=%v: the forward changed the incoming header: %v, was %v", slow, req.Header, spec.header)
	}
	got.Answers, got.Body, got.Flushed, got.After = w.answers, w.body.String(), w.flushedAfterBody, sortedTrailer(w.header)
	return got
}

// trailingBody is a request body that fills in its request's announced
// trailers as it ends, as net/http's body does.
type trailingBody struct {
	r   io.Reader
	req **http.Request
}

func (b *trailingBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if err == io.EOF {
		for k := range (*b.req).Trailer {
			(*b.req).Trailer[k] = []string{"value of " + k}
		}
	}
	return n, err
}

func (b *trailingBody) Close() error { return nil }

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// answerRecorder records every WriteHeader with the header at that
// moment, the body, and whether a flush followed the body's last write.
type answerRecorder struct {
	header           http.Header
	answers          []writtenAnswer
	body             bytes.Buffer
	wroteFinal       bool
	flushedAfterBody bool
}

func (w *answerRecorder) Header() http.Header { return w.header }

func (w *answerRecorder) WriteHeader(code int) {
	if w.wroteFinal {
		return
	}
	w.wroteFinal = code >= 200 || code == http.StatusSwitchingProtocols
	w.answers = append(w.answers, writtenAnswer{code, sortedTrailer(w.header)})
}

// sortedTrailer is a copy of h with its Trailer names sorted: both
// proxies announce them from a map, in any order.
func sortedTrailer(h http.Header) http.Header {
	h = h.Clone()
	for i, v := range h["Trailer"] {
		names := strings.Split(v, ", ")
		slices.Sort(names)
		h["Trailer"][i] = strings.Join(names, ", ")
	}
	return h
}

func (w *answerRecorder) Write(p []byte) (int, error) {
	if !w.wroteFinal {
		w.WriteHeader(http.StatusOK)
	}
	w.flushedAfterBody = false
	return w.body.Write(p)
}

func (w *answerRecorder) Flush() {
	if w.body.Len() > 0 {
		w.flushedAfterBody = true
	}
}
