package outbound

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/authsidecar/authsidecar/internal/clock"
)

// DPoPKey is the process's one DPoP key (RFC 9449): every token request
// carries a proof by it, so that the tokens issued are bound to it, and
// every call with such a token a fresh proof.
type DPoPKey struct {
	Key crypto.Signer
	Alg jose.SignatureAlgorithm
}

// NewDPoPKey generates an ES256 key, the algorithm every DPoP server
// supports.
func NewDPoPKey() (*DPoPKey, error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	return &DPoPKey{Key: k, Alg: jose.ES256}, nil
}

// dpopSigner makes DPoP proofs with the key, and keeps the last nonce
// (DPoP-Nonce) each server gave, to put in the next proof sent to it.
type dpopSigner struct {
	signer jose.Signer
	clock  clock.Clock
	nonces sync.Map // origin ("https://host:port") -> string
}

func newDPoPSigner(k *DPoPKey, clk clock.Clock) (*dpopSigner, error) {
	opts := (&jose.SignerOptions{EmbedJWK: true}).WithType("dpop+jwt")
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: k.Alg, Key: k.Key}, opts)
	if err != nil {
		return nil, fmt.Errorf("outbound: the DPoP key: %w", err)
	}
	return &dpopSigner{signer: s, clock: clk}, nil
}

// proof returns a proof for a request of method to u, with the hash of
// accessToken when it is not "" (calls to upstreams; token requests have
// none), and the server's last nonce.
func (d *dpopSigner) proof(method string, u *url.URL, accessToken string) (string, error) {
	htu := url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path, RawPath: u.RawPath}
	var jti [16]byte
	_, _ = rand.Read(jti[:])
	claims := map[string]any{
		"jti": base64.RawURLEncoding.EncodeToString(jti[:]),
		"htm": method,
		"htu": htu.String(),
		"iat": d.clock.Now().Unix(),
	}
	if accessToken != "" {
		sum := sha256.Sum256([]byte(accessToken))
		claims["ath"] = base64.RawURLEncoding.EncodeToString(sum[:])
	}
	if n, ok := d.nonces.Load(origin(u)); ok {
		claims["nonce"] = n
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", err
	}
	jws, err := d.signer.Sign(payload)
	if err != nil {
		return "", fmt.Errorf("outbound: signing a DPoP proof: %w", err)
	}
	return jws.CompactSerialize()
}

// remember keeps the nonce resp's server sent, if any, and reports whether
// it did.
func (d *dpopSigner) remember(u *url.URL, resp *http.Response) bool {
	n := resp.Header.Get("DPoP-Nonce")
	if n == "" {
		return false
	}
	d.nonces.Store(origin(u), n)
	return true
}

func origin(u *url.URL) string { return strings.ToLower(u.Scheme + "://" + u.Host) }

// dpopTokenTransport puts a proof on every token request, and when the
// token endpoint asks for a nonce (400 use_dpop_nonce with DPoP-Nonce,
// RFC 9449 8) sends the request once more with it.
type dpopTokenTransport struct {
	base http.RoundTripper
	d    *dpopSigner
}

func (t *dpopTokenTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := t.send(r)
	if err != nil || resp.StatusCode != http.StatusBadRequest || !t.d.remember(r.URL, resp) || !askedForNonce(resp) || r.GetBody == nil {
		return resp, err
	}
	discard(resp)
	body, err := r.GetBody()
	if err != nil {
		return nil, err
	}
	retry := r.Clone(r.Context())
	retry.Body = body
	return t.send(retry)
}

// send sends r, which a RoundTripper must not change, with a new proof.
func (t *dpopTokenTransport) send(r *http.Request) (*http.Response, error) {
	proof, err := t.d.proof(r.Method, r.URL, "")
	if err != nil {
		return nil, err
	}
	r = r.Clone(r.Context())
	r.Header.Set("DPoP", proof)
	resp, err := t.base.RoundTrip(r)
	if err == nil {
		t.d.remember(r.URL, resp)
	}
	return resp, err
}

// askedForNonce reports whether a token endpoint's 400 is use_dpop_nonce;
// the body is put back for whoever reads it next.
func askedForNonce(resp *http.Response) bool {
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	_ = resp.Body.Close()
	resp.Body = io.NopCloser(bytes.NewReader(b))
	if err != nil {
		return false
	}
	var e struct {
		Error string `json:"error"`
	}
	return json.Unmarshal(b, &e) == nil && e.Error == "use_dpop_nonce"
}

// upstreamAskedForNonce reports whether an upstream's 401 asks for a
// nonce (RFC 9449 9: WWW-Authenticate: DPoP error="use_dpop_nonce").
func upstreamAskedForNonce(resp *http.Response) bool {
	if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("DPoP-Nonce") == "" {
		return false
	}
	for _, c := range resp.Header.Values("WWW-Authenticate") {
		if strings.HasPrefix(strings.ToLower(c), "dpop") && strings.Contains(c, `error="use_dpop_nonce"`) {
			return true
		}
	}
	return false
}
