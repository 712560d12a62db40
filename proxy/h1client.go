package proxy

import (
	"bufio"
	"context"
	"errors"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"slices"
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
// no HTTP/2, no upgrades, no Expect: 100-continue; those go to fallback,
// as does everything on a system where idle connections cannot be
// peeked at (see canPeek).
type h1Client struct {
	dialer        *net.Dialer
	headerTimeout time.Duration
	maxIdle       int // per host
	idleTimeout   time.Duration
	// maxHeaderBytes bounds the bytes an answer's headers may take, as
	// http.Transport's MaxResponseHeaderBytes (10 MiB by default) does.
	maxHeaderBytes int64
	fallback       http.RoundTripper

	mu   sync.Mutex
	idle map[string][]*h1Conn // by host:port, most recent last
}

// h1Conn is one pooled connection.
type h1Conn struct {
	net.Conn
	br        *bufio.Reader
	bw        *bufio.Writer
	peek      *peeker
	idleSince time.Time
	// readLimit is how many more bytes br may take from the socket: an
	// answer's headers get maxHeaderBytes, its body no bound.
	readLimit int64
	// writeErr is the socket's write failure, if any: Request.Write
	// reports one during the body as it does a failure of the body.
	writeErr error
}

// h1Writer is what an h1Conn's bw writes to: the socket, noting a failure.
type h1Writer struct{ c *h1Conn }

func (w h1Writer) Write(p []byte) (int, error) {
	n, err := w.c.Conn.Write(p)
	if err != nil {
		w.c.writeErr = err
	}
	return n, err
}

// h1Reader is what an h1Conn's br reads from: the socket, within readLimit.
type h1Reader struct{ c *h1Conn }

var errHeadersTooLarge = errors.New("proxy: the answer's headers are too large")

func (r h1Reader) Read(p []byte) (int, error) {
	if r.c.readLimit <= 0 {
		return 0, errHeadersTooLarge
	}
	if int64(len(p)) > r.c.readLimit {
		p = p[:r.c.readLimit]
	}
	n, err := r.c.Conn.Read(p)
	r.c.readLimit -= int64(n)
	return n, err
}

func newH1Client(o TransportOptions, fallback http.RoundTripper) *h1Client {
	return &h1Client{
		dialer:         &net.Dialer{Timeout: o.DialTimeout, KeepAlive: 30 * time.Second},
		headerTimeout:  o.ResponseHeaderTimeout,
		maxIdle:        256,
		idleTimeout:    90 * time.Second,
		maxHeaderBytes: 10 << 20,
		fallback:       fallback,
		idle:           map[string][]*h1Conn{},
	}
}

// RoundTrip implements http.RoundTripper.
func (c *h1Client) RoundTrip(req *http.Request) (*http.Response, error) {
	if !canPeek || req.URL.Scheme != "http" || req.Header.Get("Upgrade") != "" || req.Header.Get("Expect") != "" {
		return c.fallback.RoundTrip(req)
	}
	addr := req.URL.Host
	if !strings.Contains(addr, ":") || strings.HasSuffix(addr, "]") {
		addr = net.JoinHostPort(strings.Trim(addr, "[]"), "80")
	}
	// A pooled connection the server has closed since is noticed when the
	// answer does not come: then the request goes once more on a new
	// connection, when it can be sent again.
	out := req
	if conn := c.get(addr); conn != nil {
		resp, err := c.send(req, conn, addr)
		if err == nil || staleCause(err) == nil || !replayable(req) {
			return resp, err
		}
		if req.GetBody != nil {
			body, err := req.GetBody()
			if err != nil {
				return nil, err
			}
			// A copy: req is the caller's, and the first attempt's writer
			// may still be reading req.Body.
			r := *req
			r.Body = body
			out = &r
		}
	}
	conn, err := c.dial(req.Context(), addr)
	if err != nil {
		if out.Body != nil {
			_ = out.Body.Close()
		}
		return nil, err
	}
	resp, err := c.send(out, conn, addr)
	if err != nil {
		if cause := staleCause(err); cause == io.EOF {
			err = io.ErrUnexpectedEOF
		} else if cause != nil {
			err = cause
		}
	}
	if resp != nil {
		resp.Request = req
	}
	return resp, err
}

// staleConnError means the connection ended, or was reset, before any
// byte of the answer.
type staleConnError struct{ err error }

func (e *staleConnError) Error() string {
	return "proxy: connection closed before the answer: " + e.err.Error()
}

func (e *staleConnError) Unwrap() error { return e.err }

// staleCause returns the end or reset behind a staleConnError, or nil.
func staleCause(err error) error {
	var stale *staleConnError
	if errors.As(err, &stale) {
		return stale.err
	}
	return nil
}

// replayable reports whether req may be sent once more after a connection
// ended without an answer: the app may have received it and acted on it,
// so only a request that is idempotent, as http.Transport counts them,
// and whose body can be had again.
func replayable(req *http.Request) bool {
	if req.Body != nil && req.Body != http.NoBody && req.GetBody == nil {
		return false
	}
	switch req.Method {
	case "", http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return true
	}
	_, key := req.Header["Idempotency-Key"]
	_, xkey := req.Header["X-Idempotency-Key"]
	return key || xkey
}

func (c *h1Client) dial(ctx context.Context, addr string) (*h1Conn, error) {
	nc, err := c.dialer.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	conn := &h1Conn{Conn: nc, peek: newPeeker(nc)}
	conn.br = bufio.NewReaderSize(h1Reader{conn}, 4<<10)
	conn.bw = bufio.NewWriterSize(h1Writer{conn}, 4<<10)
	return conn, nil
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
	return conn.br.Buffered() == 0 && !conn.peek.closed()
}

// put keeps conn for the next request to addr. Connections idle past
// idleTimeout, the oldest, go: get takes the newest, so that those a burst
// opened would otherwise stay, most likely closed by the app, for as long
// as traffic keeps a newer one in use.
func (c *h1Client) put(addr string, conn *h1Conn) {
	now := time.Now()
	conn.idleSince = now
	var old []*h1Conn
	c.mu.Lock()
	conns := c.idle[addr]
	n := 0
	for n < len(conns) && now.Sub(conns[n].idleSince) >= c.idleTimeout {
		n++
	}
	if n > 0 {
		old = slices.Clone(conns[:n])
		conns = slices.Delete(conns, 0, n)
	}
	if len(conns) < c.maxIdle {
		conns = append(conns, conn)
		conn = nil
	}
	c.idle[addr] = conns
	c.mu.Unlock()
	if conn != nil {
		_ = conn.Close()
	}
	for _, o := range old {
		_ = o.Close()
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
	b := &h1Body{c: c, conn: conn, addr: addr, headerTimeout: c.headerTimeout}
	b.stop = afterDone(ctx, b.cancel)
	fail := func(err error) (*http.Response, error) {
		b.stop.Stop()
		_ = conn.Close()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if werr := b.writerError(); werr != nil {
			return nil, werr
		}
		return nil, err
	}
	if req.Body == nil || req.Body == http.NoBody {
		if err := writeRequest(req, conn.bw); err != nil {
			return fail(err)
		}
		b.sent()
	} else {
		b.written = make(chan error, 1)
		go func() {
			err := writeRequest(req, conn.bw)
			if err == nil {
				b.sent()
			} else {
				b.writerFailed(err)
			}
			b.written <- err
		}()
	}
	resp, err := c.readResponse(req, conn)
	if err != nil {
		// A writer still at work ends when its write fails on the closed
		// connection, or when its body, the caller's, ends.
		return fail(err)
	}
	b.answered()
	b.ReadCloser = resp.Body
	b.reuse = !resp.Close && !req.Close
	resp.Body = b
	return resp, nil
}

// readResponse reads the final answer to req, passing 1xx answers (103
// Early Hints) to the request's trace, as http.Transport does for
// ReverseProxy.
func (c *h1Client) readResponse(req *http.Request, conn *h1Conn) (*http.Response, error) {
	trace := httptrace.ContextClientTrace(req.Context())
	conn.readLimit = c.maxHeaderBytes
	if _, err := conn.br.Peek(1); err != nil {
		if errors.Is(err, io.EOF) || isReset(err) {
			return nil, &staleConnError{err}
		}
		return nil, err
	}
	for {
		conn.readLimit = c.maxHeaderBytes
		resp, err := http.ReadResponse(conn.br, req)
		if err != nil {
			return nil, err
		}
		if resp.StatusCode >= 200 || resp.StatusCode == http.StatusSwitchingProtocols {
			conn.readLimit = math.MaxInt64
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
//
// It is made when the request is sent, and also holds who may set the
// connection's deadlines, under mu: the request's context ending, the
// request's writer, and the reader of the answer.
type h1Body struct {
	io.ReadCloser
	c       *h1Client
	conn    *h1Conn
	addr    string
	stop    endHook
	written chan error
	reuse   bool
	done    bool

	mu            sync.Mutex
	headerTimeout time.Duration
	ended         bool  // the deadline is in the past for good
	gotHeaders    bool  // the answer's headers are in
	writeErr      error // the request could not be written, and ended the wait for its answer
}

// cancel: the request's context ended.
func (b *h1Body) cancel() {
	b.mu.Lock()
	b.ended = true
	_ = b.conn.SetDeadline(time.Unix(1, 0))
	b.mu.Unlock()
}

// sent: the request is all written; the wait for the answer's headers is
// bounded from now, as http.Transport bounds it.
func (b *h1Body) sent() {
	if b.headerTimeout <= 0 {
		return
	}
	b.mu.Lock()
	if !b.ended && !b.gotHeaders {
		_ = b.conn.SetReadDeadline(time.Now().Add(b.headerTimeout))
	}
	b.mu.Unlock()
}

// writerFailed: the request could not be written; called by the writer.
// When it failed on its own (its body's read failed, or it was
// malformed), not on the connection, the app waits for the rest of a request that will not come,
// and no answer will: the wait for one ends, with err. A failed write on
// the connection (the app closed it) leaves the reader to take what the
// app may have answered before closing.
func (b *h1Body) writerFailed(err error) {
	if b.conn.writeErr != nil {
		return
	}
	b.mu.Lock()
	if !b.ended && !b.gotHeaders {
		b.ended, b.writeErr = true, err
		_ = b.conn.SetDeadline(time.Unix(1, 0))
	}
	b.mu.Unlock()
}

func (b *h1Body) writerError() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.writeErr
}

// answered: the answer's headers are in; its body has no deadline.
func (b *h1Body) answered() {
	b.mu.Lock()
	b.gotHeaders = true
	if !b.ended && b.headerTimeout > 0 {
		_ = b.conn.SetReadDeadline(time.Time{})
	}
	b.mu.Unlock()
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

// maxWriteWait is how long an answer read whole waits for its request to
// be written whole before the connection is dropped instead of pooled, as
// http.Transport's maxWriteWaitBeforeConnReuse.
const maxWriteWait = 50 * time.Millisecond

func (b *h1Body) finish(reuse bool) {
	b.done = true
	if !b.stop.Stop() { // the context ended: the deadline is in the past
		reuse = false
	}
	if b.written != nil && reuse {
		// The answer came whole; the request must have gone whole too
		// before the connection can carry another. Waited for briefly:
		// an app that answered early may never read the rest, and the
		// caller's body may never end. Not waited for when the
		// connection is dropped: a writer still reading the caller's
		// body ends when that body does.
		reuse = b.wroteWhole()
	}
	if reuse {
		b.c.put(b.addr, b.conn)
		return
	}
	_ = b.conn.Close()
}

func (b *h1Body) wroteWhole() bool {
	select {
	case err := <-b.written:
		return err == nil
	default:
	}
	t := time.NewTimer(maxWriteWait)
	defer t.Stop()
	select {
	case err := <-b.written:
		return err == nil
	case <-t.C:
		return false
	}
}
