package proxy

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// FuzzFrontAgreesWithNetHTTP holds the HTTP/1.1 front to net/http's
// server for any bytes a caller sends on a connection: both must serve
// the same requests (method, target, Host, headers, body framing and
// bytes, trailers, pipelined requests after it) and refuse the same ones
// with the same status. A request the front hands to net/http counts as
// the front's: the caller cannot tell.
func FuzzFrontAgreesWithNetHTTP(f *testing.F) {
	for _, seed := range frontSeeds {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		want := serveRaw(t, raw, false)
		got := serveRaw(t, raw, true)
		if !got.agrees(want) {
			t.Fatalf("the front and net/http disagree on %q\nfront:\n%s\nnet/http:\n%s", raw, got, want)
		}
	})
}

// frontSeeds are the request-smuggling classics, and the shapes the
// front must hand over or refuse as net/http does.
var frontSeeds = []string{
	"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
	"GET /a?b=c HTTP/1.1\r\nHost: a\r\nX: 1\r\nX: 2\r\n\r\nGET /second HTTP/1.1\r\nHost: a\r\n\r\n",
	// Content-Length against Transfer-Encoding, both orders.
	"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n0\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n0\r\nX-Trailer: t\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\n0\n\n",
	"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\n",
	// Duplicate and malformed Content-Length.
	"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc",
	"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
	"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3, 3\r\n\r\nabc",
	"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +3\r\n\r\nabc",
	"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabcGET /next HTTP/1.1\r\nHost: a\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc\r\nGET /after-crlf HTTP/1.1\r\nHost: a\r\n\r\n",
	// obs-fold, bare LF, bare CR, whitespace.
	"GET / HTTP/1.1\r\nHost: a\r\nX-Folded: one\r\n two\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity\r\n chunked\r\n\r\n",
	"GET / HTTP/1.1\r\n Host: a\r\n\r\n",
	"GET / HTTP/1.1\nHost: a\n\n",
	"GET / HTTP/1.1\rHost: a\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\rX: b\r\n\r\n",
	"GET / HTTP/1.1\r\nHost : a\r\n\r\n",
	"GET / HTTP/1.1\r\nHost:\ta\t\r\n\r\n",
	"GET  / HTTP/1.1\r\nHost: a\r\n\r\n",
	"GET / HTTP/1.1 \r\nHost: a\r\n\r\n",
	"GET /\t HTTP/1.1\r\nHost: a\r\n\r\n",
	// Host: missing, doubled, empty, malformed; absolute form.
	"GET / HTTP/1.1\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
	"GET / HTTP/1.1\r\nHost:\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a b\r\n\r\n",
	"GET / HTTP/1.1\r\nHOST: a\r\n\r\n",
	"GET http://b/x HTTP/1.1\r\nHost: a\r\n\r\n",
	"GET http://b/x HTTP/1.1\r\n\r\n",
	"GET //b/x HTTP/1.1\r\nHost: a\r\n\r\n",
	"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
	"CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n",
	// Bad header names and values.
	"GET / HTTP/1.1\r\nHost: a\r\nX\x00: b\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\nX: b\x00c\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\nX: b\x7fc\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\n: empty\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\nno-colon\r\n\r\n",
	// Methods and versions the front hands over.
	"GET / HTTP/1.0\r\nHost: a\r\n\r\n",
	"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET / HTTP/1.0\r\n\r\n",
	"GET / HTTP/2.0\r\nHost: a\r\n\r\n",
	"GET / HTTP/1.2\r\nHost: a\r\n\r\n",
	"GET / http/1.1\r\nHost: a\r\n\r\n",
	"GET /\r\n\r\n",
	"G\x00T / HTTP/1.1\r\nHost: a\r\n\r\n",
	"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nhi",
	"GET / HTTP/1.1\r\nHost: a\r\nExpect: something\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\nGET /not-served HTTP/1.1\r\nHost: a\r\n\r\n",
	// A header block larger than the front's read buffer.
	"GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + strings.Repeat("b", frontReadBuffer) + "\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\n",
	"",
}

// served is what one server made of a connection's bytes: the requests
// its handler saw, and the status and framing of each answer.
type served struct {
	requests []string
	answers  []answer
}

// answer is an answer's status and framing: whether it says the
// connection closes after it, has a Content-Length, is chunked.
type answer struct {
	status                 string
	close, length, chunked bool
}

func (s served) String() string {
	return fmt.Sprintf("requests:\n  %s\nanswers: %+v", strings.Join(s.requests, "\n  "), s.answers)
}

// agrees reports whether the front's s and net/http's want served the
// same requests with the same answers. The front may close a connection
// that net/http would have offered to keep, after a body whose read
// failed (a caller gone mid-body, a broken chunk): the caller cannot
// send another request on it either way. The other way round, a kept
// connection that net/http closes, would let a caller pipeline a
// request that net/http refuses.
func (s served) agrees(want served) bool {
	if !slices.Equal(s.requests, want.requests) || len(s.answers) != len(want.answers) {
		return false
	}
	for i, a := range s.answers {
		w := want.answers[i]
		if a.status != w.status || a.length != w.length || a.chunked != w.chunked || w.close && !a.close {
			return false
		}
	}
	return true
}

