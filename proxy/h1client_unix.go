//go:build unix

package proxy

import (
	"errors"
	"net"
	"syscall"
)

// canPeek: peekClosed can look at an idle connection.
const canPeek = true

// peekClosed reports whether c's peer has closed it, or sent bytes, while
// it sat idle: one non-blocking peek at the socket, which leaves whatever
// it sees in place.
func peekClosed(c net.Conn) bool { return newPeeker(c).closed() }

// peeker is peekClosed for one connection, made once: the raw connection
// and the function the look runs would otherwise be allocated per look.
type peeker struct {
	raw  syscall.RawConn
	look func(fd uintptr) bool
	seen bool // what the last look saw: the end, bytes, or an error
}

func newPeeker(c net.Conn) *peeker {
	p := &peeker{}
	if sc, ok := c.(syscall.Conn); ok {
		p.raw, _ = sc.SyscallConn()
	}
	p.look = p.peek
	return p
}

func (p *peeker) closed() bool {
	if p == nil || p.raw == nil {
		return false
	}
	p.seen = false
	_ = p.raw.Read(p.look)
	return p.seen
}

func (p *peeker) peek(fd uintptr) bool {
	var b [1]byte
	_, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
	switch {
	case err == nil: // 0 bytes: the end; more: bytes unasked for
		p.seen = true
	case errors.Is(err, syscall.EAGAIN), errors.Is(err, syscall.EWOULDBLOCK), errors.Is(err, syscall.EINTR):
	default:
		p.seen = true
	}
	return true
}

// isReset reports whether err is the peer's reset of the connection.
func isReset(err error) bool { return errors.Is(err, syscall.ECONNRESET) }
