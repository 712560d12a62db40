package e2e

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// IDPKey is a signing key with its key id.
type IDPKey struct {
	KID     string
	Private crypto.Signer
}

func newRSAKey(t testing.TB, kid string) *IDPKey {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatalf("generating RSA key: %v", err)
	}
	return &IDPKey{KID: kid, Private: k}
}

func newECKey(t testing.TB, kid string) *IDPKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("generating EC key: %v", err)
	}
	return &IDPKey{KID: kid, Private: k}
}

// newKeySet returns a fresh RSA and a fresh EC P-256 key with unique kids.
func newKeySet(t testing.TB) []*IDPKey {
	t.Helper()
	return []*IDPKey{newRSAKey(t, "rsa-"+randomID(t)), newECKey(t, "ec-"+randomID(t))}
}

func randomID(t testing.TB) string {
	t.Helper()
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%x", b)
}

// PrivateJWK is the key as a private JWK.
func (k *IDPKey) PrivateJWK() jose.JSONWebKey {
	return jose.JSONWebKey{Key: k.Private, KeyID: k.KID, Use: "sig"}
}

// PublicJWK is the key's public half as a JWK.
func (k *IDPKey) PublicJWK() jose.JSONWebKey {
	return jose.JSONWebKey{Key: k.Private.Public(), KeyID: k.KID, Use: "sig"}
}

// WritePEM writes the private key as PKCS#8 PEM into dir and returns the
// file's path, for the sidecar's private_key_jwt settings.
func (k *IDPKey) WritePEM(t testing.TB, dir string) string {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(k.Private)
	if err != nil {
		t.Fatalf("marshalling key %q: %v", k.KID, err)
	}
	path := filepath.Join(dir, k.KID+".pem")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// Alg is the JWS algorithm this harness signs with the key: RS256 for RSA,
// ES256 for EC P-256.
func (k *IDPKey) Alg() jose.SignatureAlgorithm {
	if _, ok := k.Private.(*ecdsa.PrivateKey); ok {
		return jose.ES256
	}
	return jose.RS256
}

// ClientAssertion returns an RFC 7523 client assertion for clientID signed
// with k, valid for 60 s, with audience aud (the issuer or token endpoint).
func (k *IDPKey) ClientAssertion(clientID, aud string) (string, error) {
	signer, err := jose.NewSigner(
		jose.SigningKey{Algorithm: k.Alg(), Key: jose.JSONWebKey{Key: k.Private, KeyID: k.KID}},
		(&jose.SignerOptions{}).WithType("JWT"),
	)
	if err != nil {
		return "", fmt.Errorf("client assertion signer: %w", err)
	}
	jti := make([]byte, 16)
	if _, err := rand.Read(jti); err != nil {
		return "", err
	}
	now := time.Now()
	payload, err := json.Marshal(map[string]any{
		"iss": clientID, "sub": clientID, "aud": aud,
		"jti": fmt.Sprintf("%x", jti), "iat": now.Unix(), "exp": now.Add(time.Minute).Unix(),
	})
	if err != nil {
		return "", err
	}
	jws, err := signer.Sign(payload)
	if err != nil {
		return "", fmt.Errorf("signing client assertion: %w", err)
	}
	return jws.CompactSerialize()
}
