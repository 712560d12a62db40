package proxy

// Faults of apps and upstreams met by the synchronous HTTP/1.1 client
// (h1client.go): a POST the app read and dropped, failing and slow
// request bodies, early answers, endless headers, cancels, resets and
// connections the app closed. Each test runs against h1Client and, as
// the reference, against the http.Transport it replaces: h1Client must do
// no worse. All servers are on 127.0.0.1.

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"net/textproto"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// rawApp is a loopback server that speaks bytes: serve gets the index of
// each accepted connection (0, 1, ...).
func rawApp(t *testing.T, serve func(i int, c net.Conn, br *bufio.Reader)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu    sync.Mutex
		conns []net.Conn
		wg    sync.WaitGroup
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				serve(i, c, bufio.NewReader(c))
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return "http://" + ln.Addr().String()
}

type namedRT struct {
	name string
	rt   http.RoundTripper
}

// bothClients: the client under review and the http.Transport it replaces,
// built as newProtocolTransport builds them.
func bothClients(headerTimeout time.Duration) []namedRT {
	o := TransportOptions{Protocol: ProtocolHTTP1, DialTimeout: time.Second, ResponseHeaderTimeout: headerTimeout}
	return []namedRT{
		{"h1Client", newTestH1Client(headerTimeout)},
		{"http.Transport", newTransport(o, nil, func(ps *http.Protocols) { ps.SetHTTP1(true) })},
	}
}

func drain(t *testing.T, resp *http.Response) string {
	t.Helper()
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatalf("reading the body: %v", err)
	}
	return string(b)
}

const okKeepAlive = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"

// TestANonIdempotentRequestIsNotSentTwice: the app reads a POST on a
// pooled connection and closes it without an answer (a handler panic in a
// Go app does exactly that; so does an app being restarted). The app has
// received the POST, and may have acted on it: it must not be sent again.
// http.Transport retries only GET, HEAD, OPTIONS, TRACE or requests with an
// Idempotency-Key (Request.isReplayable).
func TestANonIdempotentRequestIsNotSentTwice(t *testing.T) {
	for _, body := range []string{"", "amount=100"} {
		for _, tc := range bothClients(0) {
			t.Run(fmt.Sprintf("%s/body=%q", tc.name, body), func(t *testing.T) {
				var posts atomic.Int64
				u := rawApp(t, func(i int, c net.Conn, br *bufio.Reader) {
					for n := 0; ; n++ {
						req, err := http.ReadRequest(br)
						if err != nil {
							return
						}
						_, _ = io.Copy(io.Discard, req.Body)
						if req.Method == "POST" {
							posts.Add(1)
							if i == 0 {
								return // read it, acted on it, crashed: no answer
							}
						}
						_, _ = io.WriteString(c, okKeepAlive)
					}
				})
				req, _ := http.NewRequest("GET", u+"/warm", nil)
				resp, err := tc.rt.RoundTrip(req)
				if err != nil {
					t.Fatal(err)
				}
				drain(t, resp)
				var rb io.Reader
				if body != "" {
					rb = strings.NewReader(body) // GetBody is set, as outbound's 401 retry sets it
				}
				req, _ = http.NewRequest("POST", u+"/transfer", rb)
				resp, err = tc.rt.RoundTrip(req)
				if err == nil {
					drain(t, resp)
				}
				if n := posts.Load(); n != 1 {
					t.Errorf("the app received the POST %d times (RoundTrip error: %v)", n, err)
				}
			})
		}
	}
}

// noPeek hides the socket, so that alive() cannot peek at it: this is the
// app closing the idle connection right after alive() looked (the race
// the retry exists for), and every non-unix build (h1client_other.go).
type noPeek struct{ net.Conn }

// TestTheRetryDoesNotRaceTheFirstWriter: when the pooled connection
// turns out closed, RoundTrip assigns req.Body (the caller's Request)
// while the first attempt's writer goroutine may still be reading
// req.Body. Run with -race.
func TestTheRetryDoesNotRaceTheFirstWriter(t *testing.T) {
	u := rawApp(t, func(i int, c net.Conn, br *bufio.Reader) {
		if i%2 == 0 {
			return // the pooled connection: closed at once
		}
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			_, _ = io.Copy(io.Discard, req.Body)
			_, _ = io.WriteString(c, okKeepAlive)
		}
	})
	addr := strings.TrimPrefix(u, "http://")
	c := newTestH1Client(2 * time.Second) // bounds the call when the retry's body was eaten
	payload := bytes.Repeat([]byte("x"), 64<<10)
	for i := range 20 {
		conn, err := c.dial(context.Background(), addr)
		if err != nil {
			t.Fatal(err)
		}
		conn.Conn = noPeek{conn.Conn} // alive() cannot look
		c.put(addr, conn)
		time.Sleep(5 * time.Millisecond) // the app's FIN is in
		req, _ := http.NewRequest("POST", u, bytes.NewReader(payload))
		req.Header.Set("Idempotency-Key", "k1") // may be sent again
		orig := req.Body
		resp, err := c.RoundTrip(req)
		if err != nil {
			t.Fatalf("attempt %d: %v", i+1, err)
		}
		drain(t, resp)
		if req.Body != orig {
			t.Fatal("RoundTrip replaced the caller's req.Body (a RoundTripper must not modify the request)")
		}
		c.CloseIdleConnections()
	}
}

