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

// BenchmarkSocketWrites counts the socket writes toward the caller per
// request through the sidecar's reverse proxy (proxy.NewReverseProxy,
// shared by inbound and outbound) to the app's small, sized answer: one,
// header and body together. httputil's FlushInterval of -1, which the
// sidecar once had, made two: a timer per answer that fired at once on
// another goroutine and flushed the header alone. Answers that must
// stream (no Content-Length, text/event-stream) are flushed as they come.
func BenchmarkSocketWrites(b *testing.B) {
	app := httptest.NewServer(loadbench.AppHandler())
	defer app.Close()
	target, _ := url.Parse(app.URL)
	rp := proxy.NewReverseProxy(target, proxy.ReverseProxyOptions{
		Transport: proxy.NewTransport(proxy.TransportOptions{Protocol: proxy.ProtocolHTTP1, DialTimeout: 5 * time.Second}), KeepHost: true,
	})
	var writes atomic.Int64
	srv := httptest.NewUnstartedServer(rp)
	srv.Listener = countingListener{Listener: srv.Listener, writes: &writes}
	srv.Start()
	defer srv.Close()
	drive(b, loadbench.Target{URL: srv.URL + path})
	b.StopTimer()
	b.ReportMetric(float64(writes.Load())/float64(b.N), "writes/op")
}