// answerHead matches an answer's status line and header block; the
// handler's bodies ("ok") cannot look like one.
var answerHead = regexp.MustCompile(`(?s)HTTP/1\.[01] (\d{3}) .*?\r\n\r\n`)

// parseAnswer reads what of an answer's head tells the caller how to
// read it and whether the connection carries another request.
func parseAnswer(status, head []byte) answer {
	h := strings.ToLower(string(head))
	return answer{
		status:  string(status),
		close:   strings.Contains(h, "\r\nconnection: close\r\n"),
		length:  strings.Contains(h, "\r\ncontent-length:"),
		chunked: strings.Contains(h, "\r\ntransfer-encoding: chunked\r\n"),
	}
}

// serveRaw serves one connection carrying raw, with net/http's server or
// with the front in front of it, and reports what was served.
func serveRaw(t *testing.T, raw []byte, front bool) served {
	t.Helper()
	var (
		mu  sync.Mutex
		got served
	)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		mu.Lock()
		got.requests = append(got.requests, describeRequest(r, body, err))
		mu.Unlock()
		w.Header().Set("Content-Length", "2")
		_, _ = io.WriteString(w, "ok")
	})
	opts := DefaultServerOptions(slog.New(slog.DiscardHandler))
	s, err := Listen("fuzz", "127.0.0.1:0", h, opts)
	if err != nil {
		t.Fatal(err)
	}
	_ = s.ln.Close() // the connection comes from raw, not from a dial
	conn := newRawConn(raw)
	if front {
		go func() { _ = s.serveNetHTTP(s.front.handoff) }()
		c := s.front.newConn(conn)
		c.serve()
	} else {
		go func() { _ = s.srv.Serve(&oneConnListener{conn: conn}) }()
	}
	select {
	case <-conn.closed:
	case <-time.After(10 * time.Second):
		t.Fatalf("the connection carrying %q was not closed", raw)
	}
	_ = s.srv.Close()
	for _, m := range answerHead.FindAllSubmatch(conn.written(), -1) {
		got.answers = append(got.answers, parseAnswer(m[1], m[0]))
	}
	mu.Lock()
	defer mu.Unlock()
	return got
}

func describeRequest(r *http.Request, body []byte, err error) string {
	var hdr []string
	for k, vv := range r.Header {
		hdr = append(hdr, fmt.Sprintf("%s=%q", k, vv))
	}
	slices.Sort(hdr)
	var tr []string
	for k, vv := range r.Trailer {
		tr = append(tr, fmt.Sprintf("%s=%q", k, vv))
	}
	slices.Sort(tr)
	return fmt.Sprintf("%s %q %s host=%q header=%v cl=%d te=%q close=%v body=%q err=%v trailer=%v",
		r.Method, r.RequestURI, r.Proto, r.Host, hdr, r.ContentLength, r.TransferEncoding, r.Close, body, err, tr)
}

// rawConn is a connection whose caller sent raw and then closed its
// side; what the server writes is kept.
type rawConn struct {
	r      *bytes.Reader
	mu     sync.Mutex
	out    bytes.Buffer
	once   sync.Once
	closed chan struct{}
}

func newRawConn(raw []byte) *rawConn {
	return &rawConn{r: bytes.NewReader(raw), closed: make(chan struct{})}
}

func (c *rawConn) Read(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.r.Read(p)
}

func (c *rawConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.out.Write(p)
}

func (c *rawConn) written() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return bytes.Clone(c.out.Bytes())
}

func (c *rawConn) Close() error {
	c.once.Do(func() { close(c.closed) })
	return nil
}

func (c *rawConn) LocalAddr() net.Addr  { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 4000} }
func (c *rawConn) RemoteAddr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 50000} }

func (c *rawConn) SetDeadline(time.Time) error      { return nil }
func (c *rawConn) SetReadDeadline(time.Time) error  { return nil }
func (c *rawConn) SetWriteDeadline(time.Time) error { return nil }

// oneConnListener accepts conn once, then waits until closed.
type oneConnListener struct {
	conn   net.Conn
	mu     sync.Mutex
	used   bool
	closed chan struct{}
	once   sync.Once
}

func (l *oneConnListener) Accept() (net.Conn, error) {
	l.mu.Lock()
	if l.closed == nil {
		l.closed = make(chan struct{})
	}
	closed := l.closed
	if !l.used {
		l.used = true
		l.mu.Unlock()
		return l.conn, nil
	}
	l.mu.Unlock()
	<-closed
	return nil, net.ErrClosed
}

func (l *oneConnListener) Close() error {
	l.mu.Lock()
	if l.closed == nil {
		l.closed = make(chan struct{})
	}
	closed := l.closed
	l.mu.Unlock()
	l.once.Do(func() { close(closed) })
	return nil
}

func (l *oneConnListener) Addr() net.Addr { return l.conn.LocalAddr() }
