package proxy

import (
	"context"
	"math"
	"net/http"
	"strconv"
	"time"
)

// gRPC status codes the sidecar answers with (google.golang.org/grpc/codes).
const (
	grpcDeadlineExceeded = 4
	grpcPermissionDenied = 7
	grpcUnimplemented    = 12
	grpcInternal         = 13
	grpcUnavailable      = 14
	grpcUnauthenticated  = 16
)

// grpcStatus is the gRPC status an answer of HTTP status would be: the
// mapping of gRPC's "HTTP to gRPC Status Code Mapping", but 504, which is
// the deadline the sidecar enforced, and 408, a request that stalled.
func grpcStatus(status int) int {
	switch status {
	case http.StatusUnauthorized:
		return grpcUnauthenticated
	case http.StatusForbidden:
		return grpcPermissionDenied
	case http.StatusNotFound, http.StatusMethodNotAllowed:
		return grpcUnimplemented
	case http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusTooManyRequests:
		return grpcUnavailable
	case http.StatusGatewayTimeout, http.StatusRequestTimeout:
		return grpcDeadlineExceeded
	}
	return grpcInternal
}

// writeGRPCError answers a gRPC request the gRPC way: HTTP 200 and a
// trailers-only response carrying grpc-status and grpc-message, which every
// gRPC client reads as the call's status. Headers already set (such as
// WWW-Authenticate) go out with it.
func writeGRPCError(w http.ResponseWriter, status int, message string) {
	h := w.Header()
	h.Set("Content-Type", "application/grpc")
	h.Set("Grpc-Status", strconv.Itoa(grpcStatus(status)))
	h.Set("Grpc-Message", encodeGRPCMessage(message))
	w.WriteHeader(http.StatusOK)
}

// encodeGRPCMessage percent-encodes a grpc-message value as the gRPC
// protocol asks: every byte outside printable ASCII (0x20-0x7E), and "%"
// itself, as %XX.
func encodeGRPCMessage(s string) string {
	const hex = "0123456789ABCDEF"
	n := 0
	for i := range len(s) {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '%' {
			n++
		}
	}
	if n == 0 {
		return s
	}
	b := make([]byte, 0, len(s)+2*n)
	for i := range len(s) {
		c := s[i]
		if c < 0x20 || c > 0x7e || c == '%' {
			b = append(b, '%', hex[c>>4], hex[c&0xf])
			continue
		}
		b = append(b, c)
	}
	return string(b)
}

// grpcTimeout parses a grpc-timeout header: at most eight digits and a
// unit, H, M, S, m (milli), u (micro) or n (nano).
func grpcTimeout(v string) (time.Duration, bool) {
	if len(v) < 2 || len(v) > 9 {
		return 0, false
	}
	var n int64 // at most eight digits: no overflow
	for i := range len(v) - 1 {
		c := v[i]
		if c < '0' || c > '9' { // strconv.ParseInt would take a sign
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	var unit time.Duration
	switch v[len(v)-1] {
	case 'H':
		unit = time.Hour
	case 'M':
		unit = time.Minute
	case 'S':
		unit = time.Second
	case 'm':
		unit = time.Millisecond
	case 'u':
		unit = time.Microsecond
	case 'n':
		unit = time.Nanosecond
	default:
		return 0, false
	}
	if n > math.MaxInt64/int64(unit) {
		// 99999999H is past what a time.Duration holds (292 years):
		// no deadline at all, not one in the past.
		return 0, false
	}
	return time.Duration(n) * unit, true
}

// WithGRPCDeadline bounds a gRPC request's call to the app or upstream by
// its grpc-timeout, so that the sidecar answers DEADLINE_EXCEEDED when the
// caller's deadline passes and the app or upstream stops working on it.
// Call cancel when the request is done.
func WithGRPCDeadline(r *http.Request) (*http.Request, context.CancelFunc) {
	d, ok := grpcTimeout(r.Header.Get("Grpc-Timeout"))
	if !ok || !IsGRPC(r) {
		return r, func() {}
	}
	ctx, cancel := context.WithTimeout(r.Context(), d)
	return r.WithContext(ctx), cancel
}
