package proxy

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/authsidecar/authsidecar/internal/reload"
)

// Protocol is how the sidecar speaks to the app or an upstream.
type Protocol int

// Protocols, as AUTHSIDECAR_INBOUND_UPSTREAM_PROTOCOL and
// AUTHSIDECAR_ROUTE_<NAME>_PROTOCOL spell them.
const (
	// ProtocolAuto: over https, whatever ALPN agrees on; over http, gRPC
	// requests as h2c (gRPC needs HTTP/2) and all else as HTTP/1.1.
	ProtocolAuto Protocol = iota
	// ProtocolHTTP1: HTTP/1.1 only.
	ProtocolHTTP1
	// ProtocolH2C: HTTP/2 only; cleartext with prior knowledge over http.
	ProtocolH2C
)

// ParseProtocol parses auto, http1 or h2c.
func ParseProtocol(s string) (Protocol, error) {
	switch s {
	case "auto":
		return ProtocolAuto, nil
	case "http1":
		return ProtocolHTTP1, nil
	case "h2c":
		return ProtocolH2C, nil
	}
	return ProtocolAuto, fmt.Errorf("want auto, http1 or h2c, got %q", s)
}

func (p Protocol) String() string {
	return [...]string{"auto", "http1", "h2c"}[p]
}

// IsGRPC reports whether r is a gRPC request: a POST (gRPC has no other
// method, and grpc-go refuses any other) with content-type
// application/grpc, alone or with a +codec suffix or parameters. gRPC-Web
// (application/grpc-web…) is not: it is made for HTTP/1.1. A GET that
// merely says application/grpc gets HTTP answers: a refusal to it is a
// 401, not a 200 with a gRPC status that edge metrics would count as a
// success.
func IsGRPC(r *http.Request) bool {
	if r.Method != http.MethodPost {
		return false
	}
	ct := r.Header.Get("Content-Type")
	rest, ok := strings.CutPrefix(ct, "application/grpc")
	return ok && (rest == "" || rest[0] == '+' || rest[0] == ';')
}

// TransportOptions configure NewTransport.
type TransportOptions struct {
	Protocol    Protocol
	DialTimeout time.Duration
	// ResponseHeaderTimeout bounds the wait for an answer's headers (past
	// it the reverse proxy answers 504); 0: no bound.
	ResponseHeaderTimeout time.Duration
	// TLS is for https targets; nil: Go's defaults.
	TLS *tls.Config
	// RootCAs, when set, are the trusted roots in place of TLS.RootCAs,
	// followed as the file changes: see rootsTransport.
	RootCAs *reload.File[*x509.CertPool]
}

// NewTransport returns the transport for a sidecar hop that speaks
// o.Protocol: a keep-alive pool large enough that concurrent callers reuse
// connections instead of dialing (net/http keeps only 2 idle connections
// per host by default), and bounded dials. It never uses a proxy from the
// environment: the sidecar is the proxy.
func NewTransport(o TransportOptions) http.RoundTripper {
	if o.RootCAs != nil {
		return &rootsTransport{opts: o}
	}
	return newProtocolTransport(o, o.TLS)
}

func newProtocolTransport(o TransportOptions, tlsConf *tls.Config) http.RoundTripper {
	// Cleartext HTTP/1.1 goes over the synchronous client; what it does
	// not do (TLS, upgrades, 100-continue) over http.Transport.
	h1 := newH1Client(o, newTransport(o, tlsConf, func(ps *http.Protocols) { ps.SetHTTP1(true) }))
	h2 := newTransport(o, tlsConf, func(ps *http.Protocols) {
		ps.SetHTTP2(true)
		ps.SetUnencryptedHTTP2(true)
	})
	alpn := newTransport(o, tlsConf, func(ps *http.Protocols) {
		ps.SetHTTP1(true)
		ps.SetHTTP2(true)
	})
	switch o.Protocol {
	case ProtocolHTTP1:
		return h1
	case ProtocolH2C:
		return h2
	}
	return &autoTransport{h1: h1, h2: h2, alpn: alpn}
}

// rootsTransport follows a CA bundle that changes. crypto/tls takes the
// roots from the configuration, and http.Transport keeps its
// configuration for life, so a new bundle gets a new transport, made by
// the first request that sees it; the old one's idle connections are
// closed, and its requests in flight finish on it. Checking for a new
// bundle is one atomic load per request.
type rootsTransport struct {
	opts TransportOptions
	mu   sync.Mutex // serializes making a transport
	cur  atomic.Pointer[rootsGeneration]
}

type rootsGeneration struct {
	roots *x509.CertPool
	rt    http.RoundTripper
}

func (t *rootsTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	return t.current().RoundTrip(r)
}

func (t *rootsTransport) current() http.RoundTripper {
	roots := t.opts.RootCAs.Current()
	if g := t.cur.Load(); g != nil && g.roots == roots {
		return g.rt
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if g := t.cur.Load(); g != nil && g.roots == roots {
		return g.rt
	}
	conf := &tls.Config{MinVersion: tls.VersionTLS12}
	if t.opts.TLS != nil {
		conf = t.opts.TLS.Clone()
	}
	conf.RootCAs = roots
	g := &rootsGeneration{roots: roots, rt: newProtocolTransport(t.opts, conf)}
	if old := t.cur.Swap(g); old != nil {
		closeIdle(old.rt)
	}
	return g.rt
}

// CloseIdleConnections closes the current transport's idle connections.
func (t *rootsTransport) CloseIdleConnections() {
	if g := t.cur.Load(); g != nil {
		closeIdle(g.rt)
	}
}

func closeIdle(rt http.RoundTripper) {
	if c, ok := rt.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

// autoTransport is ProtocolAuto.
type autoTransport struct {
	h1       *h1Client
	h2, alpn *http.Transport
}

func (t *autoTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	return t.pick(r).RoundTrip(r)
}

func (t *autoTransport) pick(r *http.Request) http.RoundTripper {
	switch {
	case r.URL.Scheme == "https":
		return t.alpn
	case IsGRPC(r):
		return t.h2
	}
	return t.h1
}

// CloseIdleConnections closes the idle connections of every transport.
func (t *autoTransport) CloseIdleConnections() {
	t.h1.CloseIdleConnections()
	t.h2.CloseIdleConnections()
	t.alpn.CloseIdleConnections()
}

// newTransport returns one http.Transport of the protocols set by
// protocols. Each gets its own copy of tlsConf: http.Transport writes its
// ALPN list into the configuration it is given.
func newTransport(o TransportOptions, tlsConf *tls.Config, protocols func(*http.Protocols)) *http.Transport {
	dialer := &net.Dialer{Timeout: o.DialTimeout, KeepAlive: 30 * time.Second}
	ps := new(http.Protocols)
	protocols(ps)
	if tlsConf != nil {
		tlsConf = tlsConf.Clone()
	}
	return &http.Transport{
		Proxy:                 nil,
		DialContext:           dialer.DialContext,
		Protocols:             ps,
		TLSClientConfig:       tlsConf,
		MaxIdleConns:          1024,
		MaxIdleConnsPerHost:   256,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
		ResponseHeaderTimeout: o.ResponseHeaderTimeout,
	}
}
