package inbound

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"math"
	"net/http"
	"net/url"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/authsidecar/authsidecar/internal/certtest"
	"github.com/authsidecar/authsidecar/internal/clock"
	"github.com/authsidecar/authsidecar/internal/idptest"
	"github.com/authsidecar/authsidecar/internal/reload"
)

func FuzzParseBearer(f *testing.F) {
	for _, seed := range []string{
		"Bearer abc.def.ghi", "bearer x", "BEARER  x==", "Bearer", "Bearer ", "Basic dXNlcjpwYXNz",
		"Bearer a b", "Bearer =", "Bearer a=b", "Bearer \x00", "Bearer eyJ.eyJ.", "Bearer ~+/-._",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, v string) {
		tok, err := parseBearer(v)
		if err != nil {
			if tok != "" {
				t.Fatalf("parseBearer(%q) returned %q with error %v", v, tok, err)
			}
			return
		}
		if tok == "" || !isToken68(tok) || strings.ContainsAny(tok, " \t\r\n") {
			t.Fatalf("parseBearer(%q) = %q, not token68", v, tok)
		}
		if !strings.HasSuffix(v, tok) || !strings.EqualFold(v[:6], "bearer") {
			t.Fatalf("parseBearer(%q) = %q, not the header's token", v, tok)
		}
	})
}

func FuzzParseUnverified(f *testing.F) {
	for _, seed := range []string{
		"eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJ4IiwiZXhwIjoxfQ.c2ln",
		"eyJhbGciOiJub25lIn0.e30.",
		"eyJhbGciOiJSUzI1NiJ9.eyJhdWQiOlsiYSIsImIiXSwic2NwIjoicmVhZCJ9.x",
		"eyJhbGciOiJSUzI1NiJ9.eyJleHAiOiIxIn0.x", "..", "a.b.c.d.e", "e30.e30.e30",
		"eyJhbGciOiJSUzI1NiJ9.eyJleHAiOjFlMzAwfQ.x",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		h, c, payload, err := parseUnverified(raw)
		if err != nil {
			return
		}
		if h.Alg == "" || c == nil || payload == nil {
			t.Fatalf("parseUnverified(%q) succeeded without alg, claims or payload", raw)
		}
		_ = c.scopes()
		_ = c.clientID()
	})
}

