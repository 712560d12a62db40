package proxy

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// listenFront serves h on loopback through Listen, as every cleartext
// listener of the sidecar is served, and returns the address.
func listenFront(t *testing.T, h http.Handler, tune ...func(*ServerOptions)) (*Server, string) {
	t.Helper()
	opts := DefaultServerOptions(slog.New(slog.DiscardHandler))
	for _, f := range tune {
		f(&opts)
	}
	s, err := Listen("test", "127.0.0.1:0", h, opts)
	if err != nil {
		t.Fatal(err)
	}
	if s.front == nil {
		t.Fatal("a cleartext listener has no front")
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve() }()
	t.Cleanup(func() {
		_ = s.Close()
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return s, s.Addr().String()
}

// rawClient is one connection to the server, written raw and read with
// net/http's response parser.
type rawClient struct {
	t    *testing.T
	conn net.Conn
	br   *bufio.Reader
}

func dialRaw(t *testing.T, addr string) *rawClient {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	return &rawClient{t: t, conn: conn, br: bufio.NewReader(conn)}
}

func (c *rawClient) send(raw string) {
	c.t.Helper()
	if _, err := io.WriteString(c.conn, raw); err != nil {
		c.t.Fatal(err)
	}
}

// read reads one answer to a request of method, and its body.
func (c *rawClient) read(method string) (*http.Response, string) {
	c.t.Helper()
	resp, err := http.ReadResponse(c.br, &http.Request{Method: method})
	if err != nil {
		c.t.Fatalf("reading an answer: %v", err)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		c.t.Fatalf("reading an answer's body: %v", err)
	}
	return resp, string(body)
}

// closed reports whether the server closed the connection.
func (c *rawClient) closed() bool {
	_ = c.conn.SetReadDeadline(time.Now().Add(2 * time.Second))
	_, err := c.br.ReadByte()
	return err != nil
}

func TestFrontServesPipelinedRequestsInOrder(t *testing.T) {
	_, addr := listenFront(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s %s %s host=%s", r.Method, r.URL.RequestURI(), body, r.Host)
	}))
	c := dialRaw(t, addr)
	c.send("GET /one HTTP/1.1\r\nHost: a\r\n\r\n" +
		"POST /two HTTP/1.1\r\nHost: b\r\nContent-Length: 3\r\n\r\nxyz" +
		"POST /three HTTP/1.1\r\nHost: c\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n" +
		"GET /four?q=1 HTTP/1.1\r\nHost: d\r\n\r\n")
	for _, want := range []string{"GET /one  host=a", "POST /two xyz host=b", "POST /three hi host=c", "GET /four?q=1  host=d"} {
		resp, body := c.read("GET")
		if resp.StatusCode != 200 || body != want {
			t.Errorf("answer %d %q, want 200 %q", resp.StatusCode, body, want)
		}
		if resp.ContentLength != int64(len(want)) {
			t.Errorf("a short answer without Content-Length got ContentLength %d, want %d", resp.ContentLength, len(want))
		}
		if resp.Header.Get("Date") == "" {
			t.Error("no Date header")
		}
	}
}

