package proxy

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http/httpguts"
)

// h1Front serves the plain HTTP/1.1 requests of a cleartext listener
// itself, and hands every connection it does not serve to net/http.
//
// net/http's server spends about an eighth of the sidecar's CPU per
// request (inbound, 52 µs with it and 45 µs with the front, in loadbench)
// on work a proxy does not need: a goroutine per request to watch the
// caller, a large response object, sorted header writes, connection-state
// hooks. The front keeps what decides security, net/http's own request
// parser (http.ReadRequest) and the checks net/http's server adds to it,
// and drops the rest. FuzzFrontAgreesWithNetHTTP holds the two to the
// same answer for any bytes a caller sends.
//
// A connection goes to net/http, with the bytes already read, whenever
// its next request is one the front does not serve: a request line other
// than "METHOD target HTTP/1.1" (HTTP/1.0, the h2c preface, CONNECT), an
// Upgrade or Expect header, or a header block larger than the read
// buffer or than MaxHeaderBytes (net/http then answers 431). From then
// on net/http serves the connection for its life.
type h1Front struct {
	handler http.Handler
	opts    ServerOptions
	log     *slog.Logger
	// srv is the net/http server the handed-off connections go to; its
	// values are in every request's context, as net/http puts them.
	srv     *http.Server
	handoff *handoffListener

	// closing is set by shutdown and close; each request reads it.
	closing atomic.Bool
	mu      sync.Mutex // guards conns, done and ln: per connection, not per request
	conns   map[*frontConn]struct{}
	// done is made by the first shutdown and closed when conns empties.
	done chan struct{}
	ln   net.Listener
}

// frontReadBuffer is each connection's read buffer: a request's line and
// headers must fit in it to be served by the front.
const frontReadBuffer = 8 << 10

// callerWatchDelay is how long a request runs before the front starts
// reading the connection to notice a caller that left (net/http does it
// for every request, at the cost of a goroutine each). A caller that
// leaves later than that cancels the request within the read.
const callerWatchDelay = 5 * time.Millisecond

// maxDrainBytes is how much of a body the handler left unread is read
// and thrown away to keep the connection, as net/http does.
const maxDrainBytes = 256 << 10

// lingerAfterClose bounds the reading of an unread body after an answer
// that closes the connection, so that the close does not reset the
// connection before the caller has read the answer.
const lingerAfterClose = 500 * time.Millisecond

func newH1Front(h http.Handler, srv *http.Server, opts ServerOptions, logger *slog.Logger, addr net.Addr) *h1Front {
	return &h1Front{
		handler: h,
		opts:    opts,
		log:     logger,
		srv:     srv,
		handoff: newHandoffListener(addr),
		conns:   make(map[*frontConn]struct{}),
	}
}

// serve accepts connections on ln until it is closed.
func (f *h1Front) serve(ln net.Listener) error {
	defer ln.Close()
	f.mu.Lock()
	f.ln = ln
	f.mu.Unlock()
	if f.isClosing() {
		return nil
	}
	var backoff time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			if f.isClosing() {
				return nil
			}
			if temporary(err) {
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				f.log.Warn("accept failed; retrying", "error", err.Error(), "retry_in", backoff.String())
				time.Sleep(backoff)
				continue
			}
			return err
		}
		backoff = 0
		c := f.newConn(nc)
		if c == nil {
			_ = nc.Close()
			continue
		}
		go c.serve()
	}
}

// temporary reports whether an accept error is one accept(2) recovers
// from (too many open files, a connection aborted), as net/http's
// server judges it.
func temporary(err error) bool {
	var t interface{ Temporary() bool }
	return errors.As(err, &t) && t.Temporary()
}

func (f *h1Front) isClosing() bool { return f.closing.Load() }

