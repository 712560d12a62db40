package outbound

import (
	"crypto/tls"
	"fmt"

	"github.com/authsidecar/authsidecar/config"
	"github.com/authsidecar/authsidecar/proxy"
)

// outboundTLS returns the TLS settings for upstreams and the token
// endpoint, or nil for Go's defaults (system roots, no client certificate).
// The client certificate is re-read when its files change.
func outboundTLS(out config.Outbound) (*tls.Config, error) {
	if out.TLSCAFile == "" && out.TLSCertFile == "" {
		return nil, nil
	}
	c := &tls.Config{MinVersion: tls.VersionTLS12}
	if out.TLSCAFile != "" {
		pool, err := proxy.LoadCertPool(out.TLSCAFile)
		if err != nil {
			return nil, fmt.Errorf("outbound: %sOUTBOUND_TLS_CA_FILE: %w", config.Prefix, err)
		}
		c.RootCAs = pool
	}
	if out.TLSCertFile != "" {
		kp, err := proxy.LoadKeyPair(out.TLSCertFile, out.TLSKeyFile)
		if err != nil {
			return nil, fmt.Errorf("outbound: %sOUTBOUND_TLS_CERT_FILE and …_KEY_FILE: %w", config.Prefix, err)
		}
		c.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return kp.Certificate() }
	}
	return c, nil
}
