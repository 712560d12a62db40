package inbound

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"net/http"
	"slices"
	"strings"
)

// Headers carrying the verified client certificate to the app (mTLS). Like
// every X-Auth-* header, callers' copies are removed first.
const (
	HeaderCertSubject = "X-Auth-Cert-Subject"
	HeaderCertURIs    = "X-Auth-Cert-Uri"
	HeaderCertDNS     = "X-Auth-Cert-Dns"
	HeaderCertSHA256  = "X-Auth-Cert-Sha256"
)

// ClientCertPolicy is what inbound asks of the TLS client certificate. The
// TLS layer has already verified the chain of any certificate presented.
type ClientCertPolicy struct {
	// Required refuses requests without a verified client certificate with
	// 403, as an HTTP answer rather than a failed handshake.
	Required bool
	// AllowedSANs, when set, lists the identities allowed to call: a DNS
	// name or a URI (for example a SPIFFE ID) among the certificate's SANs.
	AllowedSANs []string
	// RequireBoundTokens refuses tokens without a cnf.x5t#S256 claim.
	RequireBoundTokens bool
	// Trusted, when set, tells whether chains verified at a connection's
	// handshake are still trusted by the client CA bundle in force: a
	// connection kept open across a change of the bundle is held to the
	// new one at each request.
	Trusted func(chains [][]*x509.Certificate) bool
}

// clientCert returns the verified client certificate of r, if any.
func clientCert(r *http.Request) *x509.Certificate {
	if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 || len(r.TLS.VerifiedChains[0]) == 0 {
		return nil
	}
	return r.TLS.VerifiedChains[0][0]
}

// check applies the certificate requirements to r's connection, whose
// verified certificate is cert.
func (p ClientCertPolicy) check(r *http.Request, cert *x509.Certificate) *rejection {
	if cert != nil && p.Trusted != nil && !p.Trusted(r.TLS.VerifiedChains) {
		return reject(reasonClientNotAllowed, "the client certificate's CA is no longer in the client CA bundle")
	}
	if cert == nil {
		if p.Required {
			return reject(reasonClientNotAllowed, "no client certificate")
		}
		return nil
	}
	if len(p.AllowedSANs) == 0 {
		return nil
	}
	for _, dns := range cert.DNSNames {
		if slices.Contains(p.AllowedSANs, dns) {
			return nil
		}
	}
	for _, u := range cert.URIs {
		if slices.Contains(p.AllowedSANs, u.String()) {
			return nil
		}
	}
	return reject(reasonClientNotAllowed, "client certificate SANs not allowed")
}

// checkBinding enforces RFC 8705 section 3: a token with cnf.x5t#S256 is
// accepted only over a connection presenting that very certificate.
func (p ClientCertPolicy) checkBinding(id *identity, cert *x509.Certificate) *rejection {
	if id.certThumbprint == "" {
		if p.RequireBoundTokens {
			return reject(reasonCertificateMismatch, "token is not certificate-bound")
		}
		return nil
	}
	if cert == nil || thumbprint(cert) != id.certThumbprint {
		return reject(reasonCertificateMismatch, "token bound to another certificate")
	}
	return nil
}

// thumbprint is the certificate's x5t#S256: base64url of SHA-256 of DER.
func thumbprint(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.Raw)
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

func setCertHeaders(h http.Header, cert *x509.Certificate) {
	h[HeaderCertSubject] = []string{cert.Subject.String()}
	h[HeaderCertSHA256] = []string{thumbprint(cert)}
	if len(cert.URIs) > 0 {
		uris := make([]string, len(cert.URIs))
		for i, u := range cert.URIs {
			uris[i] = u.String()
		}
		h[HeaderCertURIs] = []string{joinSANs(uris)}
	}
	if len(cert.DNSNames) > 0 {
		h[HeaderCertDNS] = []string{joinSANs(cert.DNSNames)}
	}
}

// joinSANs joins SANs with ",", percent-encoding "%" and "," inside each,
// so that a comma always separates two SANs: a URI SAN may hold a comma,
// and would otherwise read as two identities.
func joinSANs(sans []string) string {
	escape := strings.NewReplacer("%", "%25", ",", "%2C")
	out := make([]string, len(sans))
	for i, s := range sans {
		out[i] = escape.Replace(s)
	}
	return strings.Join(out, ",")
}
