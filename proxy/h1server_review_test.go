package proxy

// Review tests of the HTTP/1.1 front (h1server.go). Each runs the same
// scenario twice over real loopback TCP: once with net/http's server on
// the listener (the server Listen builds, served as a TLS listener would
// be), once with the front (Server.Serve), and both must pass. Each was
// written by a review to fail on the front as it then was; its comment
// tells the defect it caught, since fixed.

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"
)

// rvModes are the two ways a cleartext listener can be served.
var rvModes = []struct {
	name  string
	front bool
}{{"net/http", false}, {"front", true}}

// rvServe serves h like rvStart and returns the address.
func rvServe(t *testing.T, h http.Handler, opts ServerOptions, front bool) string {
	t.Helper()
	return rvStart(t, h, opts, front).Addr().String()
}

// rvSend serves h with the default options, the front's or net/http's,
// and sends it request on a new connection, whose reader it returns.
func rvSend(t *testing.T, h http.Handler, front bool, request string) *bufio.Reader {
	t.Helper()
	c, br := rvDial(t, rvServe(t, h, DefaultServerOptions(nil), front))
	if _, err := io.WriteString(c, request); err != nil {
		t.Fatal(err)
	}
	return br
}

func rvDial(t *testing.T, addr string) (net.Conn, *bufio.Reader) {
	t.Helper()
	rc := dialRaw(t, addr)
	return rc.conn, rc.br
}

func rvReadResponse(t *testing.T, br *bufio.Reader, method string) *http.Response {
	t.Helper()
	resp, err := http.ReadResponse(br, &http.Request{Method: method})
	if err != nil {
		t.Fatalf("reading the answer: %v", err)
	}
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		t.Fatalf("reading the answer's body: %v", err)
	}
	_ = resp.Body.Close()
	return resp
}

// rvClosed reports whether the server closes the connection within d.
func rvClosed(c net.Conn, br *bufio.Reader, d time.Duration) bool {
	_ = c.SetReadDeadline(time.Now().Add(d))
	_, err := br.ReadByte()
	return err != nil && !errors.Is(err, os.ErrDeadlineExceeded)
}

// TestReviewAConnectionTheFrontDropsForAnUnreadBodySaysSo: when the
// handler leaves a body unread that the server will not drain (over
// 256 KiB, or broken chunked framing), net/http learns it before it
// writes the answer's header and says "Connection: close"; the front
// writes the answer as reusable and only then finds out, and closes the
// connection under a caller told it could send its next request on it.
// (drain after w.finish wrote the header).
func TestReviewAConnectionTheFrontDropsForAnUnreadBodySaysSo(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "ok") // the body is not read
	})
	bodies := []struct {
		name, head string
		body       func(io.Writer)
	}{
		{"a body over 256 KiB",
			"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1048576\r\n\r\n",
			func(w io.Writer) { _, _ = w.Write(make([]byte, 1<<20)) }},
		{"a chunked body with broken framing",
			"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
			func(w io.Writer) { _, _ = io.WriteString(w, "zz\r\nhello\r\n") }},
	}
	for _, b := range bodies {
		for _, m := range rvModes {
			t.Run(b.name+"/"+m.name, func(t *testing.T) {
				addr := rvServe(t, h, DefaultServerOptions(nil), m.front)
				c, br := rvDial(t, addr)
				if _, err := io.WriteString(c, b.head); err != nil {
					t.Fatal(err)
				}
				go b.body(c)
				resp := rvReadResponse(t, br, "POST")
				closed := rvClosed(c, br, 2*time.Second)
				if closed && !resp.Close {
					t.Errorf("the server closed the connection after an answer without Connection: close (header %v)", resp.Header)
				}
				if !closed {
					t.Errorf("the connection was kept with the body unread")
				}
			})
		}
	}
}

