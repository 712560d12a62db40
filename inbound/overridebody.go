package inbound

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/authsidecar/authsidecar/metrics"
	"github.com/authsidecar/authsidecar/proxy"
	"github.com/authsidecar/authsidecar/rules"
)

// formReadTimeout bounds the whole read of a body for an override, as the
// body idle bound bounds each wait: a caller trickling a body in cannot
// hold its share of the budget for long.
const formReadTimeout = 30 * time.Second

// formBudgetBodies is how many bodies of the largest size may be held at
// once for an override (see handler.formBudget).
const formBudgetBodies = 32

// judgeBody reads a POST's body for override fields, the ways rd says,
// and adds to j the methods they name; a body that cannot be read here
// adds every method. release gives the body's share of the budget back
// once the request is done. The outcome is set when the request was
// answered: its body did not come, is ambiguous, or the budget is spent.
func (h *handler) judgeBody(w http.ResponseWriter, r *http.Request, set *rules.Set, t target, rd readings, j judgement) (_ judgement, values []string, release func(), _ *outcome) {
	release = func() {}
	unread := func(e *errBodyUnread) (judgement, []string, func(), *outcome) {
		j.unread, j.unreadFrom = e, len(j.matched)
		for _, m := range overridable {
			j.matched = append(j.matched, matched{m, set.Match(m, t.path)})
		}
		return j, nil, release, nil
	}
	refuse := func(status int, code, description string) (judgement, []string, func(), *outcome) {
		release()
		proxy.WriteError(w, r, status, code, description)
		return j, nil, func() {}, &outcome{result: metrics.ResultBadRequest}
	}
	switch {
	case rd.unreadable != "":
		return unread(&errBodyUnread{why: rd.unreadable, status: http.StatusUnsupportedMediaType})
	case r.ContentLength > h.maxFormBytes:
		return unread(h.tooLarge())
	}
	share := h.maxFormBytes + 1
	if r.ContentLength > 0 {
		share = r.ContentLength
	}
	if !h.formBudget.TryAcquire(share) {
		h.log.WarnContext(r.Context(), "request refused: too many bodies are being read for a method override at once")
		proxy.WriteError(w, r, http.StatusServiceUnavailable, "temporarily_unavailable", "too many request bodies are being read at once")
		return j, nil, release, &outcome{result: metrics.ResultUnavailable}
	}
	held := share
	release = func() { h.formBudget.Release(held) }
	body, err := readBody(w, r, share, h.maxFormBytes, h.bodyIdle)
	if err == nil && int64(len(body)) < held {
		// What the body did not take goes back at once (a chunked body
		// was counted at the limit).
		h.formBudget.Release(held - int64(len(body)))
		held = int64(len(body))
	}
	switch {
	case errors.Is(err, errTooLarge):
		return unread(h.tooLarge())
	case errors.Is(err, proxy.ErrBodyIdle):
		return refuse(http.StatusRequestTimeout, "request_timeout", "the request body stalled")
	case err != nil:
		h.log.DebugContext(r.Context(), "request refused: its body did not arrive", "error", err.Error())
		return refuse(http.StatusBadRequest, "invalid_request", "the request body could not be read")
	}
	values, err = overridesIn(rd, strings.Join(r.Header.Values("Content-Type"), ","), body)
	if err != nil {
		h.log.DebugContext(r.Context(), "request refused: its body cannot be read for a method override", "error", err.Error())
		return refuse(http.StatusBadRequest, "invalid_request", "the body may name a method override ("+overrideField+") in a way parsers read differently")
	}
	for _, v := range values {
		j.add(set, t, v)
	}
	return j, values, release, nil
}

func (h *handler) tooLarge() *errBodyUnread {
	return &errBodyUnread{
		why:    fmt.Sprintf("it is over %d bytes (AUTHSIDECAR_INBOUND_MAX_FORM_BYTES)", h.maxFormBytes),
		status: http.StatusRequestEntityTooLarge,
	}
}

// bodyUnread answers a caller whose body could not be read for a method
// override, and who is not allowed every method it could name; id is nil
// for a caller without a token.
func (h *handler) bodyUnread(w http.ResponseWriter, r *http.Request, id *identity, e *errBodyUnread) outcome {
	proxy.WriteError(w, r, e.status, "invalid_request", fmt.Sprintf(
		"the body may name another method in a %s field, and cannot be read for it: %s; this caller is not allowed every method on this path",
		overrideField, e.why))
	o := outcome{result: metrics.ResultBadRequest}
	if id != nil {
		o.clientID = id.clientID
	}
	return o
}

var errTooLarge = errors.New("the body is too large")

// readBody reads r's body whole into memory, up to limit bytes, in a
// buffer of size bytes to start with, and puts what it read back as r's
// body, so that the app gets it as sent. Each wait for bytes is bounded by
// idle, the whole read by formReadTimeout. A body over limit is left to
// be streamed: what was read, then the rest (errTooLarge).
func readBody(w http.ResponseWriter, r *http.Request, size, limit int64, idle time.Duration) (string, error) {
	rc := http.NewResponseController(w)
	end := time.Now().Add(formReadTimeout)
	defer func() { _ = rc.SetReadDeadline(time.Time{}) }()
	buf := make([]byte, 0, min(size, limit+1)+1)
	for {
		deadline := end
		if t := time.Now().Add(idle); idle > 0 && t.Before(deadline) {
			deadline = t
		}
		_ = rc.SetReadDeadline(deadline)
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := r.Body.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if int64(len(buf)) > limit {
			r.Body = readCloser{io.MultiReader(strings.NewReader(string(buf)), r.Body), r.Body}
			return "", errTooLarge
		}
		switch {
		case err == io.EOF:
			s := string(buf)
			r.Body = readCloser{strings.NewReader(s), r.Body}
			r.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(s)), nil }
			return s, nil
		case errors.Is(err, os.ErrDeadlineExceeded):
			return "", proxy.ErrBodyIdle
		case err != nil:
			return "", err
		}
	}
}

// readCloser reads from one reader and closes the request's own body.
type readCloser struct {
	io.Reader
	io.Closer
}