func TestScopesAreSplitOnSpaceAlone(t *testing.T) {
	for _, tc := range []struct {
		name string
		c    claims
		want []string
	}{
		{"a scope string", claims{Scope: " read  write "}, []string{"read", "write"}},
		{"tabs, newlines and Unicode spaces do not split", claims{Scope: "read\tadmin read\u00a0super x\ny"}, []string{"read\tadmin", "read\u00a0super", "x\ny"}},
		{"scp as one string", claims{Scp: stringList{"read\u2003admin write"}}, []string{"read\u2003admin", "write"}},
		{"scp as a list", claims{Scp: stringList{"read admin", "write"}}, []string{"read admin", "write"}},
	} {
		if got := tc.c.scopes(); !slices.Equal(got, tc.want) {
			t.Errorf("%s: scopes = %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestTwoBadClaimsAreAlwaysReportedAlike(t *testing.T) {
	const body = `{"client_id":["0"],"exp":"00","sub":7}`
	for range 20 {
		var c claims
		if err := c.UnmarshalJSON([]byte(body)); err == nil || !strings.HasPrefix(err.Error(), `claim "sub": `) {
			t.Fatalf("error = %v, want the first bad claim in the fixed order, sub", err)
		}
	}
}

func TestClaimsAreReadByTheirExactNames(t *testing.T) {
	var c claims
	body := `{"scope":"read","SCOPE":"admin","Client_Id":"root","client_id":"orders","Sub":"x","sub":"svc"}`
	if err := c.UnmarshalJSON([]byte(body)); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(c.scopes(), " "); got != "read" || c.clientID() != "orders" || c.Subject != "svc" {
		t.Errorf("scopes %q, client %q, sub %q; want read, orders, svc", got, c.clientID(), c.Subject)
	}
	a, err := parseIntrospection([]byte(`{"ACTIVE":true,"scope":"read"}`))
	if err != nil || a.Active {
		t.Errorf(`"ACTIVE": true read as active = %v (%v)`, a.Active, err)
	}
}

// FuzzParseJWKS feeds parseJWKS key set documents. Every key it keeps must
// be public, asymmetric and usable to verify signatures: use "sig" or
// none, an alg (when given) that is a signature algorithm, RSA of at least
// 2048 bits, key_ops (when given) holding "verify". Each key is judged on
// its own (RFC 7517 section 5: a key that is not understood is ignored),
// so one odd key never costs the issuer its other keys.
func FuzzParseJWKS(f *testing.F) {
	for _, doc := range jwksSeeds(f) {
		f.Add([]byte(doc))
	}
	probes := signatureProbes(f)
	f.Fuzz(func(t *testing.T, body []byte) {
		idx, err := parseJWKS(body)
		want := usableKeys(body)
		if err != nil {
			if idx != nil || len(want) > 0 {
				t.Fatalf("parseJWKS(%q) failed (%v) but %d keys are usable", body, err, len(want))
			}
			return
		}
		if len(idx.all) != len(want) {
			t.Fatalf("parseJWKS(%q) kept %d keys, want the %d usable ones", body, len(idx.all), len(want))
		}
		n := 0
		for i, k := range idx.all {
			checkKeptKey(t, body, k)
			if k.KeyID != want[i].KeyID || !reflect.DeepEqual(k.Key, want[i].Key) {
				t.Fatalf("parseJWKS(%q): key %d is %q, want %q", body, i, k.KeyID, want[i].KeyID)
			}
			if !slices.ContainsFunc(idx.byKID[k.KeyID], func(c jose.JSONWebKey) bool { return reflect.DeepEqual(c.Key, k.Key) }) {
				t.Fatalf("parseJWKS(%q): key %d is not indexed by its kid %q", body, i, k.KeyID)
			}
		}
		for _, ks := range idx.byKID {
			n += len(ks)
		}
		if n != len(idx.all) {
			t.Fatalf("parseJWKS(%q): %d keys by kid, %d in all", body, n, len(idx.all))
		}
		for _, p := range probes {
			// The keys must be usable by verifyWith: an error, never a panic,
			// and no key of the document verifies a signature it did not make.
			if _, err := verifyWith(idx, p.jws, p.jws.Signatures[0].Header); err == nil && !p.signer(idx) {
				t.Fatalf("parseJWKS(%q): a key verified a probe signed by another key", body)
			}
		}
	})
}

// checkKeptKey checks one key parseJWKS kept.
func checkKeptKey(t *testing.T, body []byte, k jose.JSONWebKey) {
	t.Helper()
	switch key := k.Key.(type) {
	case *rsa.PublicKey:
		if key.N.BitLen() < 2048 {
			t.Fatalf("parseJWKS(%q) kept an RSA key of %d bits", body, key.N.BitLen())
		}
	case *ecdsa.PublicKey, ed25519.PublicKey:
	default:
		t.Fatalf("parseJWKS(%q) kept a %T, not a public signature key", body, k.Key)
	}
	if !k.IsPublic() || !k.Valid() || k.Use != "" && k.Use != "sig" || k.Algorithm != "" && !isJWSSignatureAlg(k.Algorithm) {
		t.Fatalf("parseJWKS(%q) kept %q (use %q, alg %q), which cannot verify signatures", body, k.KeyID, k.Use, k.Algorithm)
	}
}

// isJWSSignatureAlg is the oracle's own list of asymmetric JWS algorithms
// (RFC 7518 section 3.1, RFC 8037).
func isJWSSignatureAlg(alg string) bool {
	return slices.Contains([]string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}, alg)
}

// usableKeys is what parseJWKS must keep of body, judged key by key
// without it: the oracle the fuzz target holds it to.
func usableKeys(body []byte) []jose.JSONWebKey {
	var doc struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if json.Unmarshal(body, &doc) != nil {
		return nil
	}
	var out []jose.JSONWebKey
	for _, raw := range doc.Keys {
		var k jose.JSONWebKey
		var ops struct {
			KeyOps *[]string `json:"key_ops"`
		}
		if k.UnmarshalJSON(raw) != nil || json.Unmarshal(raw, &ops) != nil {
			continue
		}
		if ops.KeyOps != nil && !slices.Contains(*ops.KeyOps, "verify") {
			continue
		}
		if !k.Valid() { // as published, private parts and all
			continue
		}
		k = k.Public()
		switch key := k.Key.(type) {
		case *rsa.PublicKey:
			if key.N.BitLen() < 2048 {
				continue
			}
		case *ecdsa.PublicKey, ed25519.PublicKey:
		default:
			continue
		}
		if k.Valid() && (k.Use == "" || k.Use == "sig") && (k.Algorithm == "" || isJWSSignatureAlg(k.Algorithm)) {
			out = append(out, k)
		}
	}
	return out
}

// probe is a token signed by a key of the test's own, which no fuzzed
// document holds unless it holds that very public key.
type probe struct {
	jws    *jose.JSONWebSignature
	signer func(*keyIndex) bool // whether idx holds the signing key
}

func signatureProbes(tb testing.TB) []probe {
	var probes []probe
	for _, k := range []idptest.Key{idptest.NewRSAKey(tb, "probe-rsa"), idptest.NewECKey(tb, "probe-ec")} {
		raw := idptest.Sign(tb, k, map[string]any{"sub": "probe"})
		jws, err := jose.ParseSignedCompact(raw, []jose.SignatureAlgorithm{k.Alg})
		if err != nil {
			tb.Fatal(err)
		}
		pub := k.Private.Public()
		probes = append(probes, probe{jws: jws, signer: func(idx *keyIndex) bool {
			return slices.ContainsFunc(idx.all, func(c jose.JSONWebKey) bool {
				eq, ok := c.Key.(interface{ Equal(crypto.PublicKey) bool })
				return ok && eq.Equal(pub)
			})
		}})
	}
	return probes
}

// jwksSeeds are key sets as identity providers publish them, and as they
// go wrong: RFC 7517's examples, every key type and curve, private and
// symmetric keys, encryption keys, certificate chains, short RSA keys and
// keys of types no library knows.
func jwksSeeds(tb testing.TB) []string {
	rsa2048 := idptest.NewRSAKey(tb, "rsa-2048")
	rsa1024, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		tb.Fatal(err)
	}
	var ecKeys []*ecdsa.PrivateKey
	for _, c := range []elliptic.Curve{elliptic.P256(), elliptic.P384(), elliptic.P521()} {
		k, err := ecdsa.GenerateKey(c, rand.Reader)
		if err != nil {
			tb.Fatal(err)
		}
		ecKeys = append(ecKeys, k)
	}
	edPub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	ca := certtest.NewCA(tb, "jwks-x5c")
	set := func(keys ...jose.JSONWebKey) string {
		b, err := json.Marshal(jose.JSONWebKeySet{Keys: keys})
		if err != nil {
			tb.Fatal(err)
		}
		return string(b)
	}
	good := set(
		jose.JSONWebKey{Key: rsa2048.Private.Public(), KeyID: "rsa-1", Algorithm: "RS256", Use: "sig"},
		jose.JSONWebKey{Key: ecKeys[0].Public(), KeyID: "ec-256", Algorithm: "ES256", Use: "sig"},
		jose.JSONWebKey{Key: ecKeys[1].Public(), KeyID: "ec-384", Algorithm: "ES384"},
		jose.JSONWebKey{Key: ecKeys[2].Public(), KeyID: "ec-521", Algorithm: "ES512"},
		jose.JSONWebKey{Key: edPub, KeyID: "ed", Algorithm: "EdDSA", Use: "sig"},
	)
	goodKey := strings.TrimSuffix(strings.TrimPrefix(set(jose.JSONWebKey{Key: rsa2048.Private.Public(), KeyID: "rsa-1", Use: "sig"}), `{"keys":[`), "]}")
	return []string{
		good,
		set(jose.JSONWebKey{Key: rsa2048.Private, KeyID: "leaked-private", Algorithm: "RS256"}),
		set(jose.JSONWebKey{Key: rsa1024.Public(), KeyID: "rsa-1024", Algorithm: "RS256", Use: "sig"}),
		set(jose.JSONWebKey{Key: ca.Cert.PublicKey, KeyID: "with-x5c", Certificates: []*x509.Certificate{ca.Cert}}),
		set(jose.JSONWebKey{Key: ecKeys[0].Public(), KeyID: "dup"}, jose.JSONWebKey{Key: ecKeys[1].Public(), KeyID: "dup"}, jose.JSONWebKey{Key: edPub}),
		set(jose.JSONWebKey{Key: []byte("an HMAC secret everyone can read"), KeyID: "hmac", Algorithm: "HS256"}),
		// RFC 7517 appendix A.1: an EC encryption key and an RSA signing key.
		`{"keys":[{"kty":"EC","crv":"P-256","x":"MKBCTNIcKUSDii11ySs3526iDZ8AiTo7Tu6KPAqv7D4","y":"4Etl6SRW2YiLUrN5vfvVHuhp7x8PxltmWWlbbM4IFyM","use":"enc","kid":"1"},` +
			`{"kty":"RSA","n":"0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw","e":"AQAB","alg":"RS256","kid":"2011-04-29"}]}`,
		// RFC 7517 appendix A.3: symmetric keys.
		`{"keys":[{"kty":"oct","alg":"A128KW","k":"GawgguFyGrWKav7AX4VKUg"},{"kty":"oct","k":"AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow","kid":"HMAC key used in JWS spec Appendix A.1 example"}]}`,
		// RFC 8037 appendix A.2: an Ed25519 public key.
		`{"keys":[{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}`,
		// Keys beside a good one: X25519 (ECDH only), an unknown type, a
		// curve go-jose does not know, an encryption alg, key_ops.
		`{"keys":[{"kty":"OKP","crv":"X25519","x":"hSDwCYkwp1R0i33ctD73Wg2_Og0mOBr066SpjqqbTmo"},` + goodKey + `]}`,
		`{"keys":[{"kty":"PQC","alg":"ML-DSA-65","pub":"AAAA"},` + goodKey + `]}`,
		`{"keys":[{"kty":"EC","crv":"secp256k1","x":"MKBCTNIcKUSDii11ySs3526iDZ8AiTo7Tu6KPAqv7D4","y":"4Etl6SRW2YiLUrN5vfvVHuhp7x8PxltmWWlbbM4IFyM"},` + goodKey + `]}`,
		`{"keys":[{"kty":"RSA","alg":"RSA-OAEP","e":"AQAB","n":"` + base64.RawURLEncoding.EncodeToString(rsa2048.Private.Public().(*rsa.PublicKey).N.Bytes()) + `"}]}`,
		`{"keys":[` + strings.Replace(goodKey, `"kid"`, `"key_ops":["verify"],"kid"`, 1) + `,` + strings.Replace(goodKey, `"kid"`, `"key_ops":["encrypt"],"kid"`, 1) + `]}`,
		`{"keys":[]}`, `{}`, `[]`, `null`, `{"keys":null}`, `{"keys":[null]}`, `{"keys":[{}]}`, `{"keys":[{"kty":"RSA"}]}`,
	}
}

// FuzzIntrospection answers an introspection call with the fuzzer's status
// and body and holds the verifier's verdict on an opaque token to an
// oracle built from RFC 7662 and SPEC: a token passes only with "active":
// true (exactly), a trusted issuer when one is named, a time window that
// holds now, and one of the audiences; its identity is the answer's
// claims, read by their exact names, scopes split on ASCII space only.
// An answer that is not a 200 with a JSON object of well-typed claims
// makes the token unverifiable now (503), never a verdict. Asking again
// gives the same verdict, and no error shows the token or the secret.
func FuzzIntrospection(f *testing.F) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	exp := strconv.FormatInt(now.Add(time.Hour).Unix(), 10)
	for _, seed := range []struct {
		status int
		body   string
	}{
		// Keycloak, Okta, Hydra, Entra-like answers.
		{200, `{"active":true,"iss":"https://idp.example/realms/prod","sub":"svc-billing","aud":"payments","client_id":"billing","scope":"payments:read payments:write","exp":` + exp + `,"iat":1767322000,"token_type":"Bearer"}`},
		{200, `{"active":true,"iss":"https://idp.example/realms/prod","sub":"0oa1","aud":["api://default","payments"],"cid":"0oa-billing","scp":["payments:read"],"exp":` + exp + `,"uid":"00u1"}`},
		{200, `{"active":true,"client_id":"billing","scope":"payments:read","aud":["payments"],"exp":` + exp + `.5,"nbf":1767322000,"token_use":"access_token"}`},
		{200, `{"active":true,"aud":"payments","azp":"billing","appid":"ignored","scp":"payments:read payments:write"}`},
		{200, `{"active":true,"iss":"https://evil.example","aud":"payments","exp":` + exp + `}`},
		{200, `{"active":true,"aud":"inventory","exp":` + exp + `}`},
		{200, `{"active":true,"aud":"payments","exp":1767322000}`},
		{200, `{"active":true,"aud":"payments","nbf":1767999999}`},
		{200, `{"active":true,"aud":"payments","scope":"payments:read\u00a0admin\tsuper"}`},
		{200, `{"active":true,"aud":"payments","sub":"svc\r\nX-Auth-Scopes: admin","scope":"a\tb"}`},
		{200, `{"active":true,"aud":"payments","token_type":"refresh_token"}`},
		{200, `{"active":true,"aud":"payments","token_use":"Refresh_Token","token_type":"Bearer"}`},
		{200, `{"active":true,"aud":"payments","token_use":7,"token_type":[]}`},
		{200, `{"active":true,"aud":"payments","typ":"at+jwt","token_type":"bearer"}`},
		{200, `{"active":false}`},
		{200, `{"active":"true","aud":"payments"}`},
		{200, `{"ACTIVE":true,"Active":true,"aud":"payments"}`},
		{200, `{"active":true,"active":false,"aud":"payments"}`},
		{200, `{"active":true,"aud":"payments","exp":"soon"}`},
		{200, `{"active":true,"aud":"payments","sub":7}`},
		{200, `{"active":true,"aud":"payments","cnf":{"x5t#S256":"bwcK0esc3ACC3DB2Y5_lESsXE8o9ltc05O89jdN-dg2"}}`},
		{200, `null`}, {200, `[]`}, {200, ``}, {200, `{"active":true`},
		{401, `{"error":"invalid_client"}`}, {500, `{"active":true,"aud":"payments"}`}, {302, ``},
	} {
		f.Add(uint16(seed.status-100), []byte(seed.body))
	}
	f.Fuzz(func(t *testing.T, statusSeed uint16, body []byte) {
		status := 100 + int(statusSeed)%500
		const token, secret = "opaque-token-3f9Kq", "rs-secret-Zx81p"
		calls := 0
		in := newFuzzIntrospection(t, now, secret, func(r *http.Request) (*http.Response, error) {
			calls++
			return &http.Response{StatusCode: status, Header: http.Header{"Content-Type": {"application/json"}},
				Body: io.NopCloser(bytes.NewReader(body)), Request: r}, nil
		})
		want := introspectionOracle(status, body, now, 30*time.Second)
		v := in.handler.verifier
		id, err := v.verify(t.Context(), token)
		checkVerdict(t, body, want, id, err)
		again, err2 := v.verify(t.Context(), token)
		if (err == nil) != (err2 == nil) || err != nil && err.Error() != err2.Error() || err == nil && !sameIntrospected(id, again) {
			t.Fatalf("%d %q: a second verify gave %v, %v after %v, %v", status, body, again, err2, id, err)
		}
		for _, e := range []error{err, err2} {
			if e != nil && !bytes.Contains(body, []byte(token)) && (strings.Contains(e.Error(), token) || strings.Contains(e.Error(), secret)) {
				t.Fatalf("%d %q: the error shows the token or the secret: %v", status, body, e)
			}
		}
		if calls == 0 {
			t.Fatalf("%d %q: the introspection endpoint was never asked", status, body)
		}
	})
}