// TestReviewTheHeaderTimeoutIsNotRestartedByTheHandoff: a caller that
// sends part of a header block and stops is cut off after
// ReadHeaderTimeout by net/http. The front waits ReadHeaderTimeout, then
// hands the connection to net/http (scanHead), which
// starts a whole new ReadHeaderTimeout: every slowloris connection is
// held twice as long.
func TestReviewTheHeaderTimeoutIsNotRestartedByTheHandoff(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})
	opts := DefaultServerOptions(nil)
	opts.ReadHeaderTimeout = 300 * time.Millisecond
	for _, kept := range []bool{false, true} {
		name := "the first request"
		if kept {
			name = "a request on a kept connection"
		}
		for _, m := range rvModes {
			t.Run(name+"/"+m.name, func(t *testing.T) {
				addr := rvServe(t, h, opts, m.front)
				c, br := rvDial(t, addr)
				if kept {
					_, _ = io.WriteString(c, "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
					rvReadResponse(t, br, "GET")
				}
				start := time.Now()
				_, _ = io.WriteString(c, "GET / HTTP/1.1\r\nHost: a\r\nX-Slow: ")
				_, err := br.ReadByte()
				held := time.Since(start)
				if err == nil {
					t.Fatalf("an answer to an unfinished header block")
				}
				if held > opts.ReadHeaderTimeout*3/2 {
					t.Errorf("a caller that never finished its header block was held %v; ReadHeaderTimeout is %v", held.Round(time.Millisecond), opts.ReadHeaderTimeout)
				}
			})
		}
	}
}

// TestReviewAHandlersWriteDeadlineEndsWithItsRequest: net/http clears the
// write deadline after every request (server.go, conn.serve:
// c.rwc.SetWriteDeadline(time.Time{})); the front sets one only when
// WriteTimeout > 0 and never clears it, so a
// deadline a handler set through http.ResponseController (the front
// offers SetWriteDeadline) outlives its request and
// kills the answer to the next request on the connection.
func TestReviewAHandlersWriteDeadlineEndsWithItsRequest(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/bounded" {
			if err := http.NewResponseController(w).SetWriteDeadline(time.Now().Add(50 * time.Millisecond)); err != nil {
				t.Errorf("SetWriteDeadline: %v", err)
			}
		}
		_, _ = io.WriteString(w, "ok")
	})
	for _, m := range rvModes {
		t.Run(m.name, func(t *testing.T) {
			addr := rvServe(t, h, DefaultServerOptions(nil), m.front) // WriteTimeout 0
			c, br := rvDial(t, addr)
			_, _ = io.WriteString(c, "GET /bounded HTTP/1.1\r\nHost: a\r\n\r\n")
			if resp := rvReadResponse(t, br, "GET"); resp.Close {
				t.Fatal("the first answer closed the connection")
			}
			time.Sleep(150 * time.Millisecond)
			_, _ = io.WriteString(c, "GET /next HTTP/1.1\r\nHost: a\r\n\r\n")
			resp, err := http.ReadResponse(br, &http.Request{Method: "GET"})
			if err != nil {
				t.Fatalf("the next request on the connection got no answer: %v", err)
			}
			resp.Body.Close()
		})
	}
}

// TestReviewServeAfterCloseLetsGoOfThePort: net/http's Serve closes the
// listener it is given even when the server was closed or shut down
// first. The front's serve returns at once then
// without closing it, and the port stays bound for the process's life.
func TestReviewServeAfterCloseLetsGoOfThePort(t *testing.T) {
	for _, how := range []string{"Close", "Shutdown"} {
		for _, m := range rvModes {
			t.Run(how+"/"+m.name, func(t *testing.T) {
				s, err := Listen("review", "127.0.0.1:0", http.NotFoundHandler(), DefaultServerOptions(nil))
				if err != nil {
					t.Fatal(err)
				}
				addr := s.Addr().String()
				if how == "Close" {
					_ = s.Close()
				} else {
					_ = s.Shutdown(t.Context())
				}
				if m.front {
					_ = s.Serve()
				} else {
					_ = s.serveNetHTTP(s.ln)
				}
				ln, err := net.Listen("tcp", addr)
				if err != nil {
					_ = s.ln.Close()
					t.Fatalf("the port is still bound after %s and Serve returned: %v", how, err)
				}
				_ = ln.Close()
			})
		}
	}
}

