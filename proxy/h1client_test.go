package proxy

import (
	"bytes"
	"context"
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

func newTestH1Client(headerTimeout time.Duration) *h1Client {
	o := TransportOptions{Protocol: ProtocolHTTP1, DialTimeout: time.Second, ResponseHeaderTimeout: headerTimeout}
	return newH1Client(o, newTransport(o, nil, func(ps *http.Protocols) { ps.SetHTTP1(true) }))
}

// counting is an app that counts the connections it is sent requests on.
func counting(t *testing.T, h http.HandlerFunc) (*httptest.Server, *atomic.Int64) {
	var conns atomic.Int64
	srv := httptest.NewUnstartedServer(h)
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	return srv, &conns
}

func TestTheSynchronousClientReusesConnections(t *testing.T) {
	srv, conns := counting(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("Trailer", "X-Sum")
		_, _ = w.Write(append([]byte(r.Method+" "+r.URL.RequestURI()+" "), b...))
		w.Header().Set("X-Sum", "7")
	})
	c := newTestH1Client(0)
	for i := range 20 {
		var body io.Reader
		if i%2 == 1 {
			body = strings.NewReader("payload")
		}
		req, _ := http.NewRequest(map[bool]string{false: "GET", true: "POST"}[i%2 == 1], srv.URL+"/x?i=1", body)
		resp, err := c.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		want := map[bool]string{false: "GET /x?i=1 ", true: "POST /x?i=1 payload"}[i%2 == 1]
		if string(b) != want || resp.Trailer.Get("X-Sum") != "7" {
			t.Fatalf("answer %d: %q trailer %q", i, b, resp.Trailer.Get("X-Sum"))
		}
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("20 sequential requests took %d connections, want 1", n)
	}
}

// TestAnAnswerBeforeTheBodyIsAllSentIsRead: an app that answers 413 at
// once, while the request body is still coming, does not deadlock the
// client, and the connection is not reused.
func TestAnAnswerBeforeTheBodyIsAllSentIsRead(t *testing.T) {
	srv, _ := counting(t, func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Connection", "close")
		w.WriteHeader(http.StatusRequestEntityTooLarge)
	})
	c := newTestH1Client(0)
	pr, pw := io.Pipe()
	t.Cleanup(func() { pw.Close() })
	go func() { _, _ = pw.Write(bytes.Repeat([]byte("x"), 1<<20)) }() // and never ends
	req, _ := http.NewRequest("POST", srv.URL, pr)
	done := make(chan *http.Response, 1)
	go func() {
		resp, err := c.RoundTrip(req)
		if err != nil {
			t.Error(err)
		}
		done <- resp
	}()
	select {
	case resp := <-done:
		if resp != nil && resp.StatusCode != http.StatusRequestEntityTooLarge {
			t.Errorf("status %d", resp.StatusCode)
		}
		if resp != nil {
			resp.Body.Close()
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no answer while the body was still being written")
	}
}

func TestAConnectionTheAppClosedIsReplacedForAReplayableRequest(t *testing.T) {
	var mu sync.Mutex
	var last net.Conn
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) }))
	srv.Config.ConnState = func(c net.Conn, s http.ConnState) {
		if s == http.StateIdle {
			mu.Lock()
			last = c
			mu.Unlock()
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	c := newTestH1Client(0)
	get := func() error {
		req, _ := http.NewRequest("GET", srv.URL, nil)
		resp, err := c.RoundTrip(req)
		if err != nil {
			return err
		}
		_, _ = io.ReadAll(resp.Body)
		return resp.Body.Close()
	}
	if err := get(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	mu.Lock()
	_ = last.Close() // the app drops the idle connection
	mu.Unlock()
	time.Sleep(50 * time.Millisecond)
	if err := get(); err != nil {
		t.Errorf("after the app closed the pooled connection: %v", err)
	}
}

func TestTheSynchronousClientHonoursDeadlinesAndEarlyHints(t *testing.T) {
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	srv, _ := counting(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/slow":
			select {
			case <-release:
			case <-r.Context().Done():
			}
		case "/hints":
			w.Header().Set("Link", "</a.css>; rel=preload")
			w.WriteHeader(http.StatusEarlyHints)
			_, _ = w.Write([]byte("final"))
		}
	})
	c := newTestH1Client(200 * time.Millisecond)
	req, _ := http.NewRequest("GET", srv.URL+"/slow", nil)
	began := time.Now()
	_, err := c.RoundTrip(req)
	if !timedOut(err, req) || time.Since(began) > 2*time.Second {
		t.Errorf("slow headers: %v after %s, want a timeout (504) after 200ms", err, time.Since(began))
	}
	ctx, cancel := context.WithCancel(context.Background())
	req, _ = http.NewRequestWithContext(ctx, "GET", srv.URL+"/slow", nil)
	time.AfterFunc(50*time.Millisecond, cancel)
	if _, err := c.RoundTrip(req); err != context.Canceled {
		t.Errorf("a cancelled request: %v, want context.Canceled", err)
	}
	var hints string
	req, _ = http.NewRequest("GET", srv.URL+"/hints", nil)
	req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
		Got1xxResponse: func(code int, h textproto.MIMEHeader) error { hints = h.Get("Link"); return nil },
	}))
	resp, err := c.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "final" || hints != "</a.css>; rel=preload" {
		t.Errorf("103 then 200: body %q, hints %q", b, hints)
	}
}

// BenchmarkReverseProxyHop compares, in one run, the hop to the app over
// http.Transport and over the synchronous client: a ReverseProxy in front
// of a loopback app, parallel callers on keep-alive connections.
func BenchmarkReverseProxyHop(b *testing.B) {
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("hello from the app!")) }))
	b.Cleanup(app.Close)
	u, _ := url.Parse(app.URL)
	o := TransportOptions{Protocol: ProtocolHTTP1, DialTimeout: time.Second}
	std := newTransport(o, nil, func(ps *http.Protocols) { ps.SetHTTP1(true) })
	for _, tc := range []struct {
		name string
		rt   http.RoundTripper
	}{{"http.Transport", std}, {"h1Client", newH1Client(o, std)}} {
		rt := tc.rt
		b.Run(tc.name, func(b *testing.B) {
			front := httptest.NewServer(NewReverseProxy(u, ReverseProxyOptions{Transport: rt}))
			defer front.Close()
			client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
			b.ReportAllocs()
			b.SetParallelism(16)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					resp, err := client.Get(front.URL + "/orders/1")
					if err != nil {
						b.Fatal(err)
					}
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			})
		})
	}
}

// TestAPostIsNotSentOnAConnectionTheAppClosed: an app that closes idle
// connections after a while (Node.js: 5 s) must not cost a call that
// cannot be sent again, a streamed POST.
func TestAPostIsNotSentOnAConnectionTheAppClosed(t *testing.T) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		_, _ = w.Write([]byte("ok"))
	}))
	srv.Config.IdleTimeout = 100 * time.Millisecond
	srv.Start()
	t.Cleanup(srv.Close)
	c := newTestH1Client(0)
	for i := range 3 {
		pr, pw := io.Pipe()
		go func() { _, _ = pw.Write([]byte("streamed")); pw.Close() }()
		req, _ := http.NewRequest("POST", srv.URL, pr) // no GetBody: cannot be sent twice
		resp, err := c.RoundTrip(req)
		if err != nil {
			t.Fatalf("POST %d after the app closed the idle connection: %v", i+1, err)
		}
		_, _ = io.ReadAll(resp.Body)
		resp.Body.Close()
		time.Sleep(300 * time.Millisecond)
	}
}
