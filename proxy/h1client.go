package proxy

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"strings"
	"sync"
	"time"
)

// h1Client is a synchronous HTTP/1.1 client for the cleartext hop to the
// app or an upstream: the request is written and its answer read on the
// caller's goroutine, over a pool of keep-alive connections. http.Transport
// runs two goroutines per connection and hands each request and answer
// between them over channels; on loopback, where a round trip is a few
// microseconds, that hand-off is much of a proxy's cost.
//
// It does what the sidecar's hops need and no more: no TLS, no proxies,
// no HTTP/2, no upgrades, no Expect: 100-continue; those go to fallback.
type h1Client struct {
	dialer        *net.Dialer
	headerTimeout time.Duration
	maxIdle       int // per host
	idleTimeout   time.Duration
	fallback      http.RoundTripper

	mu   sync.Mutex
	idle map[string][]*h1Conn // by host:port, most recent last
}

// h1Conn is one pooled connection.
type h1Conn struct {
	net.Conn
	br        *bufio.Reader
	bw        *bufio.Writer
	idleSince time.Time
}

func newH1Client(o TransportOptions, fallback http.RoundTripper) *h1Client {
	return &h1Client{
		dialer:        &net.Dialer{Timeout: o.DialTimeout, KeepAlive: 30 * time.Second},
		headerTimeout: o.ResponseHeaderTimeout,
		maxIdle:       256,
		idleTimeout:   90 * time.Second,
		fallback:      fallback,
		idle:          map[string][]*h1Conn{},
	}
}

// RoundTrip implements http.RoundTripper.
func (c *h1Client) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Scheme != "http" || req.Header.Get("Upgrade") != "" || req.Header.Get("Expect") != "" {
		return c.fallback.RoundTrip(req)
	}
	addr := req.URL.Host
	if !strings.Contains(addr, ":") || strings.HasSuffix(addr, "]") {
		addr = net.JoinHostPort(strings.Trim(addr, "[]"), "80")
	}
	// A pooled connection the server has closed since is noticed when the
	// answer does not come: then the request goes once more on a new
	// connection, when it can be sent again.
	if conn := c.get(addr); conn != nil {
		resp, err := c.send(req, conn, addr)
		if err == nil || !errors.Is(err, errStaleConn) || !replayable(req) {
			return resp, err
		}
		if req.GetBody != nil {
			if req.Body, err = req.GetBody(); err != nil {
				return nil, err
			}
		}
	}
	conn, err := c.dial(req.Context(), addr)
	if err != nil {
		return nil, err
	}
	resp, err := c.send(req, conn, addr)
	if errors.Is(err, errStaleConn) {
		err = io.ErrUnexpectedEOF
	}
	return resp, err
}

// errStaleConn means the connection ended before any byte of the answer.
var errStaleConn = errors.New("proxy: connection closed before the answer")

func replayable(req *http.Request) bool {
	return req.Body == nil || req.Body == http.NoBody || req.GetBody != nil
}

func (c *h1Client) dial(ctx context.Context, addr string) (*h1Conn, error) {
	nc, err := c.dialer.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	return &h1Conn{Conn: nc, br: bufio.NewReaderSize(nc, 4<<10), bw: bufio.NewWriterSize(nc, 4<<10)}, nil
}

// get returns an idle connection to addr that the server has not closed,
// or nil.
func (c *h1Client) get(addr string) *h1Conn {
	for {
		c.mu.Lock()
		conns := c.idle[addr]
		if len(conns) == 0 {
			c.mu.Unlock()
			return nil
		}
		conn := conns[len(conns)-1]
		c.idle[addr] = conns[:len(conns)-1]
		c.mu.Unlock()
		if time.Since(conn.idleSince) < c.idleTimeout && conn.alive() {
			return conn
		}
		_ = conn.Close()
	}
}

// alive reports whether the server has not closed the idle connection
// (Node.js closes idle connections after 5 s, for one) and sent nothing
// no request asked for: see peekClosed.
func (conn *h1Conn) alive() bool {
	return conn.br.Buffered() == 0 && !peekClosed(conn.Conn)
}

// put keeps conn for the next request to addr.
func (c *h1Client) put(addr string, conn *h1Conn) {
	conn.idleSince = time.Now()
	c.mu.Lock()
	if len(c.idle[addr]) < c.maxIdle {
		c.idle[addr] = append(c.idle[addr], conn)
		conn = nil
	}
	c.mu.Unlock()
	if conn != nil {
		_ = conn.Close()
	}
}

