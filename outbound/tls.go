package outbound

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"sync"

	"github.com/authsidecar/authsidecar/config"
)

// outboundTLS returns the TLS settings for upstreams and the token
// endpoint, or nil for Go's defaults (system roots, no client certificate).
func outboundTLS(out config.Outbound) (*tls.Config, error) {
	if out.TLSCAFile == "" && out.TLSCertFile == "" {
		return nil, nil
	}
	c := &tls.Config{MinVersion: tls.VersionTLS12}
	if out.TLSCAFile != "" {
		pem, err := os.ReadFile(out.TLSCAFile)
		if err != nil {
			return nil, fmt.Errorf("outbound: %sOUTBOUND_TLS_CA_FILE: %w", config.Prefix, err)
		}
		c.RootCAs = x509.NewCertPool()
		if !c.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("outbound: %sOUTBOUND_TLS_CA_FILE: no PEM certificate in %s", config.Prefix, out.TLSCAFile)
		}
	}
	if out.TLSCertFile != "" {
		kp := &keyPairFiles{cert: out.TLSCertFile, key: out.TLSKeyFile}
		if _, err := kp.load(); err != nil {
			return nil, err
		}
		c.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return kp.load() }
	}
	return c, nil
}

// keyPairFiles is a client certificate re-read when either file changes,
// as cert-manager and Kubernetes rotate them in place.
type keyPairFiles struct {
	cert, key string

	mu       sync.Mutex
	certInfo os.FileInfo
	keyInfo  os.FileInfo
	pair     *tls.Certificate
}

func (k *keyPairFiles) load() (*tls.Certificate, error) {
	ci, err := os.Stat(k.cert)
	if err != nil {
		return nil, fmt.Errorf("outbound: %sOUTBOUND_TLS_CERT_FILE: %w", config.Prefix, err)
	}
	ki, err := os.Stat(k.key)
	if err != nil {
		return nil, fmt.Errorf("outbound: %sOUTBOUND_TLS_KEY_FILE: %w", config.Prefix, err)
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.pair != nil && !changed(k.certInfo, ci) && !changed(k.keyInfo, ki) {
		return k.pair, nil
	}
	pair, err := tls.LoadX509KeyPair(k.cert, k.key)
	if err != nil {
		return nil, fmt.Errorf("outbound: %sOUTBOUND_TLS_CERT_FILE and …_KEY_FILE: %w", config.Prefix, err)
	}
	k.certInfo, k.keyInfo, k.pair = ci, ki, &pair
	return k.pair, nil
}

// changed reports whether cur is another file, or the same file modified,
// than prev (nil: never read).
func changed(prev, cur os.FileInfo) bool {
	return prev == nil || !os.SameFile(prev, cur) ||
		!prev.ModTime().Equal(cur.ModTime()) || prev.Size() != cur.Size()
}
