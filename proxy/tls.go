package proxy

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/authsidecar/authsidecar/internal/filesecret"
)

// KeyPair is a certificate and key read from files and read again when
// either changes, as cert-manager and Kubernetes rotate them in place
// (often by swapping a symlink). Files are checked at most once a second,
// so a handshake costs a stat only now and then.
type KeyPair struct {
	certFile, keyFile string
	now               func() time.Time

	mu       sync.Mutex
	checked  time.Time
	certInfo os.FileInfo
	keyInfo  os.FileInfo
	current  *tls.Certificate
}

// LoadKeyPair reads certFile and keyFile now, so that a bad pair is a
// start-up error, and returns a KeyPair that follows later changes.
func LoadKeyPair(certFile, keyFile string) (*KeyPair, error) {
	kp := &KeyPair{certFile: certFile, keyFile: keyFile, now: time.Now}
	if _, err := kp.Certificate(); err != nil {
		return nil, err
	}
	return kp, nil
}

// Certificate returns the current pair. When files changed but the new
// pair does not load (a half-written rotation), the previous pair is kept.
func (kp *KeyPair) Certificate() (*tls.Certificate, error) {
	kp.mu.Lock()
	defer kp.mu.Unlock()
	now := kp.now()
	if kp.current != nil && now.Sub(kp.checked) < time.Second {
		return kp.current, nil
	}
	kp.checked = now
	ci, err1 := os.Stat(kp.certFile)
	ki, err2 := os.Stat(kp.keyFile)
	if err := errors.Join(err1, err2); err != nil {
		return kp.keep(fmt.Errorf("proxy: key pair: %w", err))
	}
	if kp.current != nil && !filesecret.Changed(kp.certInfo, ci) && !filesecret.Changed(kp.keyInfo, ki) {
		return kp.current, nil
	}
	pair, err := tls.LoadX509KeyPair(kp.certFile, kp.keyFile)
	if err != nil {
		return kp.keep(fmt.Errorf("proxy: key pair %s: %w", kp.certFile, err))
	}
	kp.certInfo, kp.keyInfo, kp.current = ci, ki, &pair
	return kp.current, nil
}

func (kp *KeyPair) keep(err error) (*tls.Certificate, error) {
	if kp.current != nil {
		return kp.current, nil
	}
	return nil, err
}

// ServerTLS returns a server TLS configuration (TLS 1.2 or later) serving
// the pair in certFile and keyFile, re-read when they change. With a
// clientCAFile, every client must present a certificate signed by one of
// its CAs (mTLS).
func ServerTLS(certFile, keyFile, clientCAFile string) (*tls.Config, error) {
	kp, err := LoadKeyPair(certFile, keyFile)
	if err != nil {
		return nil, err
	}
	c := &tls.Config{
		MinVersion:     tls.VersionTLS12,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return kp.Certificate() },
		NextProtos:     []string{"h2", "http/1.1"},
	}
	if clientCAFile != "" {
		pool, err := LoadCertPool(clientCAFile)
		if err != nil {
			return nil, err
		}
		c.ClientCAs = pool
		c.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return c, nil
}

// LoadCertPool reads a PEM bundle of CA certificates.
func LoadCertPool(file string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("proxy: CA file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("proxy: CA file %s holds no PEM certificate", file)
	}
	return pool, nil
}