func TestFrontFramesAnswersAsNetHTTPDoes(t *testing.T) {
	big := strings.Repeat("b", 3*frontSmallBody)
	_, addr := listenFront(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/big":
			_, _ = io.WriteString(w, big)
		case "/flushed":
			_, _ = io.WriteString(w, "part1")
			w.(http.Flusher).Flush()
			_, _ = io.WriteString(w, "part2")
		case "/sized":
			w.Header().Set("Content-Length", "5")
			_, _ = io.WriteString(w, "sized")
		case "/empty":
			w.WriteHeader(http.StatusNoContent)
			_, _ = io.WriteString(w, "not allowed")
		case "/trailers":
			w.Header().Set("Trailer", "X-Sum")
			_, _ = io.WriteString(w, "with trailer")
			w.Header().Set("X-Sum", "42")
			w.Header().Set(http.TrailerPrefix+"X-Late", "yes")
		case "/injected":
			w.Header().Set("X-Evil", "a\r\nSet-Cookie: stolen=1")
		case "/early-hints":
			w.Header().Set("Link", "</style.css>; rel=preload")
			w.WriteHeader(http.StatusEarlyHints)
			w.WriteHeader(http.StatusOK)
			_, _ = io.WriteString(w, "after hints")
		}
	}))
	client := &http.Client{Timeout: 5 * time.Second}
	get := func(method, path string) (*http.Response, string) {
		t.Helper()
		req, _ := http.NewRequest(method, "http://"+addr+path, nil)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp, string(body)
	}
	if resp, body := get("GET", "/big"); body != big || resp.ContentLength != -1 || resp.TransferEncoding[0] != "chunked" {
		t.Errorf("/big: %d bytes, ContentLength %d, TE %v; want %d bytes, chunked", len(body), resp.ContentLength, resp.TransferEncoding, len(big))
	}
	if resp, body := get("GET", "/flushed"); body != "part1part2" || resp.ContentLength != -1 {
		t.Errorf("/flushed: %q ContentLength %d, want chunked part1part2", body, resp.ContentLength)
	}
	if resp, body := get("GET", "/sized"); body != "sized" || resp.ContentLength != 5 {
		t.Errorf("/sized: %q ContentLength %d", body, resp.ContentLength)
	}
	if resp, body := get("HEAD", "/sized"); body != "" || resp.ContentLength != 5 {
		t.Errorf("HEAD /sized: %q ContentLength %d, want no body and the length of GET's", body, resp.ContentLength)
	}
	if resp, body := get("GET", "/empty"); resp.StatusCode != 204 || body != "" {
		t.Errorf("/empty: %d %q, want 204 without body", resp.StatusCode, body)
	}
	if resp, body := get("GET", "/trailers"); body != "with trailer" || resp.Trailer.Get("X-Sum") != "42" || resp.Trailer.Get("X-Late") != "yes" {
		t.Errorf("/trailers: %q, trailers %v", body, resp.Trailer)
	}
	if resp, _ := get("GET", "/injected"); resp.Header.Get("Set-Cookie") != "" || resp.Header.Get("X-Evil") != "a Set-Cookie: stolen=1" {
		t.Errorf("/injected: a line break in a header value split the header: %v", resp.Header)
	}
	c := dialRaw(t, addr)
	c.send("GET /early-hints HTTP/1.1\r\nHost: a\r\n\r\n")
	hints, err := http.ReadResponse(c.br, nil)
	if err != nil || hints.StatusCode != http.StatusEarlyHints || hints.Header.Get("Link") == "" {
		t.Fatalf("want 103 with Link first: %v %v", hints, err)
	}
	if resp, body := c.read("GET"); resp.StatusCode != 200 || body != "after hints" {
		t.Errorf("after 103: %d %q", resp.StatusCode, body)
	}
}

