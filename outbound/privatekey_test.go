package outbound

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// assertionVerifier is the token endpoint's side of private_key_jwt
// (RFC 7523 3, OIDC Core 9): the signature against the client's
// registered public key, iss and sub, aud, a short exp in the future, and
// a jti it has never seen.
type assertionVerifier struct {
	audience string // the token endpoint's URL

	mu   sync.Mutex
	key  crypto.PublicKey // registered; swap it to rotate
	jtis map[string]bool
	seen []seenAssertion
}

type seenAssertion struct {
	header jose.Header
	claims jwt.Claims
	form   url.Values
}

// verifyAssertions makes ts verify private_key_jwt assertions signed with
// the private half of key.
func verifyAssertions(ts *tokenServer, key crypto.PublicKey) *assertionVerifier {
	v := &assertionVerifier{audience: ts.URL + "/token", key: key, jtis: map[string]bool{}}
	ts.set(func(ts *tokenServer) { ts.authenticate = v.authenticate })
	return v
}

func (v *assertionVerifier) register(key crypto.PublicKey) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.key = key
}

func (v *assertionVerifier) authenticate(r *http.Request, form url.Values) error {
	if _, _, ok := r.BasicAuth(); ok || form.Has("client_secret") {
		return errors.New("a client secret came with private_key_jwt")
	}
	if got := form.Get("client_assertion_type"); got != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer" {
		return fmt.Errorf("client_assertion_type %q", got)
	}
	tok, err := jwt.ParseSigned(form.Get("client_assertion"), []jose.SignatureAlgorithm{jose.RS256, jose.ES256})
	if err != nil {
		return fmt.Errorf("client_assertion: %v", err)
	}
	var c jwt.Claims
	v.mu.Lock()
	defer v.mu.Unlock()
	if err := tok.Claims(v.key, &c); err != nil {
		return errors.New("the assertion's signature does not verify with the registered key")
	}
	now := time.Now()
	switch {
	case c.Issuer != testClientID || c.Subject != testClientID || form.Get("client_id") != testClientID:
		return fmt.Errorf("iss %q, sub %q, client_id %q: want %q", c.Issuer, c.Subject, form.Get("client_id"), testClientID)
	case len(c.Audience) != 1 || c.Audience[0] != v.audience:
		return fmt.Errorf("aud %q, want %q", c.Audience, v.audience)
	case c.Expiry == nil || !c.Expiry.Time().After(now):
		return errors.New("the assertion has expired or has no exp")
	case c.Expiry.Time().After(now.Add(5 * time.Minute)):
		return errors.New("the assertion lives too long")
	case c.IssuedAt == nil || c.IssuedAt.Time().After(now.Add(5*time.Second)):
		return errors.New("the assertion has no iat, or one in the future")
	case c.ID == "":
		return errors.New("the assertion has no jti")
	case v.jtis[c.ID]:
		return errors.New("the assertion's jti was used before")
	}
	v.jtis[c.ID] = true
	v.seen = append(v.seen, seenAssertion{header: tok.Headers[0], claims: c, form: form})
	return nil
}

func (v *assertionVerifier) assertions() []seenAssertion {
	v.mu.Lock()
	defer v.mu.Unlock()
	return append([]seenAssertion(nil), v.seen...)
}

// testRSAKeys are generated once: 2048-bit generation is slow under -race.
var testRSAKeys = sync.OnceValue(func() [2]*rsa.PrivateKey {
	var keys [2]*rsa.PrivateKey
	for i := range keys {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			panic(err)
		}
		keys[i] = k
	}
	return keys
})

func newECKey(t *testing.T, curve elliptic.Curve) *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(curve, rand.Reader)
	must(t, err)
	return k
}

