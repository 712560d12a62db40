package outbound

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"

	"go.opentelemetry.io/otel/trace"
)

// retryTransport sends a call once more with a new token when the
// upstream answers 401 to the first and the body can be replayed. It sits
// under ReverseProxy, which keeps streaming both ways.
type retryTransport struct {
	base http.RoundTripper
	log  *slog.Logger
	dpop *dpopSigner // nil: DPoP is off
}

var errNoToken = errors.New("outbound: refusing to send a call without a token")

func (t *retryTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	a, _ := req.Context().Value(attemptKey{}).(*attempt)
	if a == nil {
		if req.Body != nil {
			_ = req.Body.Close()
		}
		return nil, errNoToken
	}
	if a.signErr != nil {
		return nil, a.signErr
	}
	resp, err := t.base.RoundTrip(req)
	if err != nil {
		return resp, err
	}
	if a.entry.dpop && t.dpop.remember(req.URL, resp) && upstreamAskedForNonce(resp) {
		return t.withNonce(req, a, resp)
	}
	if !refusedToken(resp, a.grpc) {
		return resp, nil
	}
	ctx := req.Context()
	if !a.tokens.refused(a.entry.tok) {
		t.log.DebugContext(ctx, "upstream refused the token; a token was dropped less than refusalCooldown ago, not retried")
		return resp, nil
	}
	body, ok := a.replay()
	if !ok {
		t.log.DebugContext(ctx, "upstream refused the token; the body cannot be replayed, not retried")
		return resp, nil
	}
	e, err := a.tokens.get(a.ctx)
	if err != nil {
		t.log.DebugContext(ctx, "upstream answered 401; no new token to retry with", "error", err.Error())
		return resp, nil // the app sees the upstream's own answer
	}
	discard(resp)
	trace.SpanFromContext(ctx).AddEvent("the upstream refused the token; sent again with a new one")
	retry, err := t.again(req, e, body)
	if err != nil {
		return nil, err
	}
	return t.resend(retry, e)
}

// withNonce sends req once more, with a proof carrying the nonce the
// upstream just gave (RFC 9449 9), when its body can be replayed.
func (t *retryTransport) withNonce(req *http.Request, a *attempt, resp *http.Response) (*http.Response, error) {
	body, ok := a.replay()
	if !ok {
		t.log.DebugContext(req.Context(), "the upstream asked for a DPoP nonce; the body cannot be replayed, not retried")
		return resp, nil
	}
	discard(resp)
	retry, err := t.again(req, a.entry, body)
	if err != nil {
		return nil, err
	}
	return t.resend(retry, a.entry)
}

// resend sends retry, made by again with e's token, and keeps the nonce
// its answer gives, as for the first attempt: a server that moves to a new
// nonce says so in the answer it accepts.
func (t *retryTransport) resend(retry *http.Request, e *entry) (*http.Response, error) {
	resp, err := t.base.RoundTrip(retry)
	if err == nil && e.dpop {
		t.dpop.remember(retry.URL, resp)
	}
	return resp, err
}

// again is req to send once more, with e's token (and a new proof for it)
// and body.
func (t *retryTransport) again(req *http.Request, e *entry, body []byte) (*http.Request, error) {
	retry := req.Clone(req.Context())
	if err := authorize(retry, e, t.dpop); err != nil {
		return nil, err
	}
	retry.Body, retry.GetBody = nil, nil
	if body != nil {
		retry.Body = io.NopCloser(bytes.NewReader(body))
		retry.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
	}
	return retry, nil
}

// authorize puts e's token on r, and for a DPoP-bound token a proof of
// its own for r's method and URL.
func authorize(r *http.Request, e *entry, d *dpopSigner) error {
	r.Header.Set("Authorization", e.header)
	if !e.dpop {
		return nil
	}
	proof, err := d.proof(r.Method, r.URL, e.tok.AccessToken)
	if err != nil {
		return err
	}
	r.Header.Set("DPoP", proof)
	return nil
}

// refusedToken reports whether resp refuses the call's token: HTTP 401, or,
// for gRPC, "unauthenticated" (grpc-status 16) in a trailers-only answer,
// HTTP 200 with the status in its headers, as gRPC servers refuse a call
// before running it. A status in the trailers comes after the answer has
// begun, too late to try again.
func refusedToken(resp *http.Response, grpc bool) bool {
	if resp.StatusCode == http.StatusUnauthorized {
		return true
	}
	return grpc && resp.StatusCode == http.StatusOK && resp.Header.Get("Grpc-Status") == "16"
}

// discard drains a little of resp's body, so the connection can be reused,
// and closes it.
func discard(resp *http.Response) {
	_, _ = io.CopyN(io.Discard, resp.Body, 64<<10)
	_ = resp.Body.Close()
}

// replay returns the whole request body for a retry (nil if there was
// none) and whether it can be had within maxReplayBytes.
func (a *attempt) replay() ([]byte, bool) {
	if a.body == nil {
		return nil, true
	}
	// A gRPC call's request stream may stay open until the call is
	// answered (client streaming, bidi): waiting for its end would hold
	// the refusal back until the stream idles out. Only a stream the first
	// attempt read to its end, as a unary call's is by the time the
	// upstream answers, is sent again.
	if a.grpc && !a.body.ended() {
		return nil, false
	}
	return a.body.replay()
}

// replayBody passes a request body through while keeping a copy of up to
// limit bytes.
type replayBody struct {
	mu       sync.Mutex // the first attempt's writer may still be reading
	src      io.Reader
	limit    int
	buf      []byte
	over     bool // more than limit bytes went through: no replay
	eof      bool
	detached bool // replay took over: the first attempt reads no more
	// done is eof for those that must not wait for mu, which a Read
	// blocked on the app's stream holds.
	done atomic.Bool
}

var errDetached = errors.New("outbound: request body taken over by the retry")

// newReplayBody wraps src. A body announced larger than limit is never
// copied (it could not be replayed anyway); one announced within it gets
// its copy allocated once, at its size, instead of grown.
func newReplayBody(src io.Reader, limit int, contentLength int64) *replayBody {
	b := &replayBody{src: src, limit: limit}
	switch {
	case contentLength > int64(limit):
		b.over = true
	case contentLength > 0:
		b.buf = make([]byte, 0, contentLength)
	}
	return b
}

func (b *replayBody) Read(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.detached {
		return 0, errDetached
	}
	n, err := b.src.Read(p)
	b.keep(p[:n])
	if err == io.EOF {
		b.eof = true
		b.done.Store(true)
	}
	return n, err
}

// Close does nothing: the body belongs to ReverseProxy, which closes it
// when the call is over, and the retry may still need to read the rest.
func (b *replayBody) Close() error { return nil }

func (b *replayBody) keep(p []byte) {
	if b.over {
		return
	}
	if len(b.buf)+len(p) > b.limit {
		b.over, b.buf = true, nil
		return
	}
	b.buf = append(b.buf, p...)
}

// ended reports whether the first attempt read the body to its end. It
// does not wait for a Read under way.
func (b *replayBody) ended() bool { return b.done.Load() }

// replay stops the first attempt from reading and returns the whole body,
// reading what the first attempt left unread: an upstream may answer 401
// before it has read the body.
func (b *replayBody) replay() ([]byte, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.detached = true
	if !b.over && !b.eof {
		rest, err := io.ReadAll(io.LimitReader(b.src, int64(b.limit-len(b.buf))+1))
		if err != nil {
			return nil, false
		}
		b.keep(rest)
		b.eof = true
	}
	if b.over {
		return nil, false
	}
	return b.buf, true
}
