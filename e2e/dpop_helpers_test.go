package e2e

// DPoP (RFC 9449) proofs built in Go, for the identity provider's smoke
// tests and the sidecar scenarios alike.

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// newDPoPKey returns a fresh EC P-256 key, for ES256 proofs.
func newDPoPKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("generating a DPoP key: %v", err)
	}
	return k
}

// dpopThumbprint is the RFC 7638 SHA-256 thumbprint of key's public half,
// base64url without padding: the cnf.jkt of a token bound to key.
func dpopThumbprint(t testing.TB, key crypto.Signer) string {
	t.Helper()
	jwk := jose.JSONWebKey{Key: key.Public()}
	tp, err := jwk.Thumbprint(crypto.SHA256)
	if err != nil {
		t.Fatalf("thumbprint of the DPoP key: %v", err)
	}
	return base64.RawURLEncoding.EncodeToString(tp)
}

// dpopATH is the ath claim for accessToken: base64url(SHA-256(token)).
func dpopATH(accessToken string) string {
	sum := sha256.Sum256([]byte(accessToken))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// dpopProof returns a fresh DPoP proof signed by key (ES256 for a P-256
// key): header typ dpop+jwt, alg, jwk (the public key); claims jti (random),
// htm = method, htu = u without query and fragment, iat = now, ath when
// accessToken is not empty (a proof for a resource request; leave it empty
// at the token endpoint), nonce when not empty.
func dpopProof(t testing.TB, key crypto.Signer, method, u, accessToken, nonce string) string {
	t.Helper()
	parsed, err := url.Parse(u)
	if err != nil {
		t.Fatalf("dpopProof: bad URL %q: %v", u, err)
	}
	parsed.RawQuery, parsed.ForceQuery, parsed.Fragment, parsed.RawFragment = "", false, "", ""
	return signDPoPProof(t, key, DPoPProofSpec{
		Method: method, URL: parsed.String(), AccessToken: accessToken, Nonce: nonce,
	})
}

// DPoPProofSpec describes a proof for signDPoPProof, down to the malformed
// ones a verifier must refuse. Zero fields get the values of a valid proof.
type DPoPProofSpec struct {
	Method string // htm
	URL    string // htu, used as given
	// AccessToken, when set, gives ath = base64url(SHA-256(AccessToken)).
	AccessToken string
	// ATH, when set, is used as ath instead.
	ATH   string
	Nonce string
	JTI   string    // default: 16 random bytes, hex
	IAT   time.Time // default: now
	Typ   string    // default: dpop+jwt
	// Alg overrides the algorithm (default: ES256/ES384/ES512 by curve,
	// EdDSA, or PS256 for RSA: the last is not one oidc-provider accepts).
	Alg jose.SignatureAlgorithm
	// JWK, when set, is put in the header instead of key's public half
	// (e.g. another key's, so the signature does not match it).
	JWK *jose.JSONWebKey
	// OmitJWK leaves the jwk header out.
	OmitJWK bool
	// Claims are merged over the claims above; a nil value removes one.
	Claims map[string]any
}

// signDPoPProof signs the proof spec describes with key.
func signDPoPProof(t testing.TB, key crypto.Signer, spec DPoPProofSpec) string {
	t.Helper()
	alg := spec.Alg
	if alg == "" {
		alg = dpopAlg(key)
	}
	typ := spec.Typ
	if typ == "" {
		typ = "dpop+jwt"
	}
	opts := &jose.SignerOptions{}
	opts.WithType(jose.ContentType(typ))
	if !spec.OmitJWK {
		jwk := jose.JSONWebKey{Key: key.Public()}
		if spec.JWK != nil {
			jwk = *spec.JWK
		}
		opts.WithHeader("jwk", jwk)
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, opts)
	if err != nil {
		t.Fatalf("DPoP proof signer: %v", err)
	}
	payload, err := json.Marshal(dpopClaims(t, spec))
	if err != nil {
		t.Fatal(err)
	}
	jws, err := signer.Sign(payload)
	if err != nil {
		t.Fatalf("signing a DPoP proof: %v", err)
	}
	raw, err := jws.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func dpopClaims(t testing.TB, spec DPoPProofSpec) map[string]any {
	t.Helper()
	jti := spec.JTI
	if jti == "" {
		jti = randomID(t) + randomID(t)
	}
	iat := spec.IAT
	if iat.IsZero() {
		iat = time.Now()
	}
	claims := map[string]any{"jti": jti, "htm": spec.Method, "htu": spec.URL, "iat": iat.Unix()}
	switch {
	case spec.ATH != "":
		claims["ath"] = spec.ATH
	case spec.AccessToken != "":
		claims["ath"] = dpopATH(spec.AccessToken)
	}
	if spec.Nonce != "" {
		claims["nonce"] = spec.Nonce
	}
	for k, v := range spec.Claims {
		if v == nil {
			delete(claims, k)
		} else {
			claims[k] = v
		}
	}
	return claims
}

func dpopAlg(key crypto.Signer) jose.SignatureAlgorithm {
	switch k := key.(type) {
	case *ecdsa.PrivateKey:
		switch k.Curve {
		case elliptic.P384():
			return jose.ES384
		case elliptic.P521():
			return jose.ES512
		}
		return jose.ES256
	case ed25519.PrivateKey:
		return jose.EdDSA
	case *rsa.PrivateKey:
		return jose.PS256
	}
	return jose.ES256
}

func TestDPoPProofHelperBuildsRFC9449Proofs(t *testing.T) {
	t.Parallel()
	key := newDPoPKey(t)
	raw := dpopProof(t, key, http.MethodGet, "https://B.example:8443/orders/7?q=1#frag", "tok-123", "n-1")
	jws, err := jose.ParseSigned(raw, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		t.Fatal(err)
	}
	hdr := jws.Signatures[0].Header
	if hdr.ExtraHeaders["typ"] != "dpop+jwt" || hdr.JSONWebKey == nil || !hdr.JSONWebKey.IsPublic() || hdr.KeyID != "" {
		t.Fatalf("header %+v", hdr)
	}
	payload, err := jws.Verify(hdr.JSONWebKey)
	if err != nil {
		t.Fatalf("the proof does not verify with its own jwk: %v", err)
	}
	tp, err := hdr.JSONWebKey.Thumbprint(crypto.SHA256)
	if err != nil || base64.RawURLEncoding.EncodeToString(tp) != dpopThumbprint(t, key) {
		t.Errorf("jwk thumbprint differs from dpopThumbprint (%v)", err)
	}
	var claims map[string]any
	if err := json.Unmarshal(payload, &claims); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte("tok-123"))
	if claims["htm"] != "GET" || claims["htu"] != "https://B.example:8443/orders/7" || claims["nonce"] != "n-1" ||
		claims["ath"] != base64.RawURLEncoding.EncodeToString(sum[:]) || claims["jti"] == "" || len(claims) != 6 {
		t.Errorf("claims %v", claims)
	}
	if iat, _ := claims["iat"].(float64); time.Since(time.Unix(int64(iat), 0)).Abs() > 5*time.Second {
		t.Errorf("iat %v, want now", claims["iat"])
	}
	if other := dpopProof(t, key, http.MethodGet, "https://b.example/", "", ""); tokenClaims(t, other)["jti"] == claims["jti"] {
		t.Error("two proofs share a jti")
	}
	if c := tokenClaims(t, dpopProof(t, key, http.MethodPost, "https://b.example/token", "", "")); c["ath"] != nil || c["nonce"] != nil {
		t.Errorf("a token endpoint proof without nonce has ath %v, nonce %v", c["ath"], c["nonce"])
	}
}