// TestTheHeaderTimeoutStartsOnceTheRequestIsSent: ResponseHeaderTimeout
// (INBOUND_UPSTREAM_TIMEOUT, 60 s by default) bounds the wait for the answer
// after the request is written, as http.Transport does; an upload that
// takes longer than the bound, to an app that reads it all, must not fail.
func TestTheHeaderTimeoutStartsOnceTheRequestIsSent(t *testing.T) {
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		fmt.Fprintf(w, "%d", n)
	}))
	t.Cleanup(app.Close)
	for _, tc := range bothClients(300 * time.Millisecond) {
		t.Run(tc.name, func(t *testing.T) {
			pr, pw := io.Pipe()
			go func() { // 10 chunks, 100 ms apart: a 1 s upload
				for range 10 {
					time.Sleep(100 * time.Millisecond)
					if _, err := pw.Write(bytes.Repeat([]byte("x"), 1000)); err != nil {
						return
					}
				}
				pw.Close()
			}()
			req, _ := http.NewRequest("POST", app.URL, pr)
			resp, err := tc.rt.RoundTrip(req)
			if err != nil {
				t.Fatalf("a 1 s upload with a 300 ms header timeout: %v", err)
			}
			if b := drain(t, resp); b != "10000" {
				t.Errorf("the app read %s bytes", b)
			}
		})
	}
}

// TestARequestBodyThatFailsEndsTheCall: a caller sends a chunked body
// that turns malformed after a first chunk. The sidecar's read of it fails
// (without ending the request's context); the app, which reads the body,
// waits for the rest. http.Transport closes the connection and answers
// 502 at once; the call must not sit until ResponseHeaderTimeout (then a
// 504 that blames the app) or, with UPSTREAM_TIMEOUT=0, for ever.
func TestARequestBodyThatFailsEndsTheCall(t *testing.T) {
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		_, _ = w.Write([]byte("ok"))
	}))
	t.Cleanup(app.Close)
	target, _ := url.Parse(app.URL)
	for _, tc := range bothClients(2 * time.Second) {
		t.Run(tc.name, func(t *testing.T) {
			front := httptest.NewServer(NewReverseProxy(target, ReverseProxyOptions{Transport: tc.rt}))
			t.Cleanup(front.Close)
			nc, err := net.Dial("tcp", strings.TrimPrefix(front.URL, "http://"))
			if err != nil {
				t.Fatal(err)
			}
			defer nc.Close()
			_, _ = io.WriteString(nc, "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\n")
			_ = nc.SetReadDeadline(time.Now().Add(5 * time.Second))
			began := time.Now()
			resp, err := http.ReadResponse(bufio.NewReader(nc), nil)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if took := time.Since(began); took > time.Second || resp.StatusCode == http.StatusGatewayTimeout {
				t.Errorf("answer %d after %s, want a 502 at once", resp.StatusCode, took.Round(time.Millisecond))
			}
		})
	}
}

// TestAnEarlyAnswerIsNotHeldUntilTheUploadEnds: the app answers 401
// as soon as it has the headers, keeps the connection, and reads no more
// of the body. The answer is whole; its body's end must not wait for a
// request body that never ends (http.Transport waits 50 ms for the
// writer, then drops the connection).
func TestAnEarlyAnswerIsNotHeldUntilTheUploadEnds(t *testing.T) {
	for _, tc := range bothClients(0) {
		t.Run(tc.name, func(t *testing.T) {
			u := rawApp(t, func(_ int, c net.Conn, br *bufio.Reader) {
				if _, err := http.ReadRequest(br); err != nil {
					return
				}
				_, _ = io.WriteString(c, "HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n")
				_, _ = io.Copy(io.Discard, br) // until the client goes
			})
			pr, pw := io.Pipe()
			defer pw.Close()
			go func() {
				for {
					if _, err := pw.Write([]byte("x")); err != nil {
						return
					}
					time.Sleep(10 * time.Millisecond)
				}
			}()
			req, _ := http.NewRequest("POST", u, pr)
			resp, err := tc.rt.RoundTrip(req)
			if err != nil {
				t.Fatal(err)
			}
			done := make(chan struct{})
			go func() { _, _ = io.ReadAll(resp.Body); resp.Body.Close(); close(done) }()
			select {
			case <-done:
			case <-time.After(2 * time.Second):
				pw.CloseWithError(errors.New("test over"))
				<-done
				t.Error("the 401 was read whole, but reading its (empty) body did not end while the upload went on")
			}
		})
	}
}

