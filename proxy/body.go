package proxy

import (
	"errors"
	"io"
	"net/http"
	"os"
	"time"
)

// BoundBodyIdle makes a read of r's body that waits longer than idle for
// the next bytes fail, so that a caller who announces a body and sends it
// slowly, or not at all, cannot hold the request, and what it holds, for
// ever. The bound is on each wait, not on the whole body: a large upload
// that keeps moving is never cut off. Once the body has been read to its
// end the connection's read deadline is cleared again, as net/http then
// reads from the connection to notice a caller that goes away.
func BoundBodyIdle(w http.ResponseWriter, r *http.Request, idle time.Duration) {
	if idle <= 0 || r.Body == nil || r.Body == http.NoBody {
		return
	}
	r.Body = &idleBody{ReadCloser: r.Body, rc: http.NewResponseController(w), idle: idle}
}

type idleBody struct {
	io.ReadCloser
	rc   *http.ResponseController
	idle time.Duration
	done bool
}

// ErrBodyIdle is the error a body read gets when the caller sent nothing
// for longer than the bound.
var ErrBodyIdle = errors.New("proxy: the request body stalled")

func (b *idleBody) Read(p []byte) (int, error) {
	if b.done {
		return b.ReadCloser.Read(p)
	}
	_ = b.rc.SetReadDeadline(time.Now().Add(b.idle))
	n, err := b.ReadCloser.Read(p)
	switch {
	case err == io.EOF:
		b.done = true
		_ = b.rc.SetReadDeadline(time.Time{})
	case errors.Is(err, os.ErrDeadlineExceeded):
		err = ErrBodyIdle
	}
	return n, err
}
