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
		r = BoundBodyIdle(httptest.NewRecorder(), r, idle)
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
		r = BoundBodyIdle(httptest.NewRecorder(), r, idle)
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
