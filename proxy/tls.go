package proxy

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"sync/atomic"

	"github.com/authsidecar/authsidecar/internal/reload"
)

// LoadKeyPair reads a certificate and its key now, so that a bad pair is a
// start-up error, and returns a File that a reload.Watcher keeps current
// as cert-manager and Kubernetes rotate them in place (often by swapping a
// symlink). name labels the pair in errors and metrics.
func LoadKeyPair(name, certFile, keyFile string) (*reload.File[*tls.Certificate], error) {
	return reload.Load(name, func() (*tls.Certificate, error) {
		pair, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("%s: %s with %s: %w", name, certFile, keyFile, err)
		}
		return &pair, nil
	}, certFile, keyFile)
}

// LoadCertPool reads a PEM bundle of CA certificates.
func LoadCertPool(name, file string) (*reload.File[*x509.CertPool], error) {
	return reload.Load(name, func() (*x509.CertPool, error) {
		b, err := readBundle(name, file)
		if err != nil {
			return nil, err
		}
		return b.Pool, nil
	}, file)
}

// LoadCABundle reads a PEM bundle of CA certificates, for client
// certificates: see CABundle.
func LoadCABundle(name, file string) (*reload.File[*CABundle], error) {
	return reload.Load(name, func() (*CABundle, error) { return readBundle(name, file) }, file)
}

// CABundle is a bundle of CA certificates: their pool, for handshakes, and
// which certificates it holds, to tell whether a connection verified
// under an earlier bundle is still trusted by this one.
type CABundle struct {
	Pool    *x509.CertPool
	anchors map[string]bool // each certificate's DER
}

// Trusts reports whether one of chains, verified at a handshake, ends in a
// certificate of b: a connection made before its CA was removed from the
// bundle is not trusted for another request.
func (b *CABundle) Trusts(chains [][]*x509.Certificate) bool {
	for _, chain := range chains {
		if len(chain) > 0 && b.anchors[string(chain[len(chain)-1].Raw)] {
			return true
		}
	}
	return false
}

func readBundle(name, file string) (*CABundle, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	b := &CABundle{Pool: x509.NewCertPool(), anchors: map[string]bool{}}
	for {
		var block *pem.Block
		if block, data = pem.Decode(data); block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: %s: %w", name, file, err)
		}
		b.Pool.AddCert(c)
		b.anchors[string(c.Raw)] = true
	}
	if len(b.anchors) == 0 {
		return nil, fmt.Errorf("%s: %s holds no PEM certificate", name, file)
	}
	return b, nil
}

// ServerTLS returns a server TLS configuration (TLS 1.2 or later) serving
// cert's current pair. With clientCAs, every client must present a
// certificate signed by one of them (mTLS); the bundle in force is the
// file's current one at each handshake, so that a CA added or replaced
// is trusted, or no longer trusted, without a restart.
func ServerTLS(cert *reload.File[*tls.Certificate], clientCAs *reload.File[*CABundle]) *tls.Config {
	c := &tls.Config{
		MinVersion:     tls.VersionTLS12,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return cert.Current(), nil },
		NextProtos:     []string{"h2", "http/1.1"},
	}
	if clientCAs != nil {
		c.ClientCAs = clientCAs.Current().Pool
		c.ClientAuth = tls.RequireAndVerifyClientCert
		c.GetConfigForClient = (&clientCAConfigs{base: c, pool: clientCAs}).get
	}
	return c
}

// clientCAConfigs gives each handshake the server configuration with the
// client CA bundle in force. crypto/tls takes the bundle from the
// configuration only, so a new bundle needs a new configuration: one is
// made per bundle, not per handshake.
type clientCAConfigs struct {
	base *tls.Config
	pool *reload.File[*CABundle]
	last atomic.Pointer[clientCAConfig]
}

type clientCAConfig struct {
	pool *x509.CertPool
	conf *tls.Config
}

func (c *clientCAConfigs) get(*tls.ClientHelloInfo) (*tls.Config, error) {
	pool := c.pool.Current().Pool
	if last := c.last.Load(); last != nil && last.pool == pool {
		return last.conf, nil
	}
	conf := c.base.Clone()
	conf.ClientCAs = pool
	conf.GetConfigForClient = nil
	// A session resumed from a ticket is held to the new bundle by
	// crypto/tls itself: it verifies the session's chains again against
	// ClientCAs.
	c.last.Store(&clientCAConfig{pool: pool, conf: conf})
	return conf, nil
}

// ClientTLS returns the TLS configuration for upstreams and token
// endpoints: trust in rootCAs (nil: the system roots; see
// TransportOptions.RootCAs for a bundle that is followed as it changes)
// and, with cert, a client certificate presented to servers that ask.
func ClientTLS(rootCAs *x509.CertPool, cert *reload.File[*tls.Certificate]) *tls.Config {
	c := &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: rootCAs}
	if cert != nil {
		c.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cert.Current(), nil }
	}
	return c
}