func (f *h1Front) newConn(nc net.Conn) *frontConn {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.isClosing() {
		return nil
	}
	c := &frontConn{f: f, nc: nc, remote: nc.RemoteAddr().String()}
	c.cr.nc = nc
	c.br = bufio.NewReaderSize(&c.cr, frontReadBuffer)
	c.bw = bufio.NewWriterSize(nc, 4<<10)
	ctx := context.WithValue(context.Background(), http.ServerContextKey, f.srv)
	ctx = context.WithValue(ctx, http.LocalAddrContextKey, nc.LocalAddr())
	c.ctx = context.WithValue(ctx, frontConnKey{}, c)
	f.conns[c] = struct{}{}
	return c
}

// forget drops c from the connections being served.
func (f *h1Front) forget(c *frontConn) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.conns, c)
	f.closeDoneIfEmpty()
}

// shutdown stops accepting, closes the idle connections, and waits until
// the busy ones have answered their request (each then closes) or ctx
// ends, when it closes what is left.
func (f *h1Front) shutdown(ctx context.Context) error {
	f.mu.Lock()
	f.closing.Store(true)
	if f.ln != nil {
		_ = f.ln.Close()
	}
	if f.done == nil {
		f.done = make(chan struct{})
	}
	done := f.done
	f.closeIdle()
	f.mu.Unlock()
	// Done first: an idle server's Shutdown succeeds even with a spent
	// context, which the select below could pick instead.
	select {
	case <-done:
		return nil
	default:
	}
	select {
	case <-done:
		return nil
	case <-ctx.Done():
	}
	// A connection may have turned idle since: its answer is out.
	f.mu.Lock()
	f.closeIdle()
	f.mu.Unlock()
	select {
	case <-done:
		return nil
	default:
		f.close()
		return ctx.Err()
	}
}

// closeIdle closes the idle connections, done with at once: they cannot
// turn busy any more. f.mu is held.
func (f *h1Front) closeIdle() {
	for c := range f.conns {
		if c.state.CompareAndSwap(connIdle, connClosed) {
			_ = c.nc.Close()
			delete(f.conns, c)
		}
	}
	f.closeDoneIfEmpty()
}

// closeDoneIfEmpty closes done once a shutdown has begun and no
// connection is left. f.mu is held.
func (f *h1Front) closeDoneIfEmpty() {
	if !f.isClosing() || len(f.conns) > 0 || f.done == nil {
		return
	}
	select {
	case <-f.done:
	default:
		close(f.done)
	}
}

// close closes the listener and every connection at once.
func (f *h1Front) close() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closing.Store(true)
	if f.ln != nil {
		_ = f.ln.Close()
	}
	for c := range f.conns {
		_ = c.nc.Close()
	}
}

// frontConn is one caller connection the front serves.
type frontConn struct {
	f      *h1Front
	nc     net.Conn
	cr     callerReader
	br     *bufio.Reader
	bw     *bufio.Writer
	ctx    context.Context
	remote string
	// state is connIdle, connBusy (a request is read or served) or
	// connClosed (by a shutdown, while idle).
	state atomic.Int32
	// lastPOST: RFC 9112 section 2.2 lets a server skip the stray CRLF
	// some clients send after a POST body, as net/http does.
	lastPOST bool
	// servedOne: a request was read. Before, the header deadline runs
	// from the accept, not from a first byte; and net/http takes a
	// connection it is handed for a new one, so only the first request
	// may be the h2c preface.
	servedOne bool
	// headerDeadline is the running header read's deadline, zero if none.
	headerDeadline time.Time
	// end ends the running request.
	end requestEnd
	// watch notices a caller that leaves while its request runs.
	watch callerWatch
}

// The states of a frontConn.
const (
	connIdle int32 = iota
	connBusy
	connClosed
)

func (c *frontConn) serve() {
	handedOff := false
	defer func() {
		if c.watch.timer != nil {
			c.watch.timer.Stop()
		}
		c.f.forget(c)
		if !handedOff {
			_ = c.nc.Close()
			if closed := c.f.opts.ConnClosed; closed != nil {
				closed(c.nc)
			}
		}
	}()
	for {
		if !c.awaitRequest() {
			return
		}
		head, verdict := c.scanHead()
		switch verdict {
		case frontDrops:
			return
		case frontHandsOver:
			_ = c.nc.SetWriteDeadline(time.Time{})
			handedOff = c.f.handoff.give(&replayConn{Conn: c.nc, r: c.br, headerDeadline: c.headerDeadline})
			return
		}
		req, err := c.readRequest(head)
		if err != nil {
			c.refuse(err)
			return
		}
		if !c.serveRequest(req) {
			return
		}
	}
}