// CloseIdleConnections closes every pooled connection.
func (c *h1Client) CloseIdleConnections() {
	c.mu.Lock()
	idle := c.idle
	c.idle = map[string][]*h1Conn{}
	c.mu.Unlock()
	for _, conns := range idle {
		for _, conn := range conns {
			_ = conn.Close()
		}
	}
	if f, ok := c.fallback.(interface{ CloseIdleConnections() }); ok {
		f.CloseIdleConnections()
	}
}

// send writes req on conn and reads its answer. A request body is written
// on a goroutine of its own, so that an answer that comes before the body
// is all sent (a 413, a 401) is read at once.
func (c *h1Client) send(req *http.Request, conn *h1Conn, addr string) (*http.Response, error) {
	ctx := req.Context()
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	fail := func(err error) (*http.Response, error) {
		stop()
		_ = conn.Close()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, err
	}
	var written chan error
	if req.Body == nil || req.Body == http.NoBody {
		if err := writeRequest(req, conn.bw); err != nil {
			return fail(err)
		}
	} else {
		written = make(chan error, 1)
		go func() { written <- writeRequest(req, conn.bw) }()
	}
	if c.headerTimeout > 0 {
		_ = conn.SetReadDeadline(time.Now().Add(c.headerTimeout))
	}
	resp, err := c.readResponse(req, conn)
	if err != nil {
		// A writer still at work ends when its write fails on the closed
		// connection, or when its body, the caller's, ends.
		return fail(err)
	}
	if c.headerTimeout > 0 {
		_ = conn.SetReadDeadline(time.Time{})
	}
	resp.Body = &h1Body{ReadCloser: resp.Body, c: c, conn: conn, addr: addr, stop: stop, written: written,
		reuse: !resp.Close && !req.Close}
	return resp, nil
}

// writeRequest writes req as the client side of HTTP/1.1 does and flushes.
func writeRequest(req *http.Request, bw *bufio.Writer) error {
	if err := req.Write(bw); err != nil {
		return err
	}
	return bw.Flush()
}

// readResponse reads the final answer to req, passing 1xx answers (103
// Early Hints) to the request's trace, as http.Transport does for
// ReverseProxy.
func (c *h1Client) readResponse(req *http.Request, conn *h1Conn) (*http.Response, error) {
	trace := httptrace.ContextClientTrace(req.Context())
	for {
		if _, err := conn.br.Peek(1); err != nil {
			if errors.Is(err, io.EOF) {
				return nil, errStaleConn
			}
			return nil, err
		}
		resp, err := http.ReadResponse(conn.br, req)
		if err != nil {
			return nil, err
		}
		if resp.StatusCode >= 200 || resp.StatusCode == http.StatusSwitchingProtocols {
			return resp, nil
		}
		if trace != nil && trace.Got1xxResponse != nil {
			if err := trace.Got1xxResponse(resp.StatusCode, textproto.MIMEHeader(resp.Header)); err != nil {
				return nil, err
			}
		}
	}
}

// h1Body is an answer's body: once read to its end, the connection goes
// back to the pool (when the request's body is all written and neither
// side asked to close); closed before that, the connection is closed.
// Read and Close are called by one goroutine, ReverseProxy's.
type h1Body struct {
	io.ReadCloser
	c       *h1Client
	conn    *h1Conn
	addr    string
	stop    func() bool
	written chan error
	reuse   bool
	done    bool
}

func (b *h1Body) Read(p []byte) (int, error) {
	if b.done {
		return 0, io.EOF
	}
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF {
		b.finish(b.reuse)
	} else if err != nil {
		b.finish(false)
	}
	return n, err
}

func (b *h1Body) Close() error {
	if !b.done {
		b.finish(false)
	}
	return nil
}

func (b *h1Body) finish(reuse bool) {
	b.done = true
	if !b.stop() { // the context ended: the deadline is in the past
		reuse = false
	}
	if b.written != nil && reuse {
		// The answer came whole; the request must have gone whole too
		// before the connection can carry another. Not waited for when
		// the connection is dropped: a writer still reading the caller's
		// body ends when that body does.
		reuse = <-b.written == nil
	}
	if reuse {
		b.c.put(b.addr, b.conn)
		return
	}
	_ = b.conn.Close()
}
