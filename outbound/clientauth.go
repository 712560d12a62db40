package outbound

import (
	"fmt"
	"maps"
	"net/url"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/authsidecar/authsidecar/internal/reload"
)

// ClientAuth is how a token request proves the client's identity: one per
// AUTHSIDECAR_OUTBOUND_AUTH_METHOD, made by the constructors below. It
// fills cfg, whose TokenURL is set, for one request, so that credentials
// that change (a rotated secret or key file, a refreshed assertion file)
// are read per request and a private_key_jwt assertion is signed per
// request.
type ClientAuth interface {
	apply(cfg *clientcredentials.Config, now time.Time) error
}

// SecretBasic is client_secret_basic: id and secret in an HTTP Basic
// header.
func SecretBasic(secret *reload.File[string]) ClientAuth {
	return secretAuth{style: oauth2.AuthStyleInHeader, secret: secret}
}

// SecretPost is client_secret_post: id and secret in the request body.
func SecretPost(secret *reload.File[string]) ClientAuth {
	return secretAuth{style: oauth2.AuthStyleInParams, secret: secret}
}

type secretAuth struct {
	style  oauth2.AuthStyle
	secret *reload.File[string]
}

func (a secretAuth) apply(cfg *clientcredentials.Config, _ time.Time) error {
	cfg.ClientSecret = a.secret.Fresh()
	cfg.AuthStyle = a.style
	return nil
}

// TLSClientAuth is tls_client_auth (RFC 8705 2.1): the client certificate
// that the token client presents in the TLS handshake (Options.TLS) is
// the credential, so the body carries client_id alone.
func TLSClientAuth() ClientAuth { return tlsClientAuth{} }

type tlsClientAuth struct{}

func (tlsClientAuth) apply(cfg *clientcredentials.Config, _ time.Time) error {
	// A discovered endpoint is only known now. Over plain HTTP there is no
	// handshake to present the certificate in.
	if u, err := url.Parse(cfg.TokenURL); err != nil || u.Scheme != "https" {
		return fmt.Errorf("outbound: tls_client_auth needs an https token endpoint, got %s", redactURL(cfg.TokenURL))
	}
	cfg.ClientSecret = ""
	cfg.AuthStyle = oauth2.AuthStyleInParams // client_id in the body
	return nil
}

// AssertionFile is client_assertion_file: a JWT that someone else signed
// and keeps fresh, typically a Kubernetes projected service-account token
// that the identity provider trusts (workload identity federation). The
// kubelet rewrites it before it expires, so read, which reads the file, is
// called for every request: no caching, no change detection to get wrong.
func AssertionFile(read func() (string, error)) ClientAuth { return assertionFile{read} }

type assertionFile struct{ read func() (string, error) }

func (a assertionFile) apply(cfg *clientcredentials.Config, _ time.Time) error {
	assertion, err := a.read()
	if err != nil {
		return fmt.Errorf("outbound: AUTHSIDECAR_OUTBOUND_CLIENT_ASSERTION_FILE: %w", err)
	}
	withAssertion(cfg, assertion)
	return nil
}

// PrivateKeyJWT is private_key_jwt (RFC 7523 2.2, OIDC Core 9): a JWT
// signed with the client's key, key's current signer, for every token
// request.
func PrivateKeyJWT(key *reload.File[jose.Signer]) ClientAuth { return &privateKeyJWT{key: key} }

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
