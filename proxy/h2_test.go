package proxy

import (
	"bytes"
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/authsidecar/authsidecar/internal/certtest"
)

func serve(t *testing.T, h http.Handler, opts ServerOptions) string {
	t.Helper()
	srv, err := Listen("test", "127.0.0.1:0", h, opts)
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve()
	t.Cleanup(func() { srv.Close() })
	return srv.Addr().String()
}

func h2cClient() *http.Client {
	p := new(http.Protocols)
	p.SetUnencryptedHTTP2(true)
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{Protocols: p}}
}

func TestEveryListenerSpeaksHTTP1AndHTTP2(t *testing.T) {
	proto := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte(r.Proto)) })
	plain := serve(t, proto, DefaultServerOptions(nil))
	get := func(c *http.Client, url string) string {
		t.Helper()
		resp, err := c.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var b bytes.Buffer
		b.ReadFrom(resp.Body)
		return b.String()
	}
	if got := get(http.DefaultClient, "http://"+plain+"/"); got != "HTTP/1.1" {
		t.Errorf("HTTP/1.1 client: the server saw %s", got)
	}
	if got := get(h2cClient(), "http://"+plain+"/"); got != "HTTP/2.0" {
		t.Errorf("h2c client with prior knowledge: the server saw %s", got)
	}

	ca := certtest.NewCA(t, "ca")
	dir := t.TempDir()
	certFile, keyFile := ca.Issue(t, certtest.Options{CommonName: "sidecar", DNSNames: []string{"127.0.0.1"}}).WriteFiles(t, dir, "tls")
	kp, err := LoadKeyPair("TLS_CERT_FILE", certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	opts := DefaultServerOptions(nil)
	opts.TLS = ServerTLS(kp, nil)
	secure := serve(t, proto, opts)
	alpn := func(protos ...string) *http.Client {
		p := new(http.Protocols)
		for _, n := range protos {
			if n == "h2" {
				p.SetHTTP2(true)
			} else {
				p.SetHTTP1(true)
			}
		}
		return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{Protocols: p, TLSClientConfig: &tls.Config{RootCAs: ca.Pool()}}}
	}
	if got := get(alpn("h2"), "https://"+secure+"/"); got != "HTTP/2.0" {
		t.Errorf("TLS with ALPN h2: the server saw %s", got)
	}
	if got := get(alpn("http/1.1"), "https://"+secure+"/"); got != "HTTP/1.1" {
		t.Errorf("TLS with ALPN http/1.1: the server saw %s", got)
	}
}

func TestTheHeaderCapHoldsForHTTP2(t *testing.T) {
	opts := DefaultServerOptions(nil)
	opts.MaxHeaderBytes = 8 << 10
	var served atomic.Int64
	addr := serve(t, http.HandlerFunc(func(http.ResponseWriter, *http.Request) { served.Add(1) }), opts)
	// Go's client will not send more than the server advertises; an
	// attacker's will. 14 headers of 1 KiB each, in one frame (past 16 KiB
	// a header block is refused with the connection, as CONTINUATION
	// floods are):
	h := dialH2(t, addr)
	h.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	var extra [][2]string
	for i := range 14 {
		extra = append(extra, [2]string{"x-part-" + strconv.Itoa(i), strings.Repeat("x", 1<<10)})
	}
	h.headers(t, 1, true, extra...)
	status := ""
	for status == "" {
		f, err := h.fr.ReadFrame()
		if err != nil {
			t.Fatal(err)
		}
		if m, ok := f.(*http2.MetaHeadersFrame); ok {
			status = m.PseudoValue("status")
		}
	}
	if status != "431" {
		t.Errorf("14 KiB of headers over HTTP/2: status %s, want 431", status)
	}
	// One header longer than the whole cap cannot even be decoded: the
	// connection is refused (GOAWAY COMPRESSION_ERROR).
	req, _ := http.NewRequest("GET", "http://"+addr+"/", nil)
	req.Header.Set("X-Big", strings.Repeat("x", 20<<10))
	if resp, err := h2cClient().Do(req); err == nil {
		resp.Body.Close()
		t.Errorf("one 20 KiB header over HTTP/2: %d, want the connection refused", resp.StatusCode)
	}
	if n := served.Load(); n != 0 {
		t.Errorf("the handler ran %d times", n)
	}
}

// h2Conn is a raw HTTP/2 client connection, for what a well-behaved
// client library would never send.
type h2Conn struct {
	net.Conn
	fr  *http2.Framer
	enc *hpack.Encoder
	buf bytes.Buffer
}