// keyPEM encodes key as a PEM block of typ: PRIVATE KEY (PKCS#8), RSA
// PRIVATE KEY (PKCS#1) or EC PRIVATE KEY (SEC1).
func keyPEM(t *testing.T, key any, typ string) []byte {
	t.Helper()
	var (
		der []byte
		err error
	)
	switch typ {
	case "PRIVATE KEY":
		der, err = x509.MarshalPKCS8PrivateKey(key)
	case "RSA PRIVATE KEY":
		der = x509.MarshalPKCS1PrivateKey(key.(*rsa.PrivateKey))
	case "EC PRIVATE KEY":
		der, err = x509.MarshalECPrivateKey(key.(*ecdsa.PrivateKey))
	default:
		t.Fatalf("keyPEM: type %q", typ)
	}
	must(t, err)
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

// privateKeyJWTEnv is env for private_key_jwt with the key in keyFile.
func privateKeyJWTEnv(ts *tokenServer, keyFile, kid string) map[string]string {
	return env(ts, "http://upstream.test", map[string]string{
		"AUTHSIDECAR_OUTBOUND_AUTH_METHOD":      "private_key_jwt",
		"AUTHSIDECAR_OUTBOUND_CLIENT_SECRET":    "",
		"AUTHSIDECAR_OUTBOUND_PRIVATE_KEY_FILE": keyFile,
		"AUTHSIDECAR_OUTBOUND_PRIVATE_KEY_ID":   kid,
	})
}

// fetchFresh fetches n tokens, each with a new token request.
func fetchFresh(t *testing.T, h *harness, n int) {
	t.Helper()
	cache := h.route("payments").cache
	for i := range n {
		tok, err := cache.Token(t.Context())
		if err != nil {
			t.Fatalf("fetch %d: %v", i+1, err)
		}
		cache.Invalidate(tok)
	}
}

func TestPrivateKeyJWTAssertionsAreVerifiedByTheTokenEndpoint(t *testing.T) {
	rsaKey, ecKey := testRSAKeys()[0], newECKey(t, elliptic.P256())
	ecParams := pem.EncodeToMemory(&pem.Block{Type: "EC PARAMETERS", Bytes: []byte{0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07}})
	for _, tc := range []struct {
		name    string
		pem     []byte
		public  crypto.PublicKey
		wantAlg string
		kid     string
	}{
		{"an RSA key in PKCS#1 signs RS256", keyPEM(t, rsaKey, "RSA PRIVATE KEY"), rsaKey.Public(), "RS256", "rsa-2026"},
		{"an RSA key in PKCS#8 signs RS256", keyPEM(t, rsaKey, "PRIVATE KEY"), rsaKey.Public(), "RS256", ""},
		{"a P-256 key in SEC1 signs ES256", keyPEM(t, ecKey, "EC PRIVATE KEY"), ecKey.Public(), "ES256", "ec-1"},
		{"a P-256 key in PKCS#8 signs ES256", keyPEM(t, ecKey, "PRIVATE KEY"), ecKey.Public(), "ES256", ""},
		{"a P-256 key after EC PARAMETERS, as openssl ecparam -genkey writes it", append(ecParams, keyPEM(t, ecKey, "EC PRIVATE KEY")...), ecKey.Public(), "ES256", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "key.pem")
			must(t, os.WriteFile(path, tc.pem, 0o600))
			ts := newTokenServer(t)
			v := verifyAssertions(ts, tc.public)
			h := build(t, privateKeyJWTEnv(ts, path, tc.kid), nil)
			fetchFresh(t, h, 3)

			seen := v.assertions()
			if len(seen) != 3 || ts.calls.Load() != 3 {
				t.Fatalf("the endpoint accepted %d of %d token requests, want 3 of 3", len(seen), ts.calls.Load())
			}
			for i, a := range seen {
				if a.header.Algorithm != tc.wantAlg || a.header.KeyID != tc.kid {
					t.Errorf("assertion %d: alg %q kid %q, want %q %q", i, a.header.Algorithm, a.header.KeyID, tc.wantAlg, tc.kid)
				}
				if life := a.claims.Expiry.Time().Sub(a.claims.IssuedAt.Time()); life != 60*time.Second {
					t.Errorf("assertion %d lives %s, want 1m0s", i, life)
				}
				if a.form.Has("client_secret") || a.form.Get("client_id") != testClientID {
					t.Errorf("assertion %d: body %v, want client_id and no secret", i, a.form)
				}
			}
			// The endpoint refuses a replayed assertion, so each of the
			// three accepted had a jti of its own.
			replay := url.Values{"grant_type": {"client_credentials"}, "client_id": {testClientID},
				"client_assertion_type": {jwtBearer}, "client_assertion": {ts.lastAssertion(t)}}
			resp, err := ts.Client().PostForm(ts.URL+"/token", replay)
			must(t, err)
			resp.Body.Close()
			if resp.StatusCode != http.StatusUnauthorized {
				t.Errorf("a replayed assertion got %d, want 401", resp.StatusCode)
			}
		})
	}
}

// lastAssertion is the client_assertion of the last request.
func (ts *tokenServer) lastAssertion(t *testing.T) string {
	a := ts.lastForm().Get("client_assertion")
	if a == "" {
		t.Fatal("the last token request had no client_assertion")
	}
	return a
}

func TestPrivateKeyJWTWithAnUnregisteredKeyIsRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "key.pem")
	must(t, os.WriteFile(path, keyPEM(t, newECKey(t, elliptic.P256()), "PRIVATE KEY"), 0o600))
	ts := newTokenServer(t)
	verifyAssertions(ts, newECKey(t, elliptic.P256()).Public())
	h := build(t, privateKeyJWTEnv(ts, path, ""), nil)
	_, err := h.route("payments").cache.Token(t.Context())
	want := `outbound: no valid token for route "payments": outbound: token endpoint ` + ts.URL +
		`/token answered 401: error "invalid_client" ("the assertion's signature does not verify with the registered key")`
	if err == nil || err.Error() != want {
		t.Fatalf("error = %v, want %s", err, want)
	}
}

func TestPrivateKeyFileIsReReadWhenItChanges(t *testing.T) {
	for _, tc := range []struct {
		name  string
		write func(path string, pem []byte) error
	}{
		{"rewritten in place", func(path string, pem []byte) error { return os.WriteFile(path, pem, 0o600) }},
		{"replaced by a rename", func(path string, pem []byte) error {
			if err := os.WriteFile(path+".new", pem, 0o600); err != nil {
				return err
			}
			return os.Rename(path+".new", path)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			oldKey, newKey := newECKey(t, elliptic.P256()), testRSAKeys()[1]
			path := filepath.Join(t.TempDir(), "key.pem")
			must(t, os.WriteFile(path, keyPEM(t, oldKey, "EC PRIVATE KEY"), 0o600))
			ts := newTokenServer(t)
			v := verifyAssertions(ts, oldKey.Public())
			h := build(t, privateKeyJWTEnv(ts, path, "key-1"), nil)
			fetchFresh(t, h, 1)

			must(t, tc.write(path, keyPEM(t, newKey, "PRIVATE KEY")))
			v.register(newKey.Public()) // the old key is now refused
			fetchFresh(t, h, 1)

			seen := v.assertions()
			if len(seen) != 2 || seen[0].header.Algorithm != "ES256" || seen[1].header.Algorithm != "RS256" {
				t.Fatalf("accepted assertions %+v, want one ES256 then one RS256", seen)
			}
		})
	}
}
