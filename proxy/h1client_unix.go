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
func peekClosed(c net.Conn) bool {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return false
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	closed := false
	_ = raw.Read(func(fd uintptr) bool {
		var b [1]byte
		n, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		switch {
		case err == nil: // n == 0: the end; n > 0: bytes unasked for
			closed = true
		case errors.Is(err, syscall.EAGAIN), errors.Is(err, syscall.EWOULDBLOCK), errors.Is(err, syscall.EINTR):
		default:
			closed = true
		}
		_ = n
		return true
	})
	return closed
}

// isReset reports whether err is the peer's reset of the connection.
func isReset(err error) bool { return errors.Is(err, syscall.ECONNRESET) }