// TestAnswerHeadersAreBounded: an upstream that sends endless
// header bytes. http.Transport gives up after MaxResponseHeaderBytes (10 MiB
// by default); the sidecar must not buffer whatever an upstream sends.
func TestAnswerHeadersAreBounded(t *testing.T) {
	const total = 32 << 20
	for _, tc := range bothClients(0) {
		t.Run(tc.name, func(t *testing.T) {
			var sent atomic.Int64
			u := rawApp(t, func(_ int, c net.Conn, br *bufio.Reader) {
				if _, err := http.ReadRequest(br); err != nil {
					return
				}
				if _, err := io.WriteString(c, "HTTP/1.1 200 OK\r\nX-Big: "); err != nil {
					return
				}
				chunk := bytes.Repeat([]byte("a"), 1<<20)
				for sent.Load() < total {
					n, err := c.Write(chunk)
					sent.Add(int64(n))
					if err != nil {
						return
					}
				}
				_, _ = io.WriteString(c, "\r\nContent-Length: 0\r\n\r\n")
			})
			req, _ := http.NewRequest("GET", u, nil)
			resp, err := tc.rt.RoundTrip(req)
			if err == nil {
				resp.Body.Close()
				t.Errorf("took an answer with a %d MiB header (the upstream sent %d MiB)", len(resp.Header.Get("X-Big"))>>20, sent.Load()>>20)
				return
			}
			// The bytes sent count what the kernel's socket buffers took
			// too (the receive buffer grows to tcp_rmem's 32 MiB here),
			// so only the upstream's sending it all says the client read
			// on; the client's own bound shows in its error.
			if s := sent.Load(); s >= total {
				t.Errorf("gave up (%v) only after %d MiB: all the upstream sent", err, s>>20)
			}
			if tc.name == "h1Client" && !errors.Is(err, errHeadersTooLarge) {
				t.Errorf("gave up with %v, want errHeadersTooLarge: the bound on what it reads", err)
			}
		})
	}
}

// TestACancelDuringTheHeadersEndsTheBodyRead: the caller goes away
// while the answer's headers are being read. The request's AfterFunc puts
// the connection's deadline in the past; send then clears the read deadline
// it set for ResponseHeaderTimeout, and with it the one the cancel set. The
// body read of a streamed answer then waits for the app for ever. (The 103
// here only places the cancel in that window deterministically; a caller
// can go away at any moment.)
func TestACancelDuringTheHeadersEndsTheBodyRead(t *testing.T) {
	for _, tc := range bothClients(5 * time.Second) {
		t.Run(tc.name, func(t *testing.T) {
			u := rawApp(t, func(_ int, c net.Conn, br *bufio.Reader) {
				if _, err := http.ReadRequest(br); err != nil {
					return
				}
				// One write: the 103 and the final headers of an event
				// stream that sends nothing yet.
				_, _ = io.WriteString(c, "HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n"+
					"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
				_, _ = io.Copy(io.Discard, br)
			})
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
				Got1xxResponse: func(int, textproto.MIMEHeader) error {
					cancel()
					time.Sleep(50 * time.Millisecond) // the AfterFunc has run
					return nil
				},
			})
			req, _ := http.NewRequestWithContext(ctx, "GET", u, nil)
			resp, err := tc.rt.RoundTrip(req)
			if err != nil {
				return // ended: fine
			}
			done := make(chan error, 1)
			go func() { _, err := resp.Body.Read(make([]byte, 10)); done <- err }()
			select {
			case <-done:
			case <-time.After(2 * time.Second):
				// Not closed here: Read and Close are for one goroutine.
				// The cleanup's closing of the app's side ends the read.
				t.Error("the caller went away, but the body read still waits for the app")
			}
		})
	}
}