// awaitRequest waits for the first byte of the next request, within the
// idle timeout, and marks the connection busy. It reports false when the
// connection is done: closed, timed out, or the server is closing.
func (c *frontConn) awaitRequest() bool {
	if c.f.isClosing() {
		return false
	}
	o := c.f.opts
	first := !c.servedOne
	c.headerDeadline = time.Time{}
	if first {
		if o.ReadHeaderTimeout > 0 {
			c.headerDeadline = time.Now().Add(o.ReadHeaderTimeout)
			_ = c.nc.SetReadDeadline(c.headerDeadline)
		}
	} else if o.IdleTimeout > 0 {
		_ = c.nc.SetReadDeadline(time.Now().Add(o.IdleTimeout))
	} else {
		_ = c.nc.SetReadDeadline(time.Time{})
	}
	// Between requests net/http waits for 4 bytes, and closes without
	// an answer on less (conn.serve); a first request may be shorter.
	need := 4
	if first {
		need = 1
	}
	if _, err := c.br.Peek(need); err != nil {
		return false
	}
	if c.lastPOST {
		peek, _ := c.br.Peek(4)
		_, _ = c.br.Discard(leadingCRLF(peek))
	}
	// A shutdown closes an idle connection, or sees it busy and lets it
	// answer: whichever of the two sees the other's step first.
	return c.state.CompareAndSwap(connIdle, connBusy) && !c.f.isClosing()
}

func leadingCRLF(b []byte) int {
	n := 0
	for n < len(b) && (b[n] == '\r' || b[n] == '\n') {
		n++
	}
	return n
}

// setIdle marks the connection idle, so that a shutdown closes it, and
// reports false when a shutdown has begun: the connection is done.
func (c *frontConn) setIdle() bool {
	c.state.Store(connIdle)
	return !c.f.isClosing()
}

// head is what scanHead learnt of a request's header block: whether it
// has a Host header, and whether its request line is the h2c preface's,
// "PRI * HTTP/2.0", which after a first request is one more HTTP/1.1
// request to net/http's server (not a switch to HTTP/2).
type head struct{ host, pri bool }

// verdict is what becomes of a connection's next request.
type verdict int

const (
	frontServes    verdict = iota // the front serves it
	frontHandsOver                // net/http serves the connection from here on
	frontDrops                    // the caller timed out mid-header: close, as net/http does
)

// scanHead waits until the whole request line and header block of the
// next request are in the read buffer, and reads from them whether the
// front serves the request. It errs towards frontHandsOver: anything it is
// unsure of, net/http decides.
func (c *frontConn) scanHead() (head, verdict) {
	o := c.f.opts
	if o.ReadHeaderTimeout > 0 && c.servedOne {
		c.headerDeadline = time.Now().Add(o.ReadHeaderTimeout)
		_ = c.nc.SetReadDeadline(c.headerDeadline)
	}
	limit := frontReadBuffer
	if o.MaxHeaderBytes > 0 && o.MaxHeaderBytes < limit {
		limit = o.MaxHeaderBytes
	}
	s := headScanner{first: !c.servedOne}
	for {
		buf, _ := c.br.Peek(c.br.Buffered())
		if end := s.scan(buf); end > 0 {
			if !s.handOver && end <= limit {
				return s.h, frontServes
			}
			return s.h, frontHandsOver
		}
		if len(buf) >= limit {
			return head{}, frontHandsOver
		}
		if _, err := c.br.Peek(len(buf) + 1); err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return head{}, frontDrops
			}
			// A caller that stops mid-header: net/http gives the
			// answer it would have given.
			return head{}, frontHandsOver
		}
	}
}