// TestFrontHandsOverWhatItDoesNotServe: each of these reaches a handler
// that can tell net/http served it (net/http's writer can hijack, the
// front's cannot), and works as net/http makes it work.
func TestFrontHandsOverWhatItDoesNotServe(t *testing.T) {
	_, addr := listenFront(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, byNetHTTP := w.(http.Hijacker)
		body, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s nethttp=%v body=%s", r.Proto, byNetHTTP, body)
	}))
	cases := []struct{ name, raw, want string }{
		{"HTTP/1.0", "GET / HTTP/1.0\r\n\r\n", "HTTP/1.0 nethttp=true body="},
		{"Expect", "POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nhi", "HTTP/1.1 nethttp=true body=hi"},
		{"Upgrade", "GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n", "HTTP/1.1 nethttp=true body="},
		{"absolute form", "GET http://a/ HTTP/1.1\r\nHost: a\r\n\r\n", "HTTP/1.1 nethttp=true body="},
		{"headers past the read buffer", "GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + strings.Repeat("b", frontReadBuffer) + "\r\n\r\n", "HTTP/1.1 nethttp=true body="},
		{"plain", "GET / HTTP/1.1\r\nHost: a\r\n\r\n", "HTTP/1.1 nethttp=false body="},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := dialRaw(t, addr)
			c.send(tc.raw)
			resp, body := c.read("GET")
			if tc.name == "Expect" && resp.StatusCode == http.StatusContinue {
				resp, body = c.read("GET")
			}
			if resp.StatusCode != 200 || body != tc.want {
				t.Errorf("%d %q, want 200 %q", resp.StatusCode, body, tc.want)
			}
		})
	}
	t.Run("a connection handed over stays with net/http, bytes and all", func(t *testing.T) {
		c := dialRaw(t, addr)
		c.send("GET / HTTP/1.1\r\nHost: a\r\n\r\nPOST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nhiGET / HTTP/1.1\r\nHost: a\r\n\r\n")
		for _, want := range []string{"nethttp=false body=", "nethttp=true body=hi", "nethttp=true body="} {
			resp, body := c.read("GET")
			if resp.StatusCode == http.StatusContinue {
				resp, body = c.read("GET")
			}
			if !strings.HasSuffix(body, want) {
				t.Errorf("%d %q, want …%q", resp.StatusCode, body, want)
			}
		}
	})
}

func TestFrontKeepsTheHeaderCap(t *testing.T) {
	_, addr := listenFront(t, http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}), func(o *ServerOptions) {
		o.MaxHeaderBytes = 4096
	})
	for _, tc := range []struct {
		size int
		want int
	}{{1000, 200}, {3000, 200}, {12 << 10, http.StatusRequestHeaderFieldsTooLarge}} {
		c := dialRaw(t, addr)
		c.send("GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + strings.Repeat("b", tc.size) + "\r\n\r\n")
		if resp, _ := c.read("GET"); resp.StatusCode != tc.want {
			t.Errorf("a %d-byte header: %d, want %d", tc.size, resp.StatusCode, tc.want)
		}
	}
}

func TestFrontRefusesWhatNetHTTPRefuses(t *testing.T) {
	var served atomic.Int32
	_, addr := listenFront(t, http.HandlerFunc(func(http.ResponseWriter, *http.Request) { served.Add(1) }))
	for _, raw := range []string{
		"GET / HTTP/1.1\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a b\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
		"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nX: a\x00b\r\n\r\n",
	} {
		c := dialRaw(t, addr)
		c.send(raw + "GET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n")
		resp, _ := c.read("GET")
		if resp.StatusCode < 400 || !c.closed() {
			t.Errorf("%q: %d, and the connection stayed open; want a refusal and a close", raw, resp.StatusCode)
		}
	}
	if n := served.Load(); n != 0 {
		t.Errorf("%d refused requests (or requests smuggled behind them) reached the handler", n)
	}
}

// TestFrontNoticesACallerThatLeaves: a caller that closes its connection
// while its request is served cancels the request's context, so that the
// upstream call it made ends too.
func TestFrontNoticesACallerThatLeaves(t *testing.T) {
	cancelled := make(chan error, 1)
	_, addr := listenFront(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// The body read first, as a proxy's transport reads it: net/http
		// too watches the caller only once the body is read.
		_, _ = io.ReadAll(r.Body)
		if r.URL.Path == "/fast" {
			return
		}
		select {
		case <-r.Context().Done():
			cancelled <- r.Context().Err()
		case <-time.After(5 * time.Second):
			cancelled <- nil
		}
	}))
	for _, raw := range []string{
		"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nhi",
	} {
		c := dialRaw(t, addr)
		c.send(raw)
		time.Sleep(50 * time.Millisecond)
		_ = c.conn.Close()
		if err := <-cancelled; err == nil {
			t.Errorf("%q: the caller left and the request's context was not cancelled", raw)
		}
	}
	// The connection's watch and its timer serve request after request:
	// after quick ones, and one the caller stayed for past the delay.
	c := dialRaw(t, addr)
	for range 3 {
		c.send("GET /fast HTTP/1.1\r\nHost: a\r\n\r\n")
		if resp, _ := c.read(http.MethodGet); resp.StatusCode != http.StatusOK {
			t.Fatalf("a quick request: %d", resp.StatusCode)
		}
		time.Sleep(2 * callerWatchDelay)
	}
	c.send("GET /slow HTTP/1.1\r\nHost: a\r\n\r\n")
	time.Sleep(50 * time.Millisecond)
	_ = c.conn.Close()
	if err := <-cancelled; err == nil {
		t.Error("after quick requests on its connection, the caller left and the request's context was not cancelled")
	}
}