// TestAPooledConnectionResetIsRetriedForAGet: the app closes an idle
// connection just as a GET arrives on it; as the GET's bytes sit unread, the
// close is a reset, not a FIN. The GET was not processed; http.Transport
// sends it again on a new connection, as h1Client does after a FIN.
func TestAPooledConnectionResetIsRetriedForAGet(t *testing.T) {
	for _, tc := range bothClients(0) {
		t.Run(tc.name, func(t *testing.T) {
			u := rawApp(t, func(i int, c net.Conn, br *bufio.Reader) {
				for n := 0; ; n++ {
					if i == 0 && n == 1 {
						_, _ = br.Peek(1) // the next request has come: close on it, unread
						_ = c.(*net.TCPConn).SetLinger(0)
						return
					}
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					_, _ = io.Copy(io.Discard, req.Body)
					_, _ = io.WriteString(c, okKeepAlive)
				}
			})
			for n := range 2 {
				req, _ := http.NewRequest("GET", u, nil)
				resp, err := tc.rt.RoundTrip(req)
				if err != nil {
					t.Fatalf("GET %d: %v", n+1, err)
				}
				drain(t, resp)
			}
		})
	}
}

// TestIdleConnectionsTheAppClosedAreLetGo: after a burst, the pool
// holds several connections; steady traffic then uses only the newest, and
// the others, which the app closes after its idle timeout, stay in the
// pool (sockets in CLOSE_WAIT) for as long as traffic goes on, past
// idleTimeout too. http.Transport drops them as soon as the app closes them.
func TestIdleConnectionsTheAppClosedAreLetGo(t *testing.T) {
	gate := make(chan struct{})
	var waiting atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/burst" {
			waiting.Add(1)
			<-gate
		}
		_, _ = w.Write([]byte("ok"))
	}))
	srv.Config.IdleTimeout = 100 * time.Millisecond
	srv.Start()
	t.Cleanup(srv.Close)
	c := newTestH1Client(0)
	c.idleTimeout = 200 * time.Millisecond
	get := func(path string) {
		req, _ := http.NewRequest("GET", srv.URL+path, nil)
		resp, err := c.RoundTrip(req)
		if err != nil {
			t.Error(err)
			return
		}
		drain(t, resp)
	}
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() { get("/burst") })
	}
	for waiting.Load() < 4 {
		time.Sleep(time.Millisecond)
	}
	close(gate)
	wg.Wait()
	for range 25 { // 500 ms of steady traffic, one call at a time
		get("/")
		time.Sleep(20 * time.Millisecond)
	}
	addr := strings.TrimPrefix(srv.URL, "http://")
	c.mu.Lock()
	pooled := append([]*h1Conn(nil), c.idle[addr]...)
	c.mu.Unlock()
	dead := 0
	for _, conn := range pooled {
		if peekClosed(conn.Conn) || time.Since(conn.idleSince) > c.idleTimeout {
			dead++
		}
	}
	if dead > 0 {
		t.Errorf("the pool holds %d of %d connections that the app closed or that are past idleTimeout", dead, len(pooled))
	}
}

// --- What was checked and found sound (these pass) ---

// TestNoMixUpOnMisframedAnswers: answers that carry more bytes than
// their framing says (a body longer than Content-Length, a HEAD, 204 and
// 304 with bodies, an answer nobody asked for) do not become the answer to
// the next request on the connection, when the extra bytes are in before
// the next request is sent (after that, no HTTP/1.1 client can tell).
func TestNoMixUpOnMisframedAnswers(t *testing.T) {
	for _, tc := range []struct{ method, answer string }{
		{"GET", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nEVIL!"},
		{"HEAD", "HTTP/1.1 200 OK\r\nContent-Length: 37\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nEVIL!"},
		{"GET", "HTTP/1.1 204 No Content\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nEVIL!"},
		{"GET", "HTTP/1.1 304 Not Modified\r\nContent-Length: 37\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nEVIL!"},
		{"GET", "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nEVIL!"},
	} {
		for _, split := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s %.12s split=%v", tc.method, tc.answer[9:], split), func(t *testing.T) {
				u := rawApp(t, func(i int, c net.Conn, br *bufio.Reader) {
					for n := 0; ; n++ {
						if _, err := http.ReadRequest(br); err != nil {
							return
						}
						if i > 0 || n > 0 {
							_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\ngood")
							continue
						}
						if !split {
							_, _ = io.WriteString(c, tc.answer)
							continue
						}
						// The extra bytes in a later segment.
						cut := strings.LastIndex(tc.answer, "HTTP/1.1 200 OK\r\nContent-Length: 5")
						_, _ = io.WriteString(c, tc.answer[:cut])
						time.Sleep(5 * time.Millisecond)
						_, _ = io.WriteString(c, tc.answer[cut:])
					}
				})
				c := newTestH1Client(0)
				req, _ := http.NewRequest(tc.method, u, nil)
				resp, err := c.RoundTrip(req)
				if err != nil {
					t.Fatal(err)
				}
				drain(t, resp)
				time.Sleep(30 * time.Millisecond)
				req, _ = http.NewRequest("GET", u, nil)
				resp, err = c.RoundTrip(req)
				if err != nil {
					t.Fatal(err)
				}
				if b := drain(t, resp); b != "good" {
					t.Errorf("second answer %q", b)
				}
			})
		}
	}
}

