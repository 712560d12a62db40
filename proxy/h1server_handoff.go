package proxy

import (
	"io"
	"net"
	"sync"
	"time"
)

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