// TestFrontKeepsTheByteTheWatchReads: the caller watch reads from the
// connection while a slow request runs; a pipelined request that comes
// in then must be served whole.
func TestFrontKeepsTheByteTheWatchReads(t *testing.T) {
	_, addr := listenFront(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			time.Sleep(20 * callerWatchDelay)
		}
		_, _ = io.WriteString(w, r.URL.Path)
	}))
	c := dialRaw(t, addr)
	c.send("GET /slow HTTP/1.1\r\nHost: a\r\n\r\n")
	time.Sleep(5 * callerWatchDelay)
	c.send("GET /next HTTP/1.1\r\nHost: a\r\n\r\n")
	for _, want := range []string{"/slow", "/next"} {
		if resp, body := c.read("GET"); resp.StatusCode != 200 || body != want {
			t.Errorf("%d %q, want 200 %q", resp.StatusCode, body, want)
		}
	}
}

func TestFrontUnreadBodies(t *testing.T) {
	_, addr := listenFront(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "not read")
	}))
	t.Run("a small one is read and the connection kept", func(t *testing.T) {
		c := dialRaw(t, addr)
		c.send("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10000\r\n\r\n" + strings.Repeat("x", 10000) + "GET /next HTTP/1.1\r\nHost: a\r\n\r\n")
		for range 2 {
			if resp, body := c.read("GET"); resp.StatusCode != 200 || body != "not read" {
				t.Fatalf("%d %q", resp.StatusCode, body)
			}
		}
	})
	t.Run("a large one closes the connection after the answer", func(t *testing.T) {
		c := dialRaw(t, addr)
		c.send("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10000000\r\n\r\n")
		go func() { _, _ = c.conn.Write(make([]byte, 1<<20)) }()
		resp, body := c.read("GET")
		if resp.StatusCode != 200 || body != "not read" {
			t.Fatalf("%d %q", resp.StatusCode, body)
		}
		if !resp.Close || !c.closed() {
			t.Error("the connection stayed open with 9 MB of a body unread")
		}
	})
}

func TestFrontSurvivesAPanickingHandler(t *testing.T) {
	_, addr := listenFront(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/panic" {
			panic("boom")
		}
		if r.URL.Path == "/abort" {
			_, _ = io.WriteString(w, "half")
			w.(http.Flusher).Flush()
			panic(http.ErrAbortHandler)
		}
		_, _ = io.WriteString(w, "fine")
	}))
	for _, path := range []string{"/panic", "/abort"} {
		c := dialRaw(t, addr)
		c.send("GET " + path + " HTTP/1.1\r\nHost: a\r\n\r\n")
		if path == "/abort" {
			resp, err := http.ReadResponse(c.br, nil)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := io.ReadAll(resp.Body); err == nil {
				t.Error("an aborted answer read as complete")
			}
		} else if !c.closed() {
			t.Errorf("%s: the connection stayed open", path)
		}
	}
	c := dialRaw(t, addr)
	c.send("GET / HTTP/1.1\r\nHost: a\r\n\r\n")
	if _, body := c.read("GET"); body != "fine" {
		t.Errorf("after the panics: %q", body)
	}
}

