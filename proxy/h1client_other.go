//go:build !unix

package proxy

import "net"

// canPeek is false: without a look at an idle connection, bytes the app
// sent past an answer's end (a body longer than its Content-Length, a
// HEAD answered with a body) would be read as the next request's answer;
// RoundTrip leaves every request to http.Transport, whose reader watches
// idle connections.
const canPeek = false

// peekClosed cannot look without blocking here: a closed connection is
// found when the request fails, and a request that can be sent again is.
func peekClosed(net.Conn) bool { return false }

type peeker struct{}

func newPeeker(net.Conn) *peeker { return nil }

func (*peeker) closed() bool { return false }

// isReset: a reset is an error like any other here.
func isReset(error) bool { return false }
