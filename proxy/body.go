package proxy

import (
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// BoundBodyIdle returns r with a body whose read fails when it waits longer
// than idle for the next bytes, so that a caller who announces a body and sends it
// slowly, or not at all, cannot hold the request, and what it holds, for
// ever. The bound is on each wait, not on the whole body: a large upload
// that keeps moving is never cut off. Once the body has been read to its
// end the connection's read deadline is cleared again, as net/http then
// reads from the connection to notice a caller that goes away.
//
// Call stop before the handler returns (defer it): a transport may go on
// reading the body after the answer came (an upstream that answered before
// the upload ended), and w, pooled or finished, must not be touched then.
// Reads after stop are not bounded; the server ends the body soon after
// the handler returns.
func BoundBodyIdle(w http.ResponseWriter, r *http.Request, idle time.Duration) (_ *http.Request, stop func()) {
	if idle <= 0 || r.Body == nil || r.Body == http.NoBody {
		return r, func() {}
	}
	b := &idleBody{ReadCloser: r.Body, rc: http.NewResponseController(w), idle: idle}
	r = r.WithContext(context.WithValue(r.Context(), idleBodyKey{}, b))
	r.Body = b
	return r, b.stop
}

type idleBodyKey struct{}

type idleBody struct {
	io.ReadCloser
	idle time.Duration
	done bool
	// mu guards rc, nil once the handler is done with the writer.
	mu sync.Mutex
	rc *http.ResponseController
	// deadline is when the read under way times out, in Unix
	// nanoseconds; it stays after a read that timed out, and is 0
	// between reads: a read that returned is no stall, however long the
	// transport then takes to ask for more (an app that stopped reading).
	deadline atomic.Int64
}

// bodyStalled reports whether r's body read stalled past its bound. The
// timed-out read also ends the connection's context, and the proxy may
// see that (context.Canceled) before the read returns ErrBodyIdle.
func bodyStalled(r *http.Request) bool {
	b, ok := r.Context().Value(idleBodyKey{}).(*idleBody)
	if !ok {
		return false
	}
	d := b.deadline.Load()
	return d != 0 && time.Now().UnixNano() >= d
}

// ErrBodyIdle is the error a body read gets when the caller sent nothing
// for longer than the bound.
var ErrBodyIdle = errors.New("proxy: the request body stalled")

func (b *idleBody) Read(p []byte) (int, error) {
	if b.done {
		return b.ReadCloser.Read(p)
	}
	deadline := time.Now().Add(b.idle)
	b.deadline.Store(deadline.UnixNano())
	b.setReadDeadline(deadline)
	n, err := b.ReadCloser.Read(p)
	switch {
	case err == io.EOF:
		b.done = true
		b.deadline.Store(0)
		b.setReadDeadline(time.Time{})
	case errors.Is(err, os.ErrDeadlineExceeded):
		err = ErrBodyIdle
	default:
		b.deadline.Store(0)
	}
	return n, err
}

// setReadDeadline sets the connection's read deadline while the handler
// still has the writer.
func (b *idleBody) setReadDeadline(t time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.rc != nil {
		_ = b.rc.SetReadDeadline(t)
	}
}

// stop lets go of the writer: see BoundBodyIdle.
func (b *idleBody) stop() {
	b.mu.Lock()
	b.rc = nil
	b.mu.Unlock()
}