// TestReviewAnAnswerNeverCarriesBothContentLengthAndChunked: a handler
// that leaves an empty Content-Length in its header (Get returns "", so
// WriteHeader neither parses nor deletes it) and
// sends a body of unknown length gets both "Content-Length:" and
// "Transfer-Encoding: chunked" on the wire (sendHeader deletes
// Content-Length only for 204/304 and trailers);
// RFC 9112 6.1 forbids it and strict intermediaries reject or misframe
// such an answer. net/http drops Content-Length whenever it chunks.
func TestReviewAnAnswerNeverCarriesBothContentLengthAndChunked(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "")
		_, _ = w.Write([]byte(strings.Repeat("x", 3000)))
	})
	for _, m := range rvModes {
		t.Run(m.name, func(t *testing.T) {
			br := rvSend(t, h, m.front, "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
			head := rvRawHead(t, br)
			if strings.Contains(head, "\r\nTransfer-Encoding: chunked\r\n") && strings.Contains(strings.ToLower(head), "\r\ncontent-length:") {
				t.Errorf("an answer with both Content-Length and Transfer-Encoding:\n%s", head)
			}
		})
	}
}

// TestReviewAnInformationalAnswerCarriesNoFraming: RFC 9110 8.6 and 6.1
// forbid Content-Length and Transfer-Encoding in a 1xx answer; net/http
// leaves them out of it (excludedHeadersNoBody), the front writes every
// header the handler set so far (writeInformational).
func TestReviewAnInformationalAnswerCarriesNoFraming(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "5")
		w.Header().Set("Link", "</style.css>; rel=preload")
		w.WriteHeader(http.StatusEarlyHints)
		_, _ = io.WriteString(w, "hello")
	})
	for _, m := range rvModes {
		t.Run(m.name, func(t *testing.T) {
			br := rvSend(t, h, m.front, "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
			head := rvRawHead(t, br)
			if !strings.HasPrefix(head, "HTTP/1.1 103 ") {
				t.Fatalf("no 103 first:\n%s", head)
			}
			early, _, _ := strings.Cut(head, "\r\n\r\n")
			if strings.Contains(strings.ToLower(early), "\r\ncontent-length:") {
				t.Errorf("a 1xx answer with Content-Length:\n%s", early)
			}
		})
	}
}

// TestReviewAHeadAnswerHasTheLengthAGetWould: net/http sends a HEAD
// answer the Content-Length of what the handler wrote, the length a GET
// gets; the front sends no length at all for HEAD (sendHeader's HEAD
// case, and WriteHeader sends the header at once for
// HEAD), though it sends one for the same GET.
func TestReviewAHeadAnswerHasTheLengthAGetWould(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "hello")
	})
	for _, m := range rvModes {
		t.Run(m.name, func(t *testing.T) {
			br := rvSend(t, h, m.front, "GET / HTTP/1.1\r\nHost: a\r\n\r\nHEAD / HTTP/1.1\r\nHost: a\r\n\r\n")
			get := rvReadResponse(t, br, "GET")
			head := rvReadResponse(t, br, "HEAD")
			if g, h := get.Header.Get("Content-Length"), head.Header.Get("Content-Length"); g != h {
				t.Errorf("GET answered with Content-Length %q, HEAD with %q", g, h)
			}
		})
	}
}

// rvRawHead reads the heads of the 1xx answers that come first and the
// head of the final answer, and returns them as sent.
func rvRawHead(t *testing.T, br *bufio.Reader) string {
	t.Helper()
	var all, cur strings.Builder
	for {
		line, err := br.ReadString('\n')
		all.WriteString(line)
		cur.WriteString(line)
		if err != nil {
			t.Fatalf("reading the answer: %v (so far %q)", err, all.String())
		}
		if line == "\r\n" {
			if !strings.HasPrefix(cur.String(), "HTTP/1.1 1") {
				return all.String()
			}
			cur.Reset()
		}
	}
}

// rvStart binds a listener with opts and serves h on it with the front,
// or with net/http's server alone (the front dropped, as a TLS listener
// has none, so that Shutdown and Close are net/http's too).
func rvStart(t *testing.T, h http.Handler, opts ServerOptions, front bool) *Server {
	t.Helper()
	s, err := Listen("review", "127.0.0.1:0", h, opts)
	if err != nil {
		t.Fatal(err)
	}
	if !front {
		s.front = nil
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = s.Serve()
	}()
	t.Cleanup(func() {
		_ = s.Close()
		<-done
	})
	return s
}

