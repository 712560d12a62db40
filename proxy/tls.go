package proxy

import (
	"crypto/tls"
	"crypto/x509"
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
		pem, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s: %s holds no PEM certificate", name, file)
		}
		return pool, nil
	}, file)
}

// ServerTLS returns a server TLS configuration (TLS 1.2 or later) serving
// cert's current pair. With clientCAs, every client must present a
// certificate signed by one of them (mTLS); the bundle in force is the
// file's current one at each handshake, so that a CA added or replaced
// is trusted, or no longer trusted, without a restart.
func ServerTLS(cert *reload.File[*tls.Certificate], clientCAs *reload.File[*x509.CertPool]) *tls.Config {
	c := &tls.Config{
		MinVersion:     tls.VersionTLS12,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return cert.Current(), nil },
		NextProtos:     []string{"h2", "http/1.1"},
	}
	if clientCAs != nil {
		c.ClientCAs = clientCAs.Current()
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
	pool *reload.File[*x509.CertPool]
	last atomic.Pointer[clientCAConfig]
}

type clientCAConfig struct {
	pool *x509.CertPool
	conf *tls.Config
}

func (c *clientCAConfigs) get(*tls.ClientHelloInfo) (*tls.Config, error) {
	pool := c.pool.Current()
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