// headScanner reads a request's line and header block as it comes in,
// each line once: a caller that sends its header a byte at a time costs
// work in proportion to its length, not to its square.
type headScanner struct {
	first bool // the connection's first request
	off   int  // where the next line starts in the buffer
	// sawRequestLine: the request line is behind off; handOver: the
	// front does not serve the request.
	sawRequestLine, handOver bool
	h                        head
}

// scan reads the whole lines of buf, the buffered bytes of the request,
// past those read already, and returns the offset past the empty line
// that ends the header block, 0 while it has not come. Lines end at "\n",
// an optional "\r" before it dropped, as bufio.Reader.ReadLine and so
// net/textproto read them.
func (s *headScanner) scan(buf []byte) (end int) {
	for s.off < len(buf) {
		i := bytes.IndexByte(buf[s.off:], '\n')
		if i < 0 {
			return 0
		}
		line := trimCR(buf[s.off : s.off+i])
		s.off += i + 1
		if !s.sawRequestLine {
			s.sawRequestLine = true
			if !s.first && string(line) == "PRI * HTTP/2.0" {
				s.h.pri = true
			} else if !frontRequestLine(line) {
				s.handOver = true
			}
			continue
		}
		if len(line) == 0 {
			return s.off
		}
		switch {
		case hasFold(line, "host:"):
			s.h.host = true
		case hasFold(line, "upgrade:"), hasFold(line, "expect:"):
			s.handOver = true
		}
	}
	return 0
}

func trimCR(b []byte) []byte {
	if n := len(b); n > 0 && b[n-1] == '\r' {
		return b[:n-1]
	}
	return b
}

// hasFold reports whether line starts with prefix, ASCII case folded;
// prefix is lower case.
func hasFold(line []byte, prefix string) bool {
	if len(line) < len(prefix) {
		return false
	}
	for i := range len(prefix) {
		if c := line[i]; c|0x20 != prefix[i] && c != prefix[i] {
			return false
		}
	}
	return true
}

// frontRequestLine reports whether the front serves a request with this
// request line: exactly "METHOD SP target SP HTTP/1.1", with a method
// other than CONNECT (and PRI, the h2c preface) and a target in origin
// form ("/..."), whose host is the Host header's, as readRequest checks
// it. Everything else, malformed lines included, is net/http's.
func frontRequestLine(line []byte) bool {
	rest, ok := bytes.CutSuffix(line, []byte(" HTTP/1.1"))
	if !ok {
		return false
	}
	method, target, ok := bytes.Cut(rest, []byte(" "))
	return ok && len(method) > 0 && string(method) != http.MethodConnect && string(method) != "PRI" &&
		len(target) > 0 && target[0] == '/' && bytes.IndexByte(target, ' ') < 0
}

// readRequest parses the request whose header block scanHead found, as
// net/http's server does: http.ReadRequest, then the checks the server
// adds (conn.readRequest in net/http's server.go).
func (c *frontConn) readRequest(h head) (*http.Request, error) {
	req, err := http.ReadRequest(c.br)
	if err != nil {
		return nil, err
	}
	if !h.host && !h.pri {
		return nil, errBadRequest("missing required Host header")
	}
	if !httpguts.ValidHostHeader(req.Host) {
		return nil, errBadRequest("malformed Host header")
	}
	for k, vv := range req.Header {
		if !httpguts.ValidHeaderFieldName(k) {
			return nil, errBadRequest("invalid header name")
		}
		for _, v := range vv {
			if !httpguts.ValidHeaderFieldValue(v) {
				return nil, errBadRequest("invalid header value")
			}
		}
	}
	c.lastPOST = req.Method == http.MethodPost
	c.servedOne = true
	req.RemoteAddr = c.remote
	if h.pri {
		req.Close = true // as net/http's server: closeAfterReply
	}
	return req, nil
}

type errBadRequest string

func (e errBadRequest) Error() string { return string(e) }