// TestReviewShutdownClosesAConnectionThatTurnsIdleDuringIt: shutdown
// closes the connections that are idle when it starts and waits for the
// busy ones. A connection whose request was past
// serveRequest's isClosing check when Shutdown began,
// here one whose unread body is still being drained, goes back to
// awaitRequest, which waits for a next request for IdleTimeout (120 s
// by default) before it looks at closing: Shutdown
// waits out its whole context and fails. net/http closes such a
// connection as soon as its request is answered (conn.serve:
// doKeepAlives), and its Shutdown returns.
func TestReviewShutdownClosesAConnectionThatTurnsIdleDuringIt(t *testing.T) {
	handled := make(chan struct{}, 1)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "ok") // the body is left to the server
		handled <- struct{}{}
	})
	for _, m := range rvModes {
		t.Run(m.name, func(t *testing.T) {
			s := rvStart(t, h, DefaultServerOptions(nil), m.front)
			c, br := rvDial(t, s.Addr().String())
			_, _ = io.WriteString(c, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n12345")
			<-handled
			time.Sleep(50 * time.Millisecond) // the server drains the body
			ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
			defer cancel()
			start := time.Now()
			shut := make(chan error, 1)
			go func() { shut <- s.Shutdown(ctx) }()
			time.Sleep(50 * time.Millisecond)
			_, _ = io.WriteString(c, "67890")
			rvReadResponse(t, br, "POST")
			if err := <-shut; err != nil {
				t.Errorf("Shutdown after %v: %v", time.Since(start).Round(time.Millisecond), err)
			}
		})
	}
}

// TestReviewASecondShutdownDoesNotStrandTheFirst: each h1Front.shutdown
// call replaces f.done with a channel of its own,
// and forget closes only the last one: a first Shutdown still waiting
// for a busy request is never told the connections are done, and waits
// out its context. net/http's Shutdown may be called more than once.
func TestReviewASecondShutdownDoesNotStrandTheFirst(t *testing.T) {
	started := make(chan struct{}, 1)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		started <- struct{}{}
		time.Sleep(200 * time.Millisecond)
		_, _ = io.WriteString(w, "ok")
	})
	for _, m := range rvModes {
		t.Run(m.name, func(t *testing.T) {
			s := rvStart(t, h, DefaultServerOptions(nil), m.front)
			c, br := rvDial(t, s.Addr().String())
			_, _ = io.WriteString(c, "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
			<-started
			ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
			defer cancel()
			start := time.Now()
			first, second := make(chan error, 1), make(chan error, 1)
			go func() { first <- s.Shutdown(ctx) }()
			time.Sleep(20 * time.Millisecond)
			go func() { second <- s.Shutdown(ctx) }()
			rvReadResponse(t, br, "GET")
			for i, ch := range []chan error{first, second} {
				if err := <-ch; err != nil {
					t.Errorf("Shutdown %d after %v: %v", i+1, time.Since(start).Round(time.Millisecond), err)
				}
			}
		})
	}
}

// TestReviewAnHTTP1ConnectionStaysHTTP1: net/http speaks HTTP/2 on a
// cleartext connection only when the connection starts with the
// preface; a "PRI * HTTP/2.0" after HTTP/1.1 requests is one more
// HTTP/1.1 request. The front hands the connection over at that request
// (frontRequestLine refuses PRI) and net/http, which
// takes every handed-over connection for a new one, switches it to
// HTTP/2 in mid-stream (conn.serve: maybeServeUnencryptedHTTP2): what
// was framed as HTTP/1.1 up to there is HTTP/2 from there on.
func TestReviewAnHTTP1ConnectionStaysHTTP1(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, r.Proto) })
	for _, m := range rvModes {
		t.Run(m.name, func(t *testing.T) {
			c, br := rvDial(t, rvServe(t, h, DefaultServerOptions(nil), m.front))
			_, _ = io.WriteString(c, "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
			rvReadResponse(t, br, "GET")
			_, _ = io.WriteString(c, http2.ClientPreface)
			_ = http2.NewFramer(c, nil).WriteSettings()
			_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
			got, err := br.Peek(len("HTTP/1.1"))
			if err != nil {
				t.Fatalf("no answer: %v", err)
			}
			if string(got) != "HTTP/1.1" {
				t.Errorf("an HTTP/1.1 connection answered with %q: it speaks HTTP/2 now", got)
			}
		})
	}
}
