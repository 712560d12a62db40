package proxy

import (
	"encoding/json"
	"io"
	"net/http"
	"time"
)

// ErrorBody is the small JSON body of every answer the sidecar makes itself,
// shaped like an OAuth2 error response (RFC 6749 section 5.2).
type ErrorBody struct {
	Error       string   `json:"error"`
	Description string   `json:"error_description,omitempty"`
	Routes      []string `json:"routes,omitempty"`
}

// WriteError answers r with status and a JSON ErrorBody. The description
// is shown to the caller: it must never hold a token, a secret or a claim
// value.
func WriteError(w http.ResponseWriter, r *http.Request, status int, code, description string) {
	WriteErrorBody(w, r, status, ErrorBody{Error: code, Description: description})
}

// ErrorHeader names the error code of every answer the sidecar makes
// itself, the same as the body's "error", so that the app (or its caller)
// can tell the sidecar's own 502 or 503 from the upstream's. The copy in a
// proxied answer is removed: see StripErrorHeader.
const ErrorHeader = "X-Authsidecar-Error"

// WriteErrorBody answers r with status and body. A 503 says when to come
// back (Retry-After, 1 s unless the caller set it). A request body the
// caller announced is not waited for: see closeUnreadBody.
func WriteErrorBody(w http.ResponseWriter, r *http.Request, status int, body ErrorBody) {
	closeUnreadBody(w, r)
	noteError(w, body.Error)
	h := w.Header()
	h.Set(ErrorHeader, body.Error)
	if status == http.StatusServiceUnavailable && h.Get("Retry-After") == "" {
		h.Set("Retry-After", "1")
	}
	// A refusal must not be cached: the gRPC one is a 200, which any
	// caller can ask for by its content-type.
	h.Set("Cache-Control", "no-store")
	if r != nil && IsGRPC(r) {
		writeGRPCError(w, status, body.Description)
		return
	}
	h.Set("Content-Type", "application/json")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(body)
}

// StripErrorHeader removes ErrorHeader from an answer the app or an
// upstream made, as a ReverseProxy's ModifyResponse: the header says that
// this sidecar answered, and an app (or a sidecar further on) must not be
// able to say so in its name.
// Trailers are stripped too: gRPC clients read a trailers-only answer's
// status (the sidecar's refusals) as trailers, and could not tell the
// sidecar's from an upstream's trailer. (1xx answers are stripped by
// StatusWriter.)
func StripErrorHeader(resp *http.Response) error {
	resp.Header.Del(ErrorHeader)
	delete(resp.Trailer, ErrorHeader) // not even announced
	if resp.StatusCode != http.StatusSwitchingProtocols && resp.Body != nil && resp.Body != http.NoBody {
		resp.Body = &trailerStripper{ReadCloser: resp.Body, resp: resp}
	}
	return nil
}

// trailerStripper removes ErrorHeader from the trailers once they are in:
// the transport fills them in as the body ends, before ReverseProxy copies
// them.
type trailerStripper struct {
	io.ReadCloser
	resp *http.Response
}

func (t *trailerStripper) Read(p []byte) (int, error) {
	n, err := t.ReadCloser.Read(p)
	if err != nil {
		delete(t.resp.Trailer, ErrorHeader)
	}
	return n, err
}

// closeUnreadBody makes an answer to a request whose body was never read
// go out at once, and frees the connection soon after. net/http would
// otherwise read up to 256 KiB of the body before it writes the answer,
// and again when the handler returns, to keep the connection for another
// request: a caller that announces a body and never sends it would hold
// the connection, and a goroutine, for as long as it likes. So the answer
// says Connection: close, and what is read of the body after it is
// bounded by refusedBodyLinger: a client still sending has that long to
// read the answer before the connection closes under it (a close with
// unread data resets the connection, and the reset can destroy an answer
// the client has not read yet). HTTP/2 streams need none of this: the
// stream is reset.
func closeUnreadBody(w http.ResponseWriter, r *http.Request) {
	if r == nil || r.ProtoMajor != 1 || r.Body == nil || r.Body == http.NoBody {
		return
	}
	w.Header().Set("Connection", "close")
	_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(refusedBodyLinger))
}

// refusedBodyLinger is how long a refused request's body is still read,
// and thrown away, after the answer.
const refusedBodyLinger = time.Second
