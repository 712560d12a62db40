package inbound

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/semaphore"

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
// adds every method. The body's share of the budget goes back when the
// body has been forwarded (read to its end or closed), or at the latest
// when release is called, once the request is done; release may be
// called more than once. The outcome is set when the request was
// answered: its body did not come, is ambiguous, or the budget is spent.
func (h *handler) judgeBody(w http.ResponseWriter, r *http.Request, set *rules.Set, t target, rd readings, j judgement) (_ judgement, values []string, release func(), _ *outcome) {
	release = func() {}
	defer func() {
		if p := recover(); p != nil {
			release()
			panic(p)
		}
	}()
	unread := func(e *unreadBody) (judgement, []string, func(), *outcome) {
		j.unread, j.unreadFrom = e, len(j.matched)
		j.addEvery(set, t)
		return j, nil, release, nil
	}
	refuse := func(status int, code, description string) (judgement, []string, func(), *outcome) {
		release()
		proxy.WriteError(w, r, status, code, description)
		return j, nil, func() {}, &outcome{result: metrics.ResultBadRequest}
	}
	switch {
	case rd.unreadable != "":
		return unread(&unreadBody{why: rd.unreadable, status: http.StatusUnsupportedMediaType})
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
	held := &budgetShare{sem: h.formBudget, n: share}
	release = held.release
	body, err := readBody(w, r, share, h.maxFormBytes, h.bodyIdle, held.release)
	if err == nil {
		// What the body did not take goes back at once (a chunked body
		// was counted at the limit).
		held.shrink(int64(len(body)))
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
	if wideBOM(body) {
		return unread(&unreadBody{why: "it starts with a UTF-16 or UTF-32 byte order mark, by which a framework may decode it", status: http.StatusUnsupportedMediaType})
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

func (h *handler) tooLarge() *unreadBody {
	return &unreadBody{
		why:    fmt.Sprintf("it is over %d bytes (AUTHSIDECAR_INBOUND_MAX_FORM_BYTES)", h.maxFormBytes),
		status: http.StatusRequestEntityTooLarge,
	}
}

// bodyUnread answers a caller whose body could not be read for a method
// override, and who is not allowed every method it could name; id is nil
// for a caller without a token, who is told a token may do (a caller
// allowed every method gets the request through).
func (h *handler) bodyUnread(w http.ResponseWriter, r *http.Request, id *identity, e *unreadBody) outcome {
	if id == nil {
		h.challenge(w, "", "")
	}
	proxy.WriteError(w, r, e.status, "invalid_request", fmt.Sprintf(
		"the body may name another method in a %s field, and cannot be read for it: %s; this caller is not allowed every method on this path",
		overrideField, e.why))
	o := outcome{result: metrics.ResultBadRequest}
	if id != nil {
		o.clientID = id.clientID
	}
	return o
}

// budgetShare is one body's share of handler.formBudget.
type budgetShare struct {
	sem  *semaphore.Weighted
	mu   sync.Mutex
	n    int64
	gone bool
}

// shrink gives back what the share holds beyond n.
func (s *budgetShare) shrink(n int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.gone && n < s.n {
		s.sem.Release(s.n - n)
		s.n = n
	}
}

// release gives the share back, once however often it is called.
func (s *budgetShare) release() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.gone {
		s.gone = true
		s.sem.Release(s.n)
	}
}

var errTooLarge = errors.New("the body is too large")

// readBody reads r's body whole into memory, up to limit bytes, in a
// buffer of size bytes to start with, and puts what it read back as r's
// body, so that the app gets it as sent; forwarded, the new body calls
// done and lets go of the bytes. Each wait for bytes is bounded by idle,
// the whole read by formReadTimeout. A body over limit is left to be
// streamed: what was read, then the rest (errTooLarge).
func readBody(w http.ResponseWriter, r *http.Request, size, limit int64, idle time.Duration, done func()) (string, error) {
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
			r.Body = &bufferedBody{r: io.MultiReader(bytes.NewReader(buf), r.Body), rc: r.Body, done: done}
			return "", errTooLarge
		}
		switch {
		case err == io.EOF:
			s := string(buf)
			r.Body = &bufferedBody{r: strings.NewReader(s), rc: r.Body, done: done}
			return s, nil
		case errors.Is(err, os.ErrDeadlineExceeded):
			return "", proxy.ErrBodyIdle
		case err != nil:
			return "", err
		}
	}
}

// bufferedBody is a body read for an override, put back: it reads from r
// and closes the request's own body, rc. At its end it calls done and
// lets go of r; closed, it calls done. A transport may call Close while a
// Read waits (for the rest of an over-limit body), so Close leaves r to
// Read.
type bufferedBody struct {
	r    io.Reader
	rc   io.ReadCloser
	done func()
}

func (b *bufferedBody) Read(p []byte) (int, error) {
	if b.r == nil {
		return 0, io.EOF
	}
	n, err := b.r.Read(p)
	if err == io.EOF {
		b.r = nil
		b.done()
	}
	return n, err
}

func (b *bufferedBody) Close() error {
	b.done()
	return b.rc.Close()
}
