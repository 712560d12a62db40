package proxy

import (
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"
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

// IsGRPC reports whether r is a gRPC request: content-type application/grpc,
// alone or with a +codec suffix or parameters. gRPC-Web
// (application/grpc-web…) is not: it is made for HTTP/1.1.
func IsGRPC(r *http.Request) bool {
	ct := r.Header.Get("Content-Type")
	rest, ok := strings.CutPrefix(ct, "application/grpc")
	return ok && (rest == "" || rest[0] == '+' || rest[0] == ';')
}

// NewTransport returns the transport for a sidecar hop that speaks p: a
// keep-alive pool large enough that concurrent callers reuse connections
// instead of dialing (net/http keeps only 2 idle connections per host by
// default), bounded dials, and responseHeaderTimeout for the answer's
// headers (0: none). It never uses a proxy from the environment: the
// sidecar is the proxy. tlsConf is for https targets; nil: Go's defaults.
func NewTransport(p Protocol, dialTimeout, responseHeaderTimeout time.Duration, tlsConf *tls.Config) http.RoundTripper {
	h1 := newTransport(dialTimeout, responseHeaderTimeout, tlsConf, func(ps *http.Protocols) { ps.SetHTTP1(true) })
	h2 := newTransport(dialTimeout, responseHeaderTimeout, tlsConf, func(ps *http.Protocols) {
		ps.SetHTTP2(true)
		ps.SetUnencryptedHTTP2(true)
	})
	alpn := newTransport(dialTimeout, responseHeaderTimeout, tlsConf, func(ps *http.Protocols) {
		ps.SetHTTP1(true)
		ps.SetHTTP2(true)
	})
	switch p {
	case ProtocolHTTP1:
		return h1
	case ProtocolH2C:
		return h2
	}
	return &autoTransport{h1: h1, h2: h2, alpn: alpn}
}

// autoTransport is ProtocolAuto.
type autoTransport struct{ h1, h2, alpn *http.Transport }

func (t *autoTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	return t.pick(r).RoundTrip(r)
}

func (t *autoTransport) pick(r *http.Request) *http.Transport {
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

func newTransport(dialTimeout, responseHeaderTimeout time.Duration, tlsConf *tls.Config, protocols func(*http.Protocols)) *http.Transport {
	dialer := &net.Dialer{Timeout: dialTimeout, KeepAlive: 30 * time.Second}
	ps := new(http.Protocols)
	protocols(ps)
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
		ResponseHeaderTimeout: responseHeaderTimeout,
	}
}