func TestFrontTimesOutSlowAndIdleCallers(t *testing.T) {
	_, addr := listenFront(t, http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}), func(o *ServerOptions) {
		o.ReadHeaderTimeout = 200 * time.Millisecond
		o.IdleTimeout = 300 * time.Millisecond
	})
	slow := dialRaw(t, addr)
	slow.send("GET / HTTP/1.1\r\nHost: a\r\n")
	idle := dialRaw(t, addr)
	idle.send("GET / HTTP/1.1\r\nHost: a\r\n\r\n")
	idle.read("GET")
	start := time.Now()
	if !slow.closed() || !idle.closed() {
		t.Fatal("a caller that never ended its headers, or an idle one, kept its connection")
	}
	if d := time.Since(start); d > 1500*time.Millisecond {
		t.Errorf("closed after %v", d)
	}
}

func TestFrontShutdownDrains(t *testing.T) {
	release := make(chan struct{})
	started := make(chan struct{})
	s, addr := listenFront(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			close(started)
			<-release
		}
		_, _ = io.WriteString(w, r.URL.Path)
	}))
	idle := dialRaw(t, addr)
	idle.send("GET /first HTTP/1.1\r\nHost: a\r\n\r\n")
	idle.read("GET")
	busy := dialRaw(t, addr)
	busy.send("GET /slow HTTP/1.1\r\nHost: a\r\n\r\n")
	<-started

	drained := make(chan error, 1)
	go func() { drained <- s.Shutdown(context.Background()) }()
	if !idle.closed() {
		t.Error("an idle connection stayed open through the drain")
	}
	select {
	case err := <-drained:
		t.Fatalf("Shutdown returned (%v) with a request in flight", err)
	case <-time.After(100 * time.Millisecond):
	}
	if _, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		t.Error("a new connection was accepted while draining")
	}
	close(release)
	resp, body := busy.read("GET")
	if body != "/slow" || !resp.Close {
		t.Errorf("the request in flight: %q close=%v, want its answer with Connection: close", body, resp.Close)
	}
	if err := <-drained; err != nil {
		t.Errorf("Shutdown: %v", err)
	}
}

func TestFrontServesH2CThroughTheHandOver(t *testing.T) {
	_, addr := listenFront(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, r.Proto)
	}))
	protos := new(http.Protocols)
	protos.SetUnencryptedHTTP2(true)
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{Protocols: protos}}
	resp, err := client.Get("http://" + addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if string(body) != "HTTP/2.0" {
		t.Errorf("h2c with prior knowledge: %q", body)
	}
}

// TestTheHeadScannerReadsALineOnce: fed a header block a byte at a time,
// as a trickling caller sends it, the scanner ends where and as it does
// fed the block at once, and never reads a line again: its offset only
// moves forward, to the end of the last whole line.
func TestTheHeadScannerReadsALineOnce(t *testing.T) {
	for _, seed := range frontSeeds {
		for _, first := range []bool{true, false} {
			whole := headScanner{first: first}
			wantEnd := whole.scan([]byte(seed))
			trickled := headScanner{first: first}
			end := 0
			for n := 1; n <= len(seed) && end == 0; n++ {
				prev := trickled.off
				end = trickled.scan([]byte(seed[:n]))
				if trickled.off < prev || trickled.off > n {
					t.Fatalf("%q: offset went from %d to %d at %d bytes", seed, prev, trickled.off, n)
				}
				if end == 0 && trickled.off != strings.LastIndexByte(seed[:n], '\n')+1 {
					t.Fatalf("%q: at %d bytes the offset is %d, not past the last whole line", seed, n, trickled.off)
				}
			}
			if end != wantEnd || trickled.h != whole.h || trickled.handOver != whole.handOver {
				t.Errorf("%q (first %v): trickled end %d %+v hand over %v; at once %d %+v %v",
					seed, first, end, trickled.h, trickled.handOver, wantEnd, whole.h, whole.handOver)
			}
		}
	}
}
