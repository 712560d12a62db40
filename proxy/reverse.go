package proxy

import (
	"context"
	"encoding/hex"
	"errors"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"

	"github.com/authsidecar/authsidecar/internal/redact"
)

// RequestIDHeader carries a request's id from the caller through the
// sidecar to the next hop, so that logs on both sides can be joined.
const RequestIDHeader = "X-Request-Id"

// ReverseProxyOptions configure NewReverseProxy.
type ReverseProxyOptions struct {
	Transport http.RoundTripper
	// KeepHost sends the caller's Host header on instead of the target's;
	// right for an app behind the sidecar, wrong for a remote upstream.
	KeepHost bool
	// Rewrite, when set, runs after the common rewriting, to add headers.
	Rewrite func(*httputil.ProxyRequest)
	Logger  *slog.Logger
}

// NewReverseProxy returns a ReverseProxy to target that sets the
// X-Forwarded headers (dropping the caller's copies: they cannot be
// trusted), keeps or creates X-Request-Id, removes hop-by-hop headers and
// ErrorHeader from answers, and answers 502 with a JSON body when the
// target cannot be reached.
func NewReverseProxy(target *url.URL, opts ReverseProxyOptions) *ReverseProxy {
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	rewrite := func(pr *httputil.ProxyRequest) {
		pr.SetURL(target)
		if opts.KeepHost {
			pr.Out.Host = pr.In.Host
		}
		pr.SetXForwarded()
		EnsureRequestID(pr.Out.Header)
		if opts.Rewrite != nil {
			opts.Rewrite(pr)
		}
	}
	errorHandler := func(w http.ResponseWriter, r *http.Request, err error) {
		if errors.Is(err, ErrBodyIdle) || bodyStalled(r) {
			logger.Debug("request body stalled", "error", err.Error())
			WriteError(w, r, http.StatusRequestTimeout, "request_timeout", "the request body stalled")
			return
		}
		markUpstreamFailed(w)
		if errors.Is(err, context.Canceled) && r.Context().Err() != nil {
			// The caller left; nobody reads the answer.
			w.WriteHeader(499)
			return
		}
		if timedOut(err, r) {
			logger.WarnContext(r.Context(), "upstream did not answer in time", "upstream", redact.ParsedURL(target), "error", err.Error())
			WriteError(w, r, http.StatusGatewayTimeout, "upstream_timeout", "the upstream did not answer in time")
			return
		}
		logger.WarnContext(r.Context(), "upstream unreachable", "upstream", redact.ParsedURL(target), "error", err.Error())
		WriteError(w, r, http.StatusBadGateway, "upstream_unavailable", "the upstream could not be reached")
	}
	transport := opts.Transport
	if transport == nil {
		transport = http.DefaultTransport
	}
	return &ReverseProxy{
		transport: transport, rewrite: rewrite, errorHandler: errorHandler, logger: logger,
		slow: &httputil.ReverseProxy{
			Rewrite:        rewrite,
			Transport:      transport,
			ModifyResponse: StripErrorHeader,
			BufferPool:     copyBuffers,
			// FlushInterval stays 0: httputil already flushes at once for
			// server-sent events and bodies of unknown length, and flushing
			// every write of a sized body costs a syscall for nothing.
			ErrorLog:     slog.NewLogLogger(logger.Handler(), slog.LevelDebug),
			ErrorHandler: errorHandler,
		},
	}
}

// timedOut reports whether the round trip failed because an answer took
// too long: the caller's deadline (grpc-timeout) passed, or the
// transport's ResponseHeaderTimeout (INBOUND_UPSTREAM_TIMEOUT,
// ROUTE_<NAME>_TIMEOUT) did. A dial or a TLS handshake that timed out is
// not: the upstream could not be reached, a 502.
func timedOut(err error, r *http.Request) bool {
	if errors.Is(err, context.DeadlineExceeded) && r.Context().Err() != nil {
		return true
	}
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return false
	}
	// Nor a TLS handshake that did not end in time: the upstream was
	// never spoken to. http.Transport's error for it is unexported.
	if strings.Contains(err.Error(), "TLS handshake timeout") {
		return false
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// copyBuffers recycles the 32 KiB buffers ReverseProxy copies bodies
// through; without them each request allocates one, a large object that
// keeps the garbage collector and scavenger busy under load.
var copyBuffers = &bufferPool{pool: sync.Pool{New: func() any { return new([32 << 10]byte) }}}

type bufferPool struct{ pool sync.Pool }

func (b *bufferPool) Get() []byte { return b.pool.Get().(*[32 << 10]byte)[:] }

func (b *bufferPool) Put(buf []byte) {
	if cap(buf) == 32<<10 {
		b.pool.Put((*[32 << 10]byte)(buf[:32<<10]))
	}
}

// EnsureRequestID keeps the caller's X-Request-Id or sets a new one, so
// that the sidecar's log lines and the next hop's carry the same id. A
// caller's id is kept only if it looks like one: at most maxRequestID
// visible ASCII characters, else every log line would carry whatever, up
// to the header cap, a caller put there.
func EnsureRequestID(h http.Header) {
	if !validRequestID(h.Values(RequestIDHeader)) {
		h.Set(RequestIDHeader, newRequestID())
	}
}

// maxRequestID bounds a caller's request id: a UUID is 36 characters.
const maxRequestID = 128

func validRequestID(values []string) bool {
	if len(values) != 1 || values[0] == "" || len(values[0]) > maxRequestID {
		return false
	}
	for i := range len(values[0]) {
		if c := values[0][i]; c < 0x21 || c > 0x7e {
			return false
		}
	}
	return true
}

// newRequestID returns 128 random bits in hex. It needs uniqueness, not
// secrecy, so math/rand/v2's per-goroutine ChaCha8 source does, without
// the system call of crypto/rand.
func newRequestID() string {
	var b [16]byte
	a, c := rand.Uint64(), rand.Uint64()
	for i := range 8 {
		b[i] = byte(a >> (8 * i))
		b[8+i] = byte(c >> (8 * i))
	}
	return hex.EncodeToString(b[:])
}
