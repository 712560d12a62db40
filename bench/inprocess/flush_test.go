package inprocess

import (
	"net"
	"net/http/httptest"
	"net/url"
	"sync/atomic"
	"testing"
	"time"

	"github.com/authsidecar/authsidecar/bench/loadbench"
	"github.com/authsidecar/authsidecar/proxy"
)

// countingListener counts the Write calls on the connections it accepts:
// each is one write system call on the socket.
type countingListener struct {
	net.Listener
	writes *atomic.Int64
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return countingConn{Conn: c, writes: l.writes}, nil
}

type countingConn struct {
	net.Conn
	writes *atomic.Int64
}

func (c countingConn) Write(p []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(p)
}

// BenchmarkFlushInterval isolates one setting of the sidecar's reverse
// proxy (proxy.NewReverseProxy, shared by inbound and outbound): its
// FlushInterval of -1. With a negative interval, httputil starts a timer
// per response that fires at once on another goroutine and flushes the
// headers alone, then flushes again after the body: two writes to the
// caller's socket per small response instead of one. httputil already
// flushes at once on its own when a response has no Content-Length or is
// text/event-stream, so 0 keeps streaming responses streamed. writes/op is
// the socket writes toward the caller per request.
func BenchmarkFlushInterval(b *testing.B) {
	app := httptest.NewServer(loadbench.AppHandler())
	defer app.Close()
	target, _ := url.Parse(app.URL)
	for _, c := range []struct {
		name  string
		flush time.Duration
	}{{"as-shipped(-1)", -1}, {"zero", 0}} {
		b.Run(c.name, func(b *testing.B) {
			rp := proxy.NewReverseProxy(target, proxy.ReverseProxyOptions{
				Transport: proxy.NewTransport(proxy.TransportOptions{Protocol: proxy.ProtocolHTTP1, DialTimeout: 5 * time.Second}), KeepHost: true,
			})
			rp.FlushInterval = c.flush
			var writes atomic.Int64
			srv := httptest.NewUnstartedServer(rp)
			srv.Listener = countingListener{Listener: srv.Listener, writes: &writes}
			srv.Start()
			defer srv.Close()
			drive(b, loadbench.Target{URL: srv.URL + path})
			b.StopTimer()
			b.ReportMetric(float64(writes.Load())/float64(b.N), "writes/op")
		})
	}
}
