package proxy

import (
	"net/http"
	"sync"
)

// StatusWriter records what a handler answered, for metrics and access
// logs: the status of the response (the first final one: a later
// WriteHeader is ignored by net/http too) and whether the sidecar, not the
// app or upstream, made the answer. Writers are pooled: one per request
// would be an allocation on the hot path.
type StatusWriter struct {
	http.ResponseWriter
	status         int
	upstreamFailed bool
	errorCode      string
}

var statusWriters = sync.Pool{New: func() any { return new(StatusWriter) }}

// NewStatusWriter returns a pooled writer over w; give it back with
// Release once the response is done.
func NewStatusWriter(w http.ResponseWriter) *StatusWriter {
	sw := statusWriters.Get().(*StatusWriter)
	*sw = StatusWriter{ResponseWriter: w}
	return sw
}

// Release returns the writer to the pool; it MUST NOT be used after.
func (w *StatusWriter) Release() {
	*w = StatusWriter{}
	statusWriters.Put(w)
}

// WriteHeader records the first final status (or 101) and passes it on.
// An informational answer (103 Early Hints) the app or upstream sent loses
// its ErrorHeader, as its final answer does in StripErrorHeader.
func (w *StatusWriter) WriteHeader(code int) {
	if code < 200 && code != http.StatusSwitchingProtocols {
		w.Header().Del(ErrorHeader)
	}
	if w.status == 0 && (code >= 200 || code == http.StatusSwitchingProtocols) {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

// Write records an implicit 200.
func (w *StatusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// takeHeader passes the answer's header on to the writer underneath,
// when it can take it over (see headerTaker).
func (w *StatusWriter) takeHeader(h http.Header) bool {
	t, ok := w.ResponseWriter.(headerTaker)
	return ok && t.takeHeader(h)
}

// Unwrap lets http.ResponseController, which ReverseProxy uses to flush
// and hijack, reach the real writer.
func (w *StatusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Status is the status sent: 200 when the handler wrote nothing, as
// net/http then answers.
func (w *StatusWriter) Status() int {
	if w.status == 0 {
		return http.StatusOK
	}
	return w.status
}

// UpstreamFailed reports whether the round trip to the app or upstream
// failed, so that the answer is the sidecar's own 502, not one the app
// sent.
func (w *StatusWriter) UpstreamFailed() bool { return w.upstreamFailed }

// ErrorCode is the error code of the sidecar's own answer (as in
// ErrorHeader), "" when the app or upstream answered.
func (w *StatusWriter) ErrorCode() string { return w.errorCode }

// noteError is called by WriteErrorBody.
func noteError(w http.ResponseWriter, code string) {
	if sw, ok := w.(*StatusWriter); ok {
		sw.errorCode = code
	}
}

// markUpstreamFailed is called by the reverse proxy's error handler.
func markUpstreamFailed(w http.ResponseWriter) {
	if sw, ok := w.(*StatusWriter); ok {
		sw.upstreamFailed = true
	}
}