// TestCloseIsHonoured: Connection: close from either side, and an
// HTTP/1.0 answer, are not reused; Request.Close is sent as
// Connection: close.
func TestCloseIsHonoured(t *testing.T) {
	var conns atomic.Int64
	var sawClose atomic.Bool
	u := rawApp(t, func(i int, c net.Conn, br *bufio.Reader) {
		conns.Add(1)
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			switch req.URL.Path {
			case "/close":
				_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok")
			case "/http10":
				_, _ = io.WriteString(c, "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok")
			default:
				if req.Close {
					sawClose.Store(true)
				}
				_, _ = io.WriteString(c, okKeepAlive)
			}
		}
	})
	c := newTestH1Client(0)
	for _, p := range []string{"/close", "/http10", "/reqclose", "/"} {
		req, _ := http.NewRequest("GET", u+p, nil)
		req.Close = p == "/reqclose"
		resp, err := c.RoundTrip(req)
		if err != nil {
			t.Fatal(p, err)
		}
		drain(t, resp)
	}
	if n := conns.Load(); n != 4 || !sawClose.Load() {
		t.Errorf("%d connections for 4 calls of which 3 close; Connection: close sent: %v", n, sawClose.Load())
	}
}

// TestCancelMidBodyDropsTheConnection: a caller that goes away while
// the answer's body streams gets an error, the connection is not pooled,
// and no goroutine is left.
func TestCancelMidBodyDropsTheConnection(t *testing.T) {
	u := rawApp(t, func(_ int, c net.Conn, br *bufio.Reader) {
		if _, err := http.ReadRequest(br); err != nil {
			return
		}
		_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello")
		_, _ = io.Copy(io.Discard, br)
	})
	c := newTestH1Client(time.Second)
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", u, nil)
	resp, err := c.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	time.AfterFunc(50*time.Millisecond, cancel)
	if _, err := io.ReadAll(resp.Body); err == nil {
		t.Error("a body cut short by the cancel read without error")
	}
	resp.Body.Close()
	c.mu.Lock()
	n := len(c.idle[strings.TrimPrefix(u, "http://")])
	c.mu.Unlock()
	if n != 0 {
		t.Errorf("%d connections pooled after a cancelled body", n)
	}
}

// TestHostForms: an IPv6 literal reaches the app, and the Host
// header is the URL's or req.Host.
func TestHostForms(t *testing.T) {
	ln, err := net.Listen("tcp", "[::1]:0")
	if err != nil {
		t.Skip("no IPv6 loopback:", err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte(r.Host)) })}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	c := newTestH1Client(0)
	for _, tc := range []struct{ url, host, want string }{
		{"http://" + ln.Addr().String() + "/", "", ln.Addr().String()},
		{"http://" + ln.Addr().String() + "/", "app.internal", "app.internal"},
	} {
		req, _ := http.NewRequest("GET", tc.url, nil)
		if tc.host != "" {
			req.Host = tc.host
		}
		resp, err := c.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		if b := drain(t, resp); b != tc.want {
			t.Errorf("Host %q, want %q", b, tc.want)
		}
	}
}

type closeCounting struct {
	io.Reader
	closed atomic.Int64
}

func (c *closeCounting) Close() error { c.closed.Add(1); return nil }

// TestTheBodyIsClosedWhenTheDialFails: a RoundTripper closes the
// request's body on every path, errors included (http.RoundTripper's
// contract; http.Transport does).
func TestTheBodyIsClosedWhenTheDialFails(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	for _, tc := range bothClients(0) {
		t.Run(tc.name, func(t *testing.T) {
			body := &closeCounting{Reader: strings.NewReader("x")}
			req, _ := http.NewRequest("POST", "http://"+addr, body)
			if _, err := tc.rt.RoundTrip(req); err == nil {
				t.Fatal("a dial to a closed port succeeded")
			}
			if body.closed.Load() == 0 {
				t.Error("the body was not closed")
			}
		})
	}
}
