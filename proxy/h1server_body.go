package proxy

import (
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"sync"
	"time"
)

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
// before that, and pay only for a timer's reset.
//
// A connection has one, and one timer, for all its requests. A timer
// that fired for a request just before it ended may find the next one
// running: it then starts that one's watch early, which is harmless.
type callerWatch struct {
	c     *frontConn
	timer *time.Timer

	mu      sync.Mutex
	body    *frontBody
	stopped bool
	reading bool
	left    bool
	done    chan struct{}
}

var aLongTimeAgo = time.Unix(1, 0)

// watchCaller starts the connection's watch for the request whose body
// is body (nil: none).
func (c *frontConn) watchCaller(body *frontBody) *callerWatch {
	w := &c.watch
	w.mu.Lock()
	w.body, w.stopped, w.reading, w.left, w.done = body, false, false, false, nil
	w.mu.Unlock()
	if body != nil {
		body.watch = w
	}
	if w.timer == nil {
		w.c = c
		w.timer = time.AfterFunc(callerWatchDelay, w.due)
	} else {
		w.timer.Reset(callerWatchDelay)
	}
	return w
}

// due runs when the request has run for callerWatchDelay.
func (w *callerWatch) due() {
	w.mu.Lock()
	body, stopped := w.body, w.stopped
	w.mu.Unlock()
	if stopped {
		return
	}
	if body != nil {
		body.mu.Lock()
		defer body.mu.Unlock()
		if !body.eof {
			body.watchAtEOF = true
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
	w.c.end.end()
}

// stop ends the watch as the handler returns, and reports whether the
// caller left.
func (w *callerWatch) stop() (left bool) {
	w.timer.Stop()
	w.mu.Lock()
	w.stopped = true
	reading, done, body := w.reading, w.done, w.body
	w.mu.Unlock()
	if body != nil {
		body.mu.Lock()
		body.watchAtEOF = false
		body.mu.Unlock()
	}
	if !reading {
		return false
	}
	_ = w.c.nc.SetReadDeadline(aLongTimeAgo)
	<-done
	_ = w.c.nc.SetReadDeadline(time.Time{})
	return w.left
}
