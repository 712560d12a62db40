package fleetsim

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"sync/atomic"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"golang.org/x/oauth2"
)

// Kinds of identity-provider request.
const (
	KindToken = iota
	KindJWKS
	KindDiscovery
	numKinds
)

// KindNames name the kinds, in order.
var KindNames = [numKinds]string{"token", "jwks", "discovery"}

// issuerURL is the simulated identity provider's issuer; nothing ever
// connects to it: its transport answers in memory.
const issuerURL = "https://idp.fleetsim.invalid"

// idp is the simulated identity provider: discovery and JWKS over an
// in-memory http.RoundTripper, a token endpoint as a function, and a count
// of every request by kind and simulated second, answered or not.
type idp struct {
	s     *sched
	start time.Time
	life  time.Duration // of the tokens it issues
	down  atomic.Bool

	// sent[kind][second] counts requests, failed[kind][second] those
	// refused because the provider was down.
	sent, failed [numKinds][]atomic.Int32

	metadata []byte
	jwks     atomic.Pointer[[]byte]
	// signer is the key that signs tokens issued now: 0 the first, 1 the
	// one rotated in.
	signer atomic.Int32
	keys   [2]*ecdsa.PrivateKey
	// tokens[i] is a token signed by keys[i], for the inbound key sets.
	tokens [2]string
}

func newIDP(s *sched, seconds int, life time.Duration) (*idp, error) {
	p := &idp{s: s, start: s.now(), life: life}
	for k := range numKinds {
		p.sent[k] = make([]atomic.Int32, seconds+1)
		p.failed[k] = make([]atomic.Int32, seconds+1)
	}
	var err error
	p.metadata, err = json.Marshal(map[string]any{
		"issuer": issuerURL, "jwks_uri": issuerURL + "/jwks", "token_endpoint": issuerURL + "/token",
		"id_token_signing_alg_values_supported": []string{"ES256"},
	})
	if err != nil {
		return nil, err
	}
	for i := range p.keys {
		if p.keys[i], err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
			return nil, err
		}
		if p.tokens[i], err = p.sign(i); err != nil {
			return nil, err
		}
	}
	return p, p.publish(0)
}

func kid(i int) string { return []string{"key-1", "key-2"}[i] }

func (p *idp) sign(i int) (string, error) {
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256,
		Key: jose.JSONWebKey{Key: p.keys[i], KeyID: kid(i)}}, nil)
	if err != nil {
		return "", err
	}
	return jwt.Signed(signer).Claims(map[string]any{"iss": issuerURL, "sub": "fleetsim"}).Serialize()
}

// publish serves the keys listed, by index, as the JWKS.
func (p *idp) publish(keys ...int) error {
	var set jose.JSONWebKeySet
	for _, i := range keys {
		set.Keys = append(set.Keys, jose.JSONWebKey{Key: &p.keys[i].PublicKey, KeyID: kid(i), Algorithm: "ES256", Use: "sig"})
	}
	b, err := json.Marshal(set)
	if err != nil {
		return err
	}
	p.jwks.Store(&b)
	return nil
}

// count records a request of kind now and reports whether it is answered.
func (p *idp) count(kind int) bool {
	sec := int(p.s.now().Sub(p.start) / time.Second)
	if sec >= len(p.sent[kind]) {
		sec = len(p.sent[kind]) - 1
	}
	p.sent[kind][sec].Add(1)
	if p.down.Load() {
		p.failed[kind][sec].Add(1)
		return false
	}
	return true
}

var errDown = errors.New("fleetsim: the identity provider is down")

// token answers a client-credentials request.
func (p *idp) token() (*oauth2.Token, error) {
	if !p.count(KindToken) {
		return nil, errDown
	}
	return &oauth2.Token{AccessToken: "fleetsim", TokenType: "Bearer", Expiry: p.s.now().Add(p.life)}, nil
}

// RoundTrip answers discovery and JWKS requests in memory; while the
// provider is down, with 503.
func (p *idp) RoundTrip(req *http.Request) (*http.Response, error) {
	var kind int
	var body []byte
	switch req.URL.Path {
	case "/.well-known/openid-configuration", "/.well-known/oauth-authorization-server":
		kind, body = KindDiscovery, p.metadata
	case "/jwks":
		kind, body = KindJWKS, *p.jwks.Load()
	default:
		return nil, errors.New("fleetsim: no such endpoint " + req.URL.Path)
	}
	status := http.StatusOK
	if !p.count(kind) {
		status, body = http.StatusServiceUnavailable, nil
	}
	return &http.Response{
		StatusCode: status, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header:  http.Header{"Content-Type": {"application/json"}},
		Body:    io.NopCloser(bytes.NewReader(body)),
		Request: req, ContentLength: int64(len(body)),
	}, nil
}

// client is an http.Client of the simulated provider.
func (p *idp) client() *http.Client { return &http.Client{Transport: p} }
