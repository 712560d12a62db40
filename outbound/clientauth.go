package outbound

import (
	"fmt"
	"maps"
	"net/url"
	"os"
	"strings"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/authsidecar/authsidecar/config"
)

// clientAuth is how the token request proves the client's identity: one
// implementation per AUTHSIDECAR_OUTBOUND_AUTH_METHOD. It fills cfg, whose
// TokenURL is set, for one request, so that credentials that change (a
// rotated secret or key file, a refreshed assertion file) are read per
// request and a private_key_jwt assertion is signed per request.
type clientAuth interface {
	apply(cfg *clientcredentials.Config) error
}

// Method names, as AUTHSIDECAR_OUTBOUND_AUTH_METHOD spells them.
const (
	methodSecretBasic   = "client_secret_basic"
	methodSecretPost    = "client_secret_post"
	methodPrivateKeyJWT = "private_key_jwt"
	methodTLSClientAuth = "tls_client_auth"
	methodAssertionFile = "client_assertion_file"
)

// newClientAuth returns the client authentication of out. It reads every
// file it will use once now, so that a missing or broken file fails
// start-up instead of the first call. It does not rely on config.Load
// having validated out.
func newClientAuth(out config.Outbound, now func() time.Time) (clientAuth, error) {
	const v = config.Prefix + "OUTBOUND_"
	method := out.AuthMethod
	if method == "" { // config.Load sets it; a hand-made Config may not
		method = methodSecretBasic
		if out.ClientAssertionFile != "" {
			method = methodAssertionFile
		}
	}
	if out.ClientAssertionFile != "" && method != methodAssertionFile {
		return nil, fmt.Errorf("outbound: %sCLIENT_ASSERTION_FILE is set but %sAUTH_METHOD is %s, which does not send it", v, v, method)
	}
	switch method {
	case methodSecretBasic, methodSecretPost:
		secret, err := newSecretSource(out)
		if err != nil {
			return nil, err
		}
		style := oauth2.AuthStyleInHeader
		if method == methodSecretPost {
			style = oauth2.AuthStyleInParams
		}
		return secretAuth{style: style, secret: secret}, nil
	case methodPrivateKeyJWT:
		return newPrivateKeyJWT(out, now)
	case methodTLSClientAuth:
		if out.TLSCertFile == "" || out.TLSKeyFile == "" {
			return nil, fmt.Errorf("outbound: %sAUTH_METHOD=tls_client_auth needs %sTLS_CERT_FILE and %sTLS_KEY_FILE", v, v, v)
		}
		return tlsClientAuth{}, nil
	case methodAssertionFile:
		if out.ClientAssertionFile == "" {
			return nil, fmt.Errorf("outbound: %sAUTH_METHOD=client_assertion_file needs %sCLIENT_ASSERTION_FILE", v, v)
		}
		f := assertionFile{path: out.ClientAssertionFile}
		if _, err := f.read(); err != nil {
			return nil, err
		}
		return f, nil
	default:
		return nil, fmt.Errorf("outbound: %sAUTH_METHOD: unknown method %q", v, method)
	}
}

// secretAuth is client_secret_basic and client_secret_post.
type secretAuth struct {
	style  oauth2.AuthStyle
	secret secretSource
}

func (a secretAuth) apply(cfg *clientcredentials.Config) error {
	s, err := a.secret.secret()
	if err != nil {
		return err
	}
	cfg.ClientSecret = s
	cfg.AuthStyle = a.style
	return nil
}

// tlsClientAuth is tls_client_auth (RFC 8705 2.1): the client certificate
// that the token client presents in the TLS handshake (outboundTLS) is
// the credential, so the body carries client_id alone.
type tlsClientAuth struct{}

func (tlsClientAuth) apply(cfg *clientcredentials.Config) error {
	// A discovered endpoint is only known now. Over plain HTTP there is no
	// handshake to present the certificate in.
	if u, err := url.Parse(cfg.TokenURL); err != nil || u.Scheme != "https" {
		return fmt.Errorf("outbound: tls_client_auth needs an https token endpoint, got %s", redactURL(cfg.TokenURL))
	}
	cfg.ClientSecret = ""
	cfg.AuthStyle = oauth2.AuthStyleInParams // client_id in the body
	return nil
}

// assertionFile is client_assertion_file: a JWT that someone else signed
// and keeps fresh, typically a Kubernetes projected service-account token
// that the identity provider trusts (workload identity federation). The
// kubelet rewrites it before it expires, so it is read for every request:
// no caching, no change detection to get wrong.
type assertionFile struct {
	path string
}

// maxAssertionBytes bounds the read: a projected token is about 1 KiB.
const maxAssertionBytes = 64 << 10

func (a assertionFile) read() (string, error) {
	const name = config.Prefix + "OUTBOUND_CLIENT_ASSERTION_FILE"
	b, err := os.ReadFile(a.path)
	if err != nil {
		return "", fmt.Errorf("outbound: %s: %w", name, err)
	}
	if len(b) > maxAssertionBytes {
		return "", fmt.Errorf("outbound: %s: %s holds %d bytes, more than the %d a client assertion may have", name, a.path, len(b), maxAssertionBytes)
	}
	// A trailing newline is no part of the token.
	v := strings.TrimSpace(string(b))
	if v == "" {
		return "", fmt.Errorf("outbound: %s: %s is empty", name, a.path)
	}
	if !isCompactJWS(v) {
		return "", fmt.Errorf("outbound: %s: %s does not hold a JWT (three base64url parts separated by dots)", name, a.path)
	}
	return v, nil
}

func (a assertionFile) apply(cfg *clientcredentials.Config) error {
	assertion, err := a.read()
	if err != nil {
		return err
	}
	withAssertion(cfg, assertion)
	return nil
}

// isCompactJWS reports whether s looks like a signed JWT, without
// decoding it: the identity provider judges it, but a file holding
// something else is better named at start than answered with 401.
func isCompactJWS(s string) bool {
	parts := strings.Split(s, ".")
	if len(parts) != 3 || parts[0] == "" || parts[1] == "" || parts[2] == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// jwtBearer is the client_assertion_type of RFC 7523 2.2.
const jwtBearer = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

// withAssertion makes cfg authenticate with assertion (RFC 7523 2.2):
// client_assertion_type and client_assertion in the body, with client_id
// (OIDC Core 9, and Entra ID requires it), no secret, no Basic header.
func withAssertion(cfg *clientcredentials.Config, assertion string) {
	// A copy: the route's parameters are shared by every fetch.
	params := maps.Clone(cfg.EndpointParams)
	if params == nil {
		params = url.Values{}
	}
	params.Set("client_assertion_type", jwtBearer)
	params.Set("client_assertion", assertion)
	cfg.EndpointParams = params
	cfg.ClientSecret = ""
	cfg.AuthStyle = oauth2.AuthStyleInParams
}
