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
	"net/textproto"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
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

	mu      sync.Mutex
	conns   map[*frontConn]struct{}
	closing bool
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
	closing := f.closing
	f.mu.Unlock()
	if closing {
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

func (f *h1Front) isClosing() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.closing
}

func (f *h1Front) newConn(nc net.Conn) *frontConn {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closing {
		return nil
	}
	c := &frontConn{f: f, nc: nc, remote: nc.RemoteAddr().String(), fresh: true}
	c.cr.nc = nc
	c.br = bufio.NewReaderSize(&c.cr, frontReadBuffer)
	c.bw = bufio.NewWriterSize(nc, 4<<10)
	ctx := context.WithValue(context.Background(), http.ServerContextKey, f.srv)
	c.ctx = context.WithValue(ctx, http.LocalAddrContextKey, nc.LocalAddr())
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
	f.closing = true
	if f.ln != nil {
		_ = f.ln.Close()
	}
	if f.done == nil {
		f.done = make(chan struct{})
	}
	done := f.done
	f.closeIdle()
	f.mu.Unlock()
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
		if !c.busy {
			_ = c.nc.Close()
			delete(f.conns, c)
		}
	}
	f.closeDoneIfEmpty()
}

// closeDoneIfEmpty closes done once a shutdown has begun and no
// connection is left. f.mu is held.
func (f *h1Front) closeDoneIfEmpty() {
	if !f.closing || len(f.conns) > 0 || f.done == nil {
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
	f.closing = true
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
	// fresh: no request read yet, so the header deadline runs from
	// the accept, not from the first byte.
	fresh bool
	// fromAccept: the running read deadline is the first request's
	// header deadline.
	fromAccept bool
	// busy is guarded by f.mu: a request is being read or served.
	busy bool
	// lastPOST: RFC 9112 section 2.2 lets a server skip the stray CRLF
	// some clients send after a POST body, as net/http does.
	lastPOST bool
	// servedOne: a request was read; net/http takes a connection it is
	// handed for a new one, and so only the first may be the h2c preface.
	servedOne bool
	// headerDeadline is the running header read's deadline, zero if none.
	headerDeadline time.Time
}

func (c *frontConn) serve() {
	handedOff := false
	defer func() {
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
	if !c.setIdle() {
		return false
	}
	o := c.f.opts
	c.fromAccept = c.fresh
	c.headerDeadline = time.Time{}
	if c.fresh {
		c.fresh = false
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
	if c.fromAccept {
		need = 1
	}
	if _, err := c.br.Peek(need); err != nil {
		return false
	}
	if c.lastPOST {
		peek, _ := c.br.Peek(4)
		_, _ = c.br.Discard(leadingCRLF(peek))
	}
	c.f.mu.Lock()
	defer c.f.mu.Unlock()
	if c.f.closing {
		return false
	}
	c.busy = true
	return true
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
	c.f.mu.Lock()
	defer c.f.mu.Unlock()
	c.busy = false
	return !c.f.closing
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
	if o.ReadHeaderTimeout > 0 && !c.fromAccept {
		c.headerDeadline = time.Now().Add(o.ReadHeaderTimeout)
		_ = c.nc.SetReadDeadline(c.headerDeadline)
	}
	limit := frontReadBuffer
	if o.MaxHeaderBytes > 0 && o.MaxHeaderBytes < limit {
		limit = o.MaxHeaderBytes
	}
	for {
		buf, _ := c.br.Peek(c.br.Buffered())
		if h, end, ok := scanHeadBytes(buf, !c.servedOne); end > 0 {
			if ok && end <= limit {
				return h, frontServes
			}
			return h, frontHandsOver
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

// scanHeadBytes finds the end of the header block that starts buf (the
// offset past its empty line, 0 if buf holds no whole block) and reports
// whether the front serves the request. Lines end at "\n", an optional
// "\r" before it dropped, as bufio.Reader.ReadLine and so net/textproto
// read them.
func scanHeadBytes(buf []byte, first bool) (h head, end int, ok bool) {
	ok = true
	requestLine := true
	for off := 0; off < len(buf); {
		i := bytes.IndexByte(buf[off:], '\n')
		if i < 0 {
			return h, 0, false
		}
		line := buf[off : off+i]
		off += i + 1
		line = trimCR(line)
		if requestLine {
			requestLine = false
			if !first && string(line) == "PRI * HTTP/2.0" {
				h.pri = true
			} else {
				ok = frontRequestLine(line)
			}
			continue
		}
		if len(line) == 0 {
			return h, off, ok
		}
		switch {
		case hasFold(line, "host:"):
			h.host = true
		case hasFold(line, "upgrade:"), hasFold(line, "expect:"):
			ok = false
		}
	}
	return h, 0, false
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
	defer cancel()
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
	w := &frontWriter{c: c, req: req, body: body, header: make(http.Header, 8), contentLength: -1}
	watch := c.watchCaller(cancel, body)
	if !c.runHandler(w, req) {
		watch.stop()
		return false
	}
	callerLeft := watch.stop()
	cancel() // the handler is done: what it started is over, as with net/http
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

// frontBody is a request's body as the handler sees it. Close does not
// read the rest, as http.ReadRequest's body would (a caller could make
// the handler read an endless upload): the front decides after the
// handler what of it to read.
type frontBody struct {
	rc io.ReadCloser
	c  *frontConn
	mu sync.Mutex
	// eof: the body was read to its end; closed: Close was called;
	// watchAtEOF: the caller watch waits for the end of the body.
	eof, closed, watchAtEOF bool
	watch                   *callerWatch
	// length is the request's Content-Length (-1: chunked); read, how
	// much of it the handler read.
	length, read int64
	// failed: a read failed (a broken chunk, a caller gone): the rest of
	// the connection cannot be framed.
	failed bool
}

func (b *frontBody) Read(p []byte) (int, error) {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return 0, http.ErrBodyReadAfterClose
	}
	b.mu.Unlock()
	n, err := b.rc.Read(p)
	b.mu.Lock()
	defer b.mu.Unlock()
	b.read += int64(n)
	if err != nil && err != io.EOF {
		b.failed = true
	}
	if err == io.EOF {
		b.eof = true
		if b.watchAtEOF {
			b.watchAtEOF = false
			b.watch.start()
		}
	}
	return n, err
}

func (b *frontBody) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	return nil
}

// lost reports whether the connection cannot carry another request
// after this body: a read of it failed, or more of it is left unread
// than the front reads after the handler, or, with unknownIsLost (the
// handler still runs, so the rest cannot be read yet to find out), the
// rest of a chunked body is unread. The answer then says Connection:
// close, as net/http's does. b may be nil.
func (b *frontBody) lost(unknownIsLost bool) bool {
	if b == nil {
		return false
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	switch {
	case b.failed:
		return true
	case b.eof:
		return false
	case b.length < 0:
		return unknownIsLost
	}
	return b.length-b.read >= maxDrainBytes
}

func (b *frontBody) done() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.eof
}

// drain reads up to maxDrainBytes of what the handler left of the body,
// and reports whether the body ended within them.
func (b *frontBody) drain() bool {
	if d := b.c.f.opts.ReadHeaderTimeout; d > 0 {
		_ = b.c.nc.SetReadDeadline(time.Now().Add(d))
	}
	n, err := io.CopyN(io.Discard, b.rc, maxDrainBytes+1)
	if err != io.EOF || n > maxDrainBytes {
		return false
	}
	b.mu.Lock()
	b.eof = true
	b.mu.Unlock()
	return true
}

// callerReader is what the connection's bufio.Reader reads from: the
// connection, after the byte the caller watch may have read.
type callerReader struct {
	nc      net.Conn
	mu      sync.Mutex
	byteBuf [1]byte
	hasByte bool
}

func (r *callerReader) Read(p []byte) (int, error) {
	r.mu.Lock()
	if r.hasByte && len(p) > 0 {
		p[0] = r.byteBuf[0]
		r.hasByte = false
		r.mu.Unlock()
		return 1, nil
	}
	r.mu.Unlock()
	return r.nc.Read(p)
}

func (r *callerReader) pending() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.hasByte
}

// callerWatch notices a caller that closes its connection while its
// request is served, and cancels the request's context, as net/http's
// background read does. It starts only once a request has run for
// callerWatchDelay and its body has been read: most requests are over
// before that, and pay only for a timer.
type callerWatch struct {
	c      *frontConn
	cancel context.CancelFunc
	body   *frontBody
	timer  *time.Timer

	mu      sync.Mutex
	stopped bool
	reading bool
	left    bool
	done    chan struct{}
}

var aLongTimeAgo = time.Unix(1, 0)

func (c *frontConn) watchCaller(cancel context.CancelFunc, body *frontBody) *callerWatch {
	w := &callerWatch{c: c, cancel: cancel, body: body}
	if body != nil {
		body.watch = w
	}
	w.timer = time.AfterFunc(callerWatchDelay, w.due)
	return w
}

// due runs when the request has run for callerWatchDelay.
func (w *callerWatch) due() {
	if w.body != nil {
		w.body.mu.Lock()
		defer w.body.mu.Unlock()
		if !w.body.eof {
			w.body.watchAtEOF = true
			return
		}
	}
	w.start()
}

// start reads one byte from the connection in the background: a
// pipelined request's byte, kept for the next read (after those already
// in the buffer, which come first), or the end of a caller that left.
func (w *callerWatch) start() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.stopped || w.reading || w.c.cr.pending() {
		return
	}
	w.reading = true
	w.done = make(chan struct{})
	go w.read()
}

func (w *callerWatch) read() {
	defer close(w.done)
	cr := &w.c.cr
	n, err := w.c.nc.Read(cr.byteBuf[:])
	if n == 1 {
		cr.mu.Lock()
		cr.hasByte = true
		cr.mu.Unlock()
	}
	if err == nil {
		return
	}
	w.mu.Lock()
	stopped := w.stopped
	w.mu.Unlock()
	if stopped && errors.Is(err, os.ErrDeadlineExceeded) {
		return // stop ended the read
	}
	w.left = true
	w.cancel()
}

// stop ends the watch as the handler returns, and reports whether the
// caller left.
func (w *callerWatch) stop() (left bool) {
	w.timer.Stop()
	w.mu.Lock()
	w.stopped = true
	reading, done := w.reading, w.done
	w.mu.Unlock()
	if w.body != nil {
		w.body.mu.Lock()
		w.body.watchAtEOF = false
		w.body.mu.Unlock()
	}
	if !reading {
		return false
	}
	_ = w.c.nc.SetReadDeadline(aLongTimeAgo)
	<-done
	_ = w.c.nc.SetReadDeadline(time.Time{})
	return w.left
}

// frontWriter is the http.ResponseWriter of a request the front serves.
// Like net/http's, it frames an answer by its Content-Length when the
// handler sets one, and otherwise with chunked encoding, unless the
// handler ends before writing frontSmallBody bytes, when it sends a
// Content-Length of what was written (for HEAD too: the length a GET
// would get).
type frontWriter struct {
	c       *frontConn
	req     *http.Request
	body    *frontBody // nil without a body
	header  http.Header
	status  int
	snap    http.Header // the header as at WriteHeader, while unsent
	pending []byte      // body held back while the framing (or type) is undecided
	// sniff: the handler set no Content-Type, and the answer gets the
	// one http.DetectContentType finds in its first bytes, as net/http
	// gives it.
	sniff bool

	contentLength int64 // -1: not set by the handler
	written       int64
	wroteHeader   bool // the handler's status is decided
	sentHeader    bool // the status line and header are in c.bw
	handlerDone   bool
	chunked       bool
	closeAfter    bool
	// broken: the answer is shorter than its Content-Length said; the
	// connection cannot carry another.
	broken bool
	// deadlineSet: the handler set a write deadline, to be cleared
	// after it.
	deadlineSet bool
}

// frontSmallBody is how much of an answer without a Content-Length is
// held back to send it with one; net/http holds 2 KiB.
const frontSmallBody = 2 << 10

// sniffLen is how many bytes http.DetectContentType looks at.
const sniffLen = 512

func (w *frontWriter) Header() http.Header { return w.header }

func (w *frontWriter) WriteHeader(code int) {
	if w.wroteHeader {
		return
	}
	if code < 100 || code > 999 {
		panic(fmt.Sprintf("invalid WriteHeader code %v", code))
	}
	if code < 200 && code != http.StatusSwitchingProtocols {
		w.writeInformational(code)
		return
	}
	w.wroteHeader = true
	w.status = code
	if vv, ok := w.header["Content-Length"]; ok {
		if n, err := strconv.ParseInt(firstValue(vv), 10, 64); err == nil && n >= 0 {
			w.contentLength = n
		} else {
			delete(w.header, "Content-Length")
		}
	}
	w.sniff = w.statusHasBody() && w.header["Content-Type"] == nil && w.header.Get("Content-Encoding") == "" &&
		w.header.Get("Transfer-Encoding") == ""
	if _, set := w.header["Content-Type"]; set {
		w.sniff = false // set to nil: the handler wants none
	}
	if !w.sniff && (w.contentLength >= 0 || !w.statusHasBody() || w.header.Get("Trailer") != "") {
		w.sendHeader(nil)
		return
	}
	w.snap = w.header.Clone()
}

// framingOpen reports whether the framing waits for the body: no
// Content-Length and no trailers, so a short body gets a Content-Length.
func (w *frontWriter) framingOpen() bool {
	return w.contentLength < 0 && w.header.Get("Trailer") == ""
}

func firstValue(vv []string) string {
	if len(vv) == 0 {
		return ""
	}
	return vv[0]
}

// writeInformational sends a 1xx answer (103 Early Hints, say) at once,
// without the framing headers a 1xx must not carry (RFC 9110 8.6).
func (w *frontWriter) writeInformational(code int) {
	writeStatusLine(w.c.bw, code)
	for k, vv := range w.header {
		if k == "Content-Length" || k == "Transfer-Encoding" {
			continue
		}
		for _, v := range vv {
			writeHeaderLine(w.c.bw, k, v)
		}
	}
	_, _ = w.c.bw.WriteString("\r\n")
	_ = w.c.bw.Flush()
}

// statusHasBody reports whether the answer's status allows a body: not
// 204 and 304. A HEAD answer is framed as its GET's, and sends no body.
func (w *frontWriter) statusHasBody() bool {
	return w.status != http.StatusNoContent && w.status != http.StatusNotModified
}

func (w *frontWriter) isHEAD() bool { return w.req.Method == http.MethodHead }

// sendHeader writes the status line and header to the connection's
// buffer, framing decided; first is the body's first bytes, if any.
func (w *frontWriter) sendHeader(first []byte) {
	w.sentHeader = true
	h := w.header
	if w.snap != nil {
		h = w.snap
	}
	if w.sniff && len(first) > 0 {
		h.Set("Content-Type", http.DetectContentType(first))
	}
	if h.Get("Connection") == "close" || w.req.Close || w.c.f.isClosing() || w.body.lost(!w.handlerDone) {
		w.closeAfter = true
	}
	if w.handlerDone && !w.closeAfter {
		w.settleBody()
	}
	delete(h, "Transfer-Encoding")
	switch {
	case w.status == http.StatusNotModified:
		delete(h, "Content-Length")
		delete(h, "Content-Type")
	case !w.statusHasBody():
		delete(h, "Content-Length")
	case h.Get("Trailer") != "" && !w.isHEAD():
		delete(h, "Content-Length")
		w.contentLength = -1
		w.chunked = true
	case w.contentLength < 0:
		delete(h, "Content-Length")
		w.chunked = !w.isHEAD()
	}
	writeStatusLine(w.c.bw, w.status)
	for k, vv := range h {
		if k == "Connection" || strings.HasPrefix(k, http.TrailerPrefix) {
			continue
		}
		for _, v := range vv {
			writeHeaderLine(w.c.bw, k, v)
		}
	}
	if _, ok := h["Date"]; !ok {
		writeHeaderLine(w.c.bw, "Date", httpDate())
	}
	if w.chunked {
		_, _ = w.c.bw.WriteString("Transfer-Encoding: chunked\r\n")
	}
	if w.closeAfter {
		_, _ = w.c.bw.WriteString("Connection: close\r\n")
	}
	_, _ = w.c.bw.WriteString("\r\n")
}

// settleBody decides, before the header of an answer the handler has
// finished goes out, what becomes of the body it left unread: read to
// its end, when that is at most maxDrainBytes, or else the answer says
// Connection: close. So a caller is never told it may send another
// request on a connection that then closes.
func (w *frontWriter) settleBody() {
	if w.body == nil || w.body.done() || w.closeAfter {
		return
	}
	if w.body.lost(false) || !w.body.drain() {
		w.closeAfter = true
	}
}

func writeStatusLine(bw *bufio.Writer, code int) {
	_, _ = bw.WriteString("HTTP/1.1 ")
	var b [3]byte
	_, _ = bw.Write(strconv.AppendInt(b[:0], int64(code), 10))
	_ = bw.WriteByte(' ')
	_, _ = bw.WriteString(http.StatusText(code))
	_, _ = bw.WriteString("\r\n")
}

// headerValueCleaner turns the line breaks a value must not carry into
// spaces, as net/http does when it writes a header.
var headerValueCleaner = strings.NewReplacer("\r\n", " ", "\r", " ", "\n", " ")

func writeHeaderLine(bw *bufio.Writer, k, v string) {
	if !httpguts.ValidHeaderFieldName(k) {
		return
	}
	_, _ = bw.WriteString(k)
	_, _ = bw.WriteString(": ")
	if strings.ContainsAny(v, "\r\n") {
		v = headerValueCleaner.Replace(v)
	}
	_, _ = bw.WriteString(textproto.TrimString(v))
	_, _ = bw.WriteString("\r\n")
}

func (w *frontWriter) Write(p []byte) (int, error) {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if !w.statusHasBody() {
		return 0, http.ErrBodyNotAllowed
	}
	if len(p) == 0 {
		return 0, nil
	}
	if w.isHEAD() {
		// Counted for the Content-Length, never sent; the first bytes
		// kept to find the type.
		w.written += int64(len(p))
		if !w.sentHeader {
			if room := sniffLen - len(w.pending); room > 0 {
				w.pending = append(w.pending, p[:min(room, len(p))]...)
			}
			if w.written > frontSmallBody || !w.framingOpen() {
				w.sendHeader(w.pending)
			}
		}
		return len(p), nil
	}
	if !w.sentHeader {
		if !w.framingOpen() {
			w.sendHeader(p)
		} else {
			if len(w.pending)+len(p) <= frontSmallBody {
				w.pending = append(w.pending, p...)
				w.written += int64(len(p))
				return len(p), nil
			}
			first := w.pending
			if len(first) == 0 {
				first = p
			}
			w.sendHeader(first)
			if err := w.writeBody(w.pending); err != nil {
				return 0, err
			}
			w.pending = nil
		}
	}
	if w.contentLength >= 0 && w.written+int64(len(p)) > w.contentLength {
		room := p[:w.contentLength-w.written]
		if err := w.writeBody(room); err != nil {
			return 0, err
		}
		w.written += int64(len(room))
		return len(room), http.ErrContentLength
	}
	w.written += int64(len(p))
	return len(p), w.writeBody(p)
}

func (w *frontWriter) writeBody(p []byte) error {
	if len(p) == 0 {
		return nil
	}
	if w.chunked {
		var b [16]byte
		_, _ = w.c.bw.Write(strconv.AppendInt(b[:0], int64(len(p)), 16))
		_, _ = w.c.bw.WriteString("\r\n")
		if _, err := w.c.bw.Write(p); err != nil {
			return err
		}
		_, err := w.c.bw.WriteString("\r\n")
		return err
	}
	_, err := w.c.bw.Write(p)
	return err
}

// Flush sends what is buffered; an answer without a Content-Length is
// chunked from then on.
func (w *frontWriter) Flush() { _ = w.FlushError() }

// FlushError is Flush, with the error (http.ResponseController uses it).
func (w *frontWriter) FlushError() error {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if !w.sentHeader {
		w.sendHeader(w.pending)
		if !w.isHEAD() {
			if err := w.writeBody(w.pending); err != nil {
				return err
			}
		}
		w.pending = nil
	}
	return w.c.bw.Flush()
}

// SetReadDeadline is for http.ResponseController: BODY_IDLE_TIMEOUT.
func (w *frontWriter) SetReadDeadline(t time.Time) error { return w.c.nc.SetReadDeadline(t) }

// SetWriteDeadline is for http.ResponseController; the deadline ends
// with the request.
func (w *frontWriter) SetWriteDeadline(t time.Time) error {
	w.deadlineSet = true
	return w.c.nc.SetWriteDeadline(t)
}

// EnableFullDuplex is for http.ResponseController: the front lets a
// handler read the body after it started the answer already.
func (w *frontWriter) EnableFullDuplex() error { return nil }

// finish completes the answer after the handler returned.
func (w *frontWriter) finish() {
	w.handlerDone = true
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if !w.sentHeader {
		// Only an answer that may have a body waits with its header.
		n := w.written
		if w.framingOpen() && (n > 0 || !w.isHEAD()) {
			w.snap.Set("Content-Length", strconv.FormatInt(n, 10))
			w.contentLength = n
		}
		w.sendHeader(w.pending)
		if !w.isHEAD() {
			_ = w.writeBody(w.pending)
		}
		w.pending = nil
	}
	switch {
	case w.chunked:
		_, _ = w.c.bw.WriteString("0\r\n")
		w.writeTrailers()
		_, _ = w.c.bw.WriteString("\r\n")
	case w.contentLength >= 0 && w.written < w.contentLength && w.statusHasBody() && !w.isHEAD():
		w.broken = true
	}
}

// writeTrailers writes the trailers the handler announced in its Trailer
// header and set after the body, and those set with http.TrailerPrefix.
func (w *frontWriter) writeTrailers() {
	for _, announced := range w.header.Values("Trailer") {
		for k := range strings.SplitSeq(announced, ",") {
			k = http.CanonicalHeaderKey(strings.TrimSpace(k))
			if !httpguts.ValidTrailerHeader(k) {
				continue
			}
			for _, v := range w.header[k] {
				writeHeaderLine(w.c.bw, k, v)
			}
		}
	}
	for k, vv := range w.header {
		if name, ok := strings.CutPrefix(k, http.TrailerPrefix); ok {
			for _, v := range vv {
				writeHeaderLine(w.c.bw, name, v)
			}
		}
	}
}

// httpDate is the Date header's value, formatted once a second.
func httpDate() string {
	now := time.Now()
	sec := now.Unix()
	dateCache.mu.Lock()
	defer dateCache.mu.Unlock()
	if dateCache.sec != sec {
		dateCache.sec = sec
		dateCache.value = now.UTC().Format(http.TimeFormat)
	}
	return dateCache.value
}

var dateCache struct {
	mu    sync.Mutex
	sec   int64
	value string
}

// handoffListener is the listener of the net/http server that serves the
// connections the front hands over.
type handoffListener struct {
	conns     chan net.Conn
	closed    chan struct{}
	closeOnce sync.Once
	addr      net.Addr
}

func newHandoffListener(addr net.Addr) *handoffListener {
	return &handoffListener{conns: make(chan net.Conn), closed: make(chan struct{}), addr: addr}
}

func (l *handoffListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

// give hands c to net/http, and reports false when the server is closed
// and c is still the caller's.
func (l *handoffListener) give(c net.Conn) bool {
	select {
	case l.conns <- c:
		return true
	case <-l.closed:
		return false
	}
}

func (l *handoffListener) Close() error {
	l.closeOnce.Do(func() { close(l.closed) })
	return nil
}

func (l *handoffListener) Addr() net.Addr { return l.addr }

// replayConn is a connection handed to net/http: reads return first the
// bytes the front had buffered.
type replayConn struct {
	net.Conn
	r io.Reader
	// headerDeadline is when the header of the request being read must
	// be in, by the front's clock: net/http, which takes the connection
	// for a new one, would start a ReadHeaderTimeout of its own, and a
	// slow caller would be held twice as long. Its deadlines are capped
	// at this one until it clears them, the header read.
	mu             sync.Mutex
	headerDeadline time.Time
}

func (c *replayConn) Read(p []byte) (int, error) { return c.r.Read(p) }

func (c *replayConn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	switch {
	case c.headerDeadline.IsZero():
	case t.IsZero():
		c.headerDeadline = time.Time{}
	case t.After(c.headerDeadline):
		t = c.headerDeadline
	}
	c.mu.Unlock()
	return c.Conn.SetReadDeadline(t)
}

func (c *replayConn) SetDeadline(t time.Time) error {
	if err := c.SetReadDeadline(t); err != nil {
		return err
	}
	return c.Conn.SetWriteDeadline(t)
}

// CloseWrite lets net/http half-close, as it does on a *net.TCPConn.
func (c *replayConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return c.Conn.Close()
}