const fuzzIssuer = "https://idp.example/realms/prod"

func newFuzzIntrospection(t *testing.T, now time.Time, secret string, answer roundTripFunc) *Inbound {
	t.Helper()
	upstream, _ := url.Parse("http://127.0.0.1:8080")
	in, err := New(Options{
		Issuers: []string{fuzzIssuer}, Audiences: []string{"other", "payments"}, Algorithms: []string{"RS256", "ES256"},
		ClockSkew: 30 * time.Second, Upstream: upstream, Clock: clock.NewFake(now),
		Introspection: &IntrospectionOptions{
			URL: "https://idp.example/realms/prod/introspect", ClientID: "payments-rs",
			Secret: reload.Static(secret), CacheTTL: 30 * time.Second,
		},
		IdentityClient: &http.Client{Transport: answer},
	})
	if err != nil {
		t.Fatal(err)
	}
	return in
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// wantIntrospection is the oracle's verdict: unavailable, a refusal for
// reason, or the identity.
type wantIntrospection struct {
	unavailable bool
	reason      string
	subject     string
	issuer      string
	clientID    string
	scopes      []string
	expiry      time.Time
}

func checkVerdict(t *testing.T, body []byte, want wantIntrospection, id *identity, err error) {
	t.Helper()
	var rej *rejection
	switch {
	case want.unavailable:
		if !errors.Is(err, errIntrospectionUnavailable) {
			t.Fatalf("%q: verify = %v, %v; want introspection unavailable", body, id, err)
		}
	case want.reason != "":
		if !errors.As(err, &rej) || rej.reason != want.reason {
			t.Fatalf("%q: verify = %v, %v; want a refusal for %s", body, id, err, want.reason)
		}
	case err != nil:
		t.Fatalf("%q: verify refused (%v); want the identity %+v", body, err, want)
	default:
		if id.subject != want.subject || id.issuer != want.issuer || id.clientID != want.clientID ||
			!slices.Equal(id.scopes, want.scopes) || id.expiry.Sub(want.expiry).Abs() > time.Microsecond || !id.introspected {
			t.Fatalf("%q: identity %+v, want %+v", body, *id, want)
		}
	}
}

func sameIntrospected(a, b *identity) bool {
	return a.subject == b.subject && a.issuer == b.issuer && a.clientID == b.clientID &&
		slices.Equal(a.scopes, b.scopes) && a.expiry.Equal(b.expiry)
}

// introspectionOracle decides what the verifier must make of an answer,
// from RFC 7662 and SPEC rather than from the code under test.
func introspectionOracle(status int, body []byte, now time.Time, ttl time.Duration) wantIntrospection {
	unavailable := wantIntrospection{unavailable: true}
	var fields map[string]json.RawMessage
	if status != http.StatusOK || json.Unmarshal(body, &fields) != nil {
		return unavailable
	}
	w := wantIntrospection{}
	var ok [12]bool
	ok[0] = decodeAs(fields["iss"], &w.issuer)
	ok[1] = decodeAs(fields["sub"], &w.subject)
	var clientIDs [4]string
	for i, name := range []string{"client_id", "azp", "appid", "cid"} {
		ok[2+i] = decodeAs(fields[name], &clientIDs[i])
	}
	var scope string
	ok[6] = decodeAs(fields["scope"], &scope)
	scp, scpOK := stringOrList(fields["scp"])
	aud, audOK := stringOrList(fields["aud"])
	exp, expOK := numericDateOf(fields["exp"])
	nbf, nbfOK := numericDateOf(fields["nbf"])
	iat, iatOK := numericDateOf(fields["iat"])
	var cnf *struct {
		X5t *string `json:"x5t#S256"`
	}
	var typ, tokenType, tokenUse string
	ok[7], ok[8], ok[9], ok[10] = scpOK && audOK, expOK && nbfOK, iatOK, decodeAs(fields["cnf"], &cnf)
	ok[11] = decodeAs(fields["typ"], &typ) && decodeAs(fields["token_type"], &tokenType) && decodeAs(fields["token_use"], &tokenUse)
	for _, good := range ok {
		if !good {
			return unavailable
		}
	}
	for _, id := range clientIDs {
		if id != "" {
			w.clientID = id
			break
		}
	}
	switch {
	case scope != "":
		w.scopes = splitASCIISpace(scope)
	case len(scp) == 1:
		w.scopes = splitASCIISpace(scp[0])
	default:
		w.scopes = scp
	}
	w.expiry = now.Add(ttl)
	if exp != nil {
		w.expiry = *exp
	}
	const skew = 30 * time.Second
	switch {
	case string(fields["active"]) != "true":
		w.reason = reasonInactive
	case strings.EqualFold(tokenType, "refresh_token") || strings.EqualFold(tokenUse, "refresh_token"):
		w.reason = reasonWrongTokenType // SPEC: providers name refresh tokens in either field
	case w.issuer != "" && w.issuer != fuzzIssuer:
		w.reason = reasonWrongIssuer
	case now.After(w.expiry.Add(skew)):
		w.reason = reasonExpired
	case nbf != nil && now.Add(skew).Before(*nbf), iat != nil && now.Add(skew).Before(*iat):
		w.reason = reasonNotYetValid
	case !slices.Contains(aud, "payments") && !slices.Contains(aud, "other"):
		w.reason = reasonWrongAudience
	case hasControl(append([]string{w.subject, w.clientID}, w.scopes...)...):
		w.reason = reasonMalformed // X-Auth-* could not carry it
	}
	return w
}

// hasControl reports whether a value holds a byte no header value may
// hold: a control character other than tab (RFC 9110 section 5.5).
func hasControl(values ...string) bool {
	for _, v := range values {
		if strings.ContainsFunc(v, func(r rune) bool { return r < 0x20 && r != '\t' || r == 0x7f }) {
			return true
		}
	}
	return false
}

// decodeAs decodes a claim that may be absent or null.
func decodeAs(raw json.RawMessage, v any) bool { return raw == nil || json.Unmarshal(raw, v) == nil }

func stringOrList(raw json.RawMessage) ([]string, bool) {
	var s string
	if raw != nil && json.Unmarshal(raw, &s) == nil && len(raw) > 0 && raw[0] == '"' {
		return []string{s}, true
	}
	var l []string
	return l, decodeAs(raw, &l)
}

// numericDateOf reads an RFC 7519 NumericDate: a number of seconds, which
// the sidecar holds to 0 ≤ n ≤ 1e11 (year 5138).
func numericDateOf(raw json.RawMessage) (*time.Time, bool) {
	if raw == nil || string(raw) == "null" {
		return nil, true
	}
	var f float64
	if json.Unmarshal(raw, &f) != nil || f < 0 || f > 1e11 {
		return nil, false
	}
	sec, frac := math.Modf(f) // a Duration overflows past 2262
	t := time.Unix(int64(sec), int64(frac*1e9))
	return &t, true
}

// splitASCIISpace splits a scope claim as RFC 6749 section 3.3 does: on
// the space character alone.
func splitASCIISpace(s string) []string {
	var out []string
	for _, f := range strings.Split(s, " ") {
		if f != "" {
			out = append(out, f)
		}
	}
	return out
}
