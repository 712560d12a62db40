package inbound

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http/httptest"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/authsidecar/authsidecar/internal/clock"
)

// FuzzDPoPProof feeds the proof checker arbitrary DPoP headers for a
// token bound to one key: whatever it accepts must be a proof by that key
// for this request and this token.
func FuzzDPoPProof(f *testing.F) {
	priv, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	thumb, _ := (&jose.JSONWebKey{Key: priv.Public()}).Thumbprint(crypto.SHA256)
	jkt := base64.RawURLEncoding.EncodeToString(thumb)
	const token = "the-access-token"
	sum := sha256.Sum256([]byte(token))
	ath := base64.RawURLEncoding.EncodeToString(sum[:])
	signer, _ := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: priv},
		(&jose.SignerOptions{EmbedJWK: true}).WithType(dpopProofType))
	sign := func(claims map[string]any) string {
		b, _ := json.Marshal(claims)
		jws, _ := signer.Sign(b)
		s, _ := jws.CompactSerialize()
		return s
	}
	now := time.Now()
	good := map[string]any{"jti": "j1", "htm": "GET", "htu": "http://sidecar.test/orders", "iat": now.Unix(), "ath": ath}
	f.Add(sign(good))
	f.Add(sign(map[string]any{"jti": "j2", "htm": "GET", "htu": "http://sidecar.test/orders?q#f", "iat": now.Unix(), "ath": ath}))
	f.Add(sign(map[string]any{"htm": "GET"}))
	f.Add("eyJ0eXAiOiJkcG9wK2p3dCIsImFsZyI6Im5vbmUifQ.e30.")
	f.Add("a.b.c")
	f.Fuzz(func(t *testing.T, proof string) {
		d := &dpopChecker{algs: []jose.SignatureAlgorithm{jose.ES256, jose.RS256}, skew: 30 * time.Second,
			clock: clock.Real, seen: newReplayCache(1024, 1024)}
		r := httptest.NewRequest("GET", "http://sidecar.test/orders", nil)
		r.Header["Dpop"] = []string{proof}
		tgt := target{path: "/orders", rawPath: "/orders", sent: "/orders"}
		if d.check(r, d.addressedOf(r), tgt, token, jkt) != nil {
			return
		}
		// Accepted: it must verify with the bound key and name this request.
		jws, err := jose.ParseSigned(proof, d.algs)
		if err != nil {
			t.Fatalf("accepted a proof that does not parse: %q", proof)
		}
		payload, err := jws.Verify(priv.Public())
		if err != nil {
			t.Fatalf("accepted a proof not signed by the bound key: %q", proof)
		}
		var c proofClaims
		if json.Unmarshal(payload, &c) != nil || c.ATH != ath || c.HTM != "GET" || c.JTI == "" {
			t.Fatalf("accepted a proof with claims %s", payload)
		}
		if d.check(r, d.addressedOf(r), tgt, token, jkt) == nil {
			t.Fatalf("accepted the same proof twice: %q", proof)
		}
	})
}