// refuse answers a request that could not be read, in net/http's words
// (server.go, conn.serve), and the connection closes. net/http's error
// for a transfer coding it does not know is unexported, hence its name.
func (c *frontConn) refuse(err error) {
	if errors.Is(err, io.EOF) {
		return
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return
	}
	const errorHeaders = "\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n"
	_ = c.nc.SetWriteDeadline(time.Now().Add(time.Second))
	var bad errBadRequest
	switch {
	case errors.As(err, &bad):
		fmt.Fprintf(c.bw, "HTTP/1.1 400 Bad Request: %s%s400 Bad Request: %s", bad, errorHeaders, bad)
	case fmt.Sprintf("%T", err) == "*http.unsupportedTEError":
		fmt.Fprintf(c.bw, "HTTP/1.1 501 Not Implemented%sUnsupported transfer encoding", errorHeaders)
	default:
		fmt.Fprintf(c.bw, "HTTP/1.1 400 Bad Request%s400 Bad Request", errorHeaders)
	}
	_ = c.bw.Flush()
}

// serveRequest runs the handler for req and writes its answer. It
// reports whether the connection is kept for another request.
func (c *frontConn) serveRequest(req *http.Request) (keep bool) {
	ctx, cancel := context.WithCancel(c.ctx)
	c.end.begin(ctx, cancel)
	defer c.end.end()
	// In place, not a copy: the body fills in the trailers of the
	// request it was read with.
	*req = *req.WithContext(ctx)
	_ = c.nc.SetReadDeadline(time.Time{})
	if d := c.f.opts.WriteTimeout; d > 0 {
		_ = c.nc.SetWriteDeadline(time.Now().Add(d))
	}
	var body *frontBody
	if req.Body != nil && req.Body != http.NoBody {
		body = &frontBody{rc: req.Body, c: c, length: req.ContentLength}
		req.Body = body
	}
	w := &frontWriter{c: c, req: req, body: body, contentLength: -1}
	watch := c.watchCaller(body)
	if !c.runHandler(w, req) {
		watch.stop()
		return false
	}
	callerLeft := watch.stop()
	c.end.end() // the handler is done: what it started is over, as with net/http
	w.finish()
	if w.deadlineSet && c.f.opts.WriteTimeout <= 0 {
		_ = c.nc.SetWriteDeadline(time.Time{})
	}
	keep = !w.closeAfter && !callerLeft && !req.Close && !c.f.isClosing()
	if body != nil && !body.done() {
		// The header went out while the handler ran, or the body
		// could not be read to its end.
		keep = keep && body.drain()
		if !keep {
			_ = c.bw.Flush()
			c.lingeringClose()
			return false
		}
	}
	if err := c.bw.Flush(); err != nil {
		return false
	}
	// Idle as soon as the answer is out, so that a shutdown that the
	// caller starts on reading it finds the connection idle.
	return keep && !w.broken && c.setIdle()
}

// runHandler calls the handler, and reports false when it panicked: the
// answer is cut, the connection closes. http.ErrAbortHandler is the
// handler's way to abort an answer (ReverseProxy's, when the upstream's
// body fails midway), and is not logged.
func (c *frontConn) runHandler(w http.ResponseWriter, req *http.Request) (ok bool) {
	defer func() {
		if v := recover(); v != nil {
			if v != http.ErrAbortHandler {
				buf := make([]byte, 64<<10)
				buf = buf[:runtime.Stack(buf, false)]
				c.f.log.Error("panic serving a request", "remote", c.remote, "panic", fmt.Sprint(v), "stack", string(buf))
			}
			ok = false
		}
	}()
	c.f.handler.ServeHTTP(w, req)
	return true
}

// lingeringClose closes the connection after an answer while the caller
// may still be sending a body: it stops writing, reads what comes for a
// moment, then closes. Closing with unread data would reset the
// connection, and the reset can destroy the answer before it is read.
func (c *frontConn) lingeringClose() {
	if cw, ok := c.nc.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
	_ = c.nc.SetReadDeadline(time.Now().Add(lingerAfterClose))
	_, _ = io.Copy(io.Discard, c.nc)
}
