package proxy

// Second review of the HTTP/1.1 front (h1server.go). As in
// h1server_review_test.go, each scenario runs over real loopback TCP
// under net/http's server alone and under the front, and both must
// pass. Each comment tells the defect the test caught in the front as it
// then was, since fixed.

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestReview2ConnClosedIsToldOfAConnectionHandedOverDuringShutdown: a
// new connection in the middle of its first header block when the drain
// starts is busy, and Shutdown waits for it. When its request is one the
// front hands over (HTTP/1.0 here; Upgrade, Expect, a header block over
// 8 KiB alike), handoffListener.give finds the handoff listener already
// closed by http.Server.Shutdown and closes the connection itself,
// after serve set handedOff: ServerOptions.ConnClosed is never called for
// it, by the front or by net/http, which never saw it. (Dropping the
// request is what net/http does too: conn.serve returns without an
// answer when it reads a request during Shutdown.) The same happens to
// any connection handed over after Close.
func TestReview2ConnClosedIsToldOfAConnectionHandedOverDuringShutdown(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "ok") })
	for _, m := range rvModes {
		t.Run(m.name, func(t *testing.T) {
			var closed atomic.Int32
			opts := DefaultServerOptions(nil)
			opts.ConnClosed = func(net.Conn) { closed.Add(1) }
			s := rvStart(t, h, opts, m.front)
			c, br := rvDial(t, s.Addr().String())
			_, _ = io.WriteString(c, "GET / HTTP/1.0\r\nHost: a\r\n")
			time.Sleep(50 * time.Millisecond)
			ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
			defer cancel()
			shut := make(chan error, 1)
			go func() { shut <- s.Shutdown(ctx) }()
			time.Sleep(50 * time.Millisecond)
			_, _ = io.WriteString(c, "\r\n")
			_, _ = io.Copy(io.Discard, br) // whatever the answer, the connection ends
			if err := <-shut; err != nil {
				t.Errorf("Shutdown: %v", err)
			}
			deadline := time.Now().Add(time.Second)
			for closed.Load() == 0 && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			if n := closed.Load(); n != 1 {
				t.Errorf("ConnClosed was called %d times for the connection", n)
			}
		})
	}
}

// TestReview2ShutdownWithAnExpiredContextOfAnIdleServerSucceeds:
// net/http's Shutdown first closes the idle connections and returns nil
// when none is busy, whatever ctx says. h1Front.shutdown selects between
// done and ctx.Done(): with ctx already over it
// fails at random even with no connection at all, and always when an
// idle keep-alive connection was just closed (forget, which closes done,
// runs later, in the connection's goroutine). An operator's drain with a
// spent budget reports a failure that did not happen.
func TestReview2ShutdownWithAnExpiredContextOfAnIdleServerSucceeds(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "ok") })
	for _, m := range rvModes {
		t.Run(m.name, func(t *testing.T) {
			s := rvStart(t, h, DefaultServerOptions(nil), m.front)
			c, br := rvDial(t, s.Addr().String())
			_, _ = io.WriteString(c, "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
			rvReadResponse(t, br, "GET")
			// Both servers mark the connection idle just after the
			// answer's write returns; a caller can read it before.
			time.Sleep(20 * time.Millisecond)
			ctx, cancel := context.WithCancel(t.Context())
			cancel()
			for i := range 10 {
				if err := s.Shutdown(ctx); err != nil {
					t.Fatalf("Shutdown %d of an idle server with an expired context: %v", i+1, err)
				}
			}
		})
	}
}

