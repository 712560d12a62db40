package proxy

import (
	"io"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// TestOnlyAReadUnderWayOrTimedOutIsAStall: the sidecar blames the caller
// (408, the upstream not marked failed) only for a body read that is
// waiting past its bound or that timed out. A read that returned is no
// stall, however long ago it began: the transport may be slow to ask for
// the next bytes because the app stopped reading, and the app's failure
// then is the app's (502 or 504), not the caller's 408.
func TestOnlyAReadUnderWayOrTimedOutIsAStall(t *testing.T) {
	const idle = 20 * time.Millisecond
	t.Run("a read that returned is not a stall", func(t *testing.T) {
		r := httptest.NewRequest("POST", "/", strings.NewReader(strings.Repeat("x", 64)))
		r, _ = BoundBodyIdle(httptest.NewRecorder(), r, idle)
		if _, err := r.Body.Read(make([]byte, 8)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(3 * idle) // the transport busy writing to a slow app
		if bodyStalled(r) {
			t.Error("bodyStalled after a read that returned at once, want false")
		}
	})
	t.Run("a read waiting past its bound is a stall", func(t *testing.T) {
		pr, pw := io.Pipe()
		defer pw.Close()
		r := httptest.NewRequest("POST", "/", pr)
		r, _ = BoundBodyIdle(httptest.NewRecorder(), r, idle)
		go func() { _, _ = r.Body.Read(make([]byte, 8)) }()
		deadline := time.Now().Add(2 * time.Second)
		for !bodyStalled(r) {
			if time.Now().After(deadline) {
				t.Fatal("a read blocked past its bound is not seen as a stall")
			}
			time.Sleep(idle)
		}
	})
}

// deadlineWriter records the read deadlines set through it, and fails the
// test for one set after it was let go.
type deadlineWriter struct {
	*httptest.ResponseRecorder
	t        *testing.T
	released bool
	set      int
}

func (w *deadlineWriter) SetReadDeadline(time.Time) error {
	if w.released {
		w.t.Error("a read deadline was set through the writer after the handler was done with it")
	}
	w.set++
	return nil
}

// TestABodyReadAfterTheHandlerLeavesTheWriterAlone: a transport may read
// the body after the answer came and the handler returned, when the
// sidecar's writer is back in its pool and may serve another request.
// Those reads must not set deadlines through it.
func TestABodyReadAfterTheHandlerLeavesTheWriterAlone(t *testing.T) {
	w := &deadlineWriter{ResponseRecorder: httptest.NewRecorder(), t: t}
	r := httptest.NewRequest("POST", "/", strings.NewReader(strings.Repeat("x", 64)))
	r, stop := BoundBodyIdle(w, r, time.Second)
	if _, err := r.Body.Read(make([]byte, 8)); err != nil {
		t.Fatal(err)
	}
	if w.set == 0 {
		t.Fatal("the read under the handler set no deadline: the bound is not on")
	}
	stop()
	w.released = true
	if _, err := io.ReadAll(r.Body); err != nil {
		t.Fatal(err)
	}
}