func dialH2(t *testing.T, addr string) *h2Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write([]byte(http2.ClientPreface)); err != nil {
		t.Fatal(err)
	}
	h := &h2Conn{Conn: c, fr: http2.NewFramer(c, c)}
	h.enc = hpack.NewEncoder(&h.buf)
	if err := h.fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	return h
}

func (h *h2Conn) headers(t *testing.T, stream uint32, endStream bool, extra ...[2]string) {
	t.Helper()
	h.buf.Reset()
	for _, f := range append([][2]string{{":method", "GET"}, {":scheme", "http"}, {":authority", "sidecar"}, {":path", "/"}}, extra...) {
		_ = h.enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	block := h.buf.Bytes()
	const maxFrame = 16 << 10
	first := block[:min(len(block), maxFrame)]
	if err := h.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: stream, BlockFragment: first,
		EndStream: endStream, EndHeaders: len(block) <= maxFrame}); err != nil {
		t.Fatal(err)
	}
	for rest := block[len(first):]; len(rest) > 0; {
		n := min(len(rest), maxFrame)
		if err := h.fr.WriteContinuation(stream, n == len(rest), rest[:n]); err != nil {
			t.Fatal(err)
		}
		rest = rest[n:]
	}
}

func TestConcurrentStreamsPerConnectionAreBounded(t *testing.T) {
	var running, peak atomic.Int64
	release := make(chan struct{})
	started := make(chan struct{}, 2*MaxConcurrentStreams)
	addr := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := running.Add(1)
		for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
		}
		started <- struct{}{}
		select {
		case <-release:
		case <-r.Context().Done():
		}
		running.Add(-1)
	}), DefaultServerOptions(nil))
	h := dialH2(t, addr)
	var advertised uint32
	for advertised == 0 {
		f, err := h.fr.ReadFrame()
		if err != nil {
			t.Fatal(err)
		}
		if s, ok := f.(*http2.SettingsFrame); ok && !s.IsAck() {
			v, _ := s.Value(http2.SettingMaxConcurrentStreams)
			advertised = v
			_ = h.fr.WriteSettingsAck()
		}
	}
	if advertised != MaxConcurrentStreams {
		t.Fatalf("SETTINGS_MAX_CONCURRENT_STREAMS = %d, want %d", advertised, MaxConcurrentStreams)
	}
	const opened = MaxConcurrentStreams + 20
	for i := range opened {
		h.headers(t, uint32(2*i+1), true)
	}
	refused := 0
	for refused < opened-MaxConcurrentStreams {
		f, err := h.fr.ReadFrame()
		if err != nil {
			t.Fatalf("after %d refusals: %v", refused, err)
		}
		// Go's server resets a stream over the limit (PROTOCOL_ERROR, or
		// REFUSED_STREAM): it never runs.
		if rst, ok := f.(*http2.RSTStreamFrame); ok && rst.StreamID > 2*MaxConcurrentStreams {
			refused++
		}
	}
	for range MaxConcurrentStreams {
		<-started
	}
	close(release)
	if p := peak.Load(); p != MaxConcurrentStreams {
		t.Errorf("%d handlers ran at once on one connection, want %d, the limit", p, MaxConcurrentStreams)
	}
}

func TestRapidResetIsSurvived(t *testing.T) {
	var started, running, peak atomic.Int64
	addr := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		started.Add(1)
		n := running.Add(1)
		for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
		}
		<-r.Context().Done()
		running.Add(-1)
	}), DefaultServerOptions(nil))
	h := dialH2(t, addr)
	var wg sync.WaitGroup
	wg.Go(func() { // the server's frames: read and drop, to keep it writing
		for {
			if _, err := h.fr.ReadFrame(); err != nil {
				return
			}
		}
	})
	// CVE-2023-44487: open a stream and reset it at once, as fast as the
	// connection takes it, far more often than the stream limit.
	const streams = 5000
	sent := 0
	for i := range streams {
		id := uint32(2*i + 1)
		h.headers(t, id, false)
		if err := h.fr.WriteRSTStream(id, http2.ErrCodeCancel); err != nil {
			break // the server gave up on the connection: survived too
		}
		sent++
	}
	h.Close()
	wg.Wait()
	if p := peak.Load(); p > MaxConcurrentStreams {
		t.Errorf("%d handlers ran at once, want at most %d", p, MaxConcurrentStreams)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+addr+"/", nil)
	go func() { time.Sleep(100 * time.Millisecond); cancel() }()
	_, err := h2cClient().Do(req)
	if !strings.Contains(err.Error(), "context canceled") {
		t.Errorf("a new connection after the attack: %v, want the handler to run (and be cancelled)", err)
	}
	t.Logf("%d of %d streams opened and reset; %d handlers started, at most %d at once", sent, streams, started.Load(), peak.Load())
}