// TestReview2TheHeaderTimeoutHoldsWhenTheBufferFills: the first review
// made a header timeout close instead of handing over, but a caller that
// fills the front's 8 KiB read buffer (or MaxHeaderBytes) just before
// ReadHeaderTimeout is still handed over (scanHead)
// with its read deadline and net/http starts a whole new
// ReadHeaderTimeout (conn.serve sets one on every connection it
// accepts): each slowloris connection is held up to twice as long.
func TestReview2TheHeaderTimeoutHoldsWhenTheBufferFills(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})
	opts := DefaultServerOptions(nil)
	opts.ReadHeaderTimeout = 500 * time.Millisecond
	for _, m := range rvModes {
		t.Run(m.name, func(t *testing.T) {
			addr := rvServe(t, h, opts, m.front)
			c, _ := rvDial(t, addr)
			start := time.Now()
			_, _ = io.WriteString(c, "GET / HTTP/1.1\r\nHost: a\r\nX-Pad: ")
			time.Sleep(400 * time.Millisecond)
			_, _ = io.WriteString(c, strings.Repeat("p", frontReadBuffer))
			_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
			_, _ = io.Copy(io.Discard, c)
			if held := time.Since(start); held > opts.ReadHeaderTimeout+250*time.Millisecond {
				t.Errorf("a caller that never finished its header was held %v (ReadHeaderTimeout %v)",
					held.Round(10*time.Millisecond), opts.ReadHeaderTimeout)
			}
		})
	}
}

// TestReview2APipeliningCallerThatLeavesCancelsItsRequest: net/http's
// background read watches the connection itself, whatever its buffer
// holds, and cancels the request when the caller leaves. The caller watch
// does not start when bytes of a next request are buffered
// (callerWatch.start): a caller that pipelines its
// requests and disconnects has each run to the end, one after the other,
// upstream calls and all.
func TestReview2APipeliningCallerThatLeavesCancelsItsRequest(t *testing.T) {
	canceled := make(chan bool, 4)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
			canceled <- true
		case <-time.After(2 * time.Second):
			canceled <- false
		}
	})
	for _, m := range rvModes {
		t.Run(m.name, func(t *testing.T) {
			addr := rvServe(t, h, DefaultServerOptions(nil), m.front)
			c, _ := rvDial(t, addr)
			_, _ = io.WriteString(c, "GET / HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n")
			time.Sleep(50 * time.Millisecond)
			_ = c.Close()
			if !<-canceled {
				t.Errorf("the request of a caller that left ran to its end")
			}
			time.Sleep(100 * time.Millisecond)
			for len(canceled) > 0 {
				<-canceled
			}
		})
	}
}

// TestReview2AStreamedAnswerOverAnUndrainableBodySaysClose: the first
// review's fix settles an unread body before the header of an answer
// whose handler has finished, but an answer whose header goes out while
// the handler runs (over 2 KiB, or flushed) says nothing of a chunked
// body: frontBody.lost cannot tell its size (length -1), and the drain
// after the handler (serveRequest; lost) then finds it
// over 256 KiB and closes the connection under a caller told it could
// keep it. net/http drains before any header (chunkWriter.writeHeader)
// and says Connection: close.
func TestReview2AStreamedAnswerOverAnUndrainableBodySaysClose(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write(make([]byte, 4<<10)) // the body is not read
	})
	for _, m := range rvModes {
		t.Run(m.name, func(t *testing.T) {
			c, br := rvDial(t, rvServe(t, h, DefaultServerOptions(nil), m.front))
			_, _ = io.WriteString(c, "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n")
			go func() {
				chunk := fmt.Sprintf("%x\r\n%s\r\n", 64<<10, strings.Repeat("b", 64<<10))
				for range 16 {
					if _, err := io.WriteString(c, chunk); err != nil {
						return
					}
				}
				_, _ = io.WriteString(c, "0\r\n\r\n")
			}()
			resp := rvReadResponse(t, br, "POST")
			closed := rvClosed(c, br, 2*time.Second)
			if closed && !resp.Close {
				t.Errorf("the server closed the connection after an answer without Connection: close")
			}
		})
	}
}

// TestReview2AnAnswerWithoutContentTypeIsSniffed: net/http gives an
// answer that has a body and no Content-Type the type
// http.DetectContentType finds; the front sent none (sendHeader), so
// the same app answered differently on a
// cleartext listener than on a TLS one.
func TestReview2AnAnswerWithoutContentTypeIsSniffed(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "<html><body>hello</body></html>")
	})
	for _, m := range rvModes {
		t.Run(m.name, func(t *testing.T) {
			br := rvSend(t, h, m.front, "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
			resp := rvReadResponse(t, br, "GET")
			if got := resp.Header.Get("Content-Type"); got != "text/html; charset=utf-8" {
				t.Errorf("Content-Type %q", got)
			}
		})
	}
}
