package inbound_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// dpopKey is a caller's DPoP key.
type dpopKey struct {
	priv *ecdsa.PrivateKey
	jkt  string
}

func newDPoPKey(t testing.TB) dpopKey {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	thumb, err := (&jose.JSONWebKey{Key: priv.Public()}).Thumbprint(crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	return dpopKey{priv: priv, jkt: base64.RawURLEncoding.EncodeToString(thumb)}
}

// proof signs claims as a DPoP proof by k; headers replace or add
// protected headers (a nil value drops typ, or jwk).
func (k dpopKey) proof(t testing.TB, claims map[string]any, headers map[jose.HeaderKey]any) string {
	t.Helper()
	opts := (&jose.SignerOptions{EmbedJWK: true, ExtraHeaders: map[jose.HeaderKey]any{}}).WithType("dpop+jwt")
	for hk, v := range headers {
		if v == nil {
			delete(opts.ExtraHeaders, hk)
			opts.EmbedJWK = opts.EmbedJWK && hk != "jwk"
			continue
		}
		opts.ExtraHeaders[hk] = v
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: k.priv}, opts)
	if err != nil {
		t.Fatal(err)
	}
	payload, _ := json.Marshal(claims)
	jws, err := signer.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	s, err := jws.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func ath(token string) string {
	sum := sha256.Sum256([]byte(token))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// proofClaims are a good proof's claims for GET url with token, changed
// by change (a nil value drops a claim).
func proofClaims(url, token string, change map[string]any) map[string]any {
	c := map[string]any{"jti": randomJTI(), "htm": "GET", "htu": url, "iat": time.Now().Unix(), "ath": ath(token)}
	for k, v := range change {
		if v == nil {
			delete(c, k)
			continue
		}
		c[k] = v
	}
	return c
}

func randomJTI() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

func dpopHeaders(token, proof string) http.Header {
	h := http.Header{"Authorization": {"DPoP " + token}}
	if proof != "" {
		h["Dpop"] = []string{proof}
	}
	return h
}

func TestADPoPBoundTokenNeedsItsProof(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	key, other := newDPoPKey(t), newDPoPKey(t)
	tok := f.token(t, map[string]any{"cnf": map[string]any{"jkt": key.jkt}})
	url := f.sidecar.URL + "/orders/7"
	good := func(change map[string]any) string { return key.proof(t, proofClaims(url, tok, change), nil) }

	resp, body := f.do(t, "/orders/7", dpopHeaders(tok, good(nil)))
	if resp.StatusCode != 200 {
		t.Fatalf("a good proof: %d %s", resp.StatusCode, body)
	}
	seen := f.app.requests()[0]
	if seen.Header.Get("Dpop") != "" || seen.Header.Get("Authorization") != "" || seen.Header.Get("X-Auth-Subject") != "svc-orders" {
		t.Errorf("the app saw DPoP %q, Authorization %q, subject %q", seen.Header.Get("Dpop"), seen.Header.Get("Authorization"), seen.Header.Get("X-Auth-Subject"))
	}
	// Equivalent spellings of the URL, and a query, are the same htu.
	for _, htu := range []string{
		strings.Replace(url, "127.0.0.1", "127.0.0.1", 1) + "?x=1#f",
		strings.Replace(url, "http://", "HTTP://", 1),
		strings.Replace(url, "/orders/7", "/orders/./%37", 1),
	} {
		if resp, body := f.do(t, "/orders/7", dpopHeaders(tok, good(map[string]any{"htu": htu}))); resp.StatusCode != 200 {
			t.Errorf("htu %q: %d %s, want it taken for the request's URL", htu, resp.StatusCode, body)
		}
	}

	replayed := good(nil)
	f.do(t, "/orders/7", dpopHeaders(tok, replayed))
	unsigned := strings.Join(strings.Split(good(nil), ".")[:2], ".") + "."
	pubJWK, _ := json.Marshal(jose.JSONWebKey{Key: key.priv.Public()})
	noneHeader, _ := json.Marshal(map[string]any{"typ": "dpop+jwt", "alg": "none", "jwk": json.RawMessage(pubJWK)})
	noneClaims, _ := json.Marshal(proofClaims(url, tok, nil))
	algNone := base64.RawURLEncoding.EncodeToString(noneHeader) + "." + base64.RawURLEncoding.EncodeToString(noneClaims) + "."
	b64 := base64.RawURLEncoding.EncodeToString
	parts := strings.Split(good(nil), ".")
	tampered := parts[0] + "." + b64([]byte(`{"jti":"x","htm":"POST","htu":"`+url+`","iat":1,"ath":"`+ath(tok)+`"}`)) + "." + parts[2]
	hs256 := func() string {
		signer, _ := jose.NewSigner(jose.SigningKey{Algorithm: jose.HS256, Key: []byte("0123456789abcdef0123456789abcdef")},
			(&jose.SignerOptions{}).WithType("dpop+jwt"))
		payload, _ := json.Marshal(proofClaims(url, tok, nil))
		jws, _ := signer.Sign(payload)
		s, _ := jws.CompactSerialize()
		return s
	}()
	privJWK, _ := json.Marshal(jose.JSONWebKey{Key: key.priv})
	var privHeader map[string]any
	_ = json.Unmarshal(privJWK, &privHeader)

	for _, tc := range []struct {
		name   string
		header http.Header
		say    string
	}{
		{"sent as Bearer", bearer(tok), "the token is bound to a DPoP key: send it as DPoP with a proof"},
		{"no proof", dpopHeaders(tok, ""), "the request must carry exactly one DPoP proof"},
		{"two proofs", http.Header{"Authorization": {"DPoP " + tok}, "Dpop": {good(nil), good(nil)}}, "the request must carry exactly one DPoP proof"},
		{"not a JWS", dpopHeaders(tok, "not.a.proof"), "the DPoP proof is not a well-formed JWS signed with an accepted algorithm"},
		{"alg none", dpopHeaders(tok, algNone), "the DPoP proof is not a well-formed JWS signed with an accepted algorithm"},
		{"no signature", dpopHeaders(tok, unsigned), "the DPoP proof's signature is invalid"},
		{"HMAC", dpopHeaders(tok, hs256), "the DPoP proof is not a well-formed JWS signed with an accepted algorithm"},
		{"typ jwt", dpopHeaders(tok, key.proof(t, proofClaims(url, tok, nil), map[jose.HeaderKey]any{"typ": "JWT"})), "the DPoP proof's typ must be dpop+jwt"},
		{"no typ", dpopHeaders(tok, key.proof(t, proofClaims(url, tok, nil), map[jose.HeaderKey]any{"typ": nil})), "the DPoP proof's typ must be dpop+jwt"},
		{"a private jwk", dpopHeaders(tok, key.proof(t, proofClaims(url, tok, nil), map[jose.HeaderKey]any{"jwk": privHeader})), "the DPoP proof is not a well-formed JWS signed with an accepted algorithm"},
		{"no jwk", dpopHeaders(tok, key.proof(t, proofClaims(url, tok, nil), map[jose.HeaderKey]any{"jwk": nil})), "the DPoP proof must carry its public key as jwk"},
		{"tampered claims", dpopHeaders(tok, tampered), "the DPoP proof's signature is invalid"},
		{"another key", dpopHeaders(tok, other.proof(t, proofClaims(url, tok, nil), nil)), "the DPoP proof's key is not the one the token is bound to"},
		{"no jti", dpopHeaders(tok, good(map[string]any{"jti": nil})), "the DPoP proof needs a jti"},
		{"a huge jti", dpopHeaders(tok, good(map[string]any{"jti": strings.Repeat("j", 300)})), "the DPoP proof needs a jti"},
		{"another method", dpopHeaders(tok, good(map[string]any{"htm": "POST"})), "the DPoP proof's htm is not the request's method"},
		{"another path", dpopHeaders(tok, good(map[string]any{"htu": f.sidecar.URL + "/orders/8"})), "the DPoP proof's htu is not the request's URL"},
		{"another host", dpopHeaders(tok, good(map[string]any{"htu": "http://payments.example/orders/7"})), "the DPoP proof's htu is not the request's URL"},
		{"another scheme", dpopHeaders(tok, good(map[string]any{"htu": strings.Replace(url, "http:", "https:", 1)})), "the DPoP proof's htu is not the request's URL"},
		{"no iat", dpopHeaders(tok, good(map[string]any{"iat": nil})), "the DPoP proof needs an iat"},
		{"too old", dpopHeaders(tok, good(map[string]any{"iat": time.Now().Add(-time.Minute).Unix()})), "the DPoP proof is too old or from the future"},
		{"from the future", dpopHeaders(tok, good(map[string]any{"iat": time.Now().Add(time.Minute).Unix()})), "the DPoP proof is too old or from the future"},
		{"no ath", dpopHeaders(tok, good(map[string]any{"ath": nil})), "the DPoP proof's ath is not the token's hash"},
		{"another token's ath", dpopHeaders(tok, good(map[string]any{"ath": ath("other")})), "the DPoP proof's ath is not the token's hash"},
		{"replayed", dpopHeaders(tok, replayed), "the DPoP proof was used before"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := len(f.app.requests())
			resp, body := f.do(t, "/orders/7", tc.header)
			var got map[string]string
			_ = json.Unmarshal([]byte(body), &got)
			if resp.StatusCode != 401 || got["error"] != "invalid_dpop_proof" || got["error_description"] != tc.say {
				t.Errorf("%d %s, want 401 invalid_dpop_proof %q", resp.StatusCode, body, tc.say)
			}
			challenges := resp.Header.Values("WWW-Authenticate")
			want := `DPoP realm="authsidecar", algs="RS256 ES256", error="invalid_dpop_proof", error_description="` + tc.say + `"`
			if len(challenges) != 2 || challenges[0] != want || challenges[1] != `Bearer realm="authsidecar"` {
				t.Errorf("challenges %q, want %q and a Bearer challenge", challenges, want)
			}
			if len(f.app.requests()) != before {
				t.Error("the app saw the request")
			}
		})
	}
	if got := counterValue(t, f, "invalid_dpop_proof"); got != 25 {
		t.Errorf("invalid_dpop_proof refusals counted %v, want 25", got)
	}
}

func counterValue(t *testing.T, f *fixture, reason string) float64 {
	t.Helper()
	mfs, err := f.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "authsidecar_inbound_token_rejections_total" {
			continue
		}
		for _, m := range mf.Metric {
			for _, l := range m.Label {
				if l.GetName() == "reason" && l.GetValue() == reason {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return -1
}

func TestABearerTokenSentAsDPoPIsRefused(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	key := newDPoPKey(t)
	tok := f.token(t, nil)
	resp, body := f.do(t, "/", dpopHeaders(tok, key.proof(t, proofClaims(f.sidecar.URL+"/", tok, nil), nil)))
	if resp.StatusCode != 401 || !strings.Contains(body, "the token is not bound to a DPoP key") {
		t.Errorf("%d %s, want 401: the token is not bound to a DPoP key", resp.StatusCode, body)
	}
}

func TestRequireDPoPRefusesBearerTokens(t *testing.T) {
	f := newFixture(t, fixtureOptions{requireDPoP: true})
	resp, body := f.do(t, "/", bearer(f.token(t, nil)))
	if resp.StatusCode != 401 || !strings.Contains(body, "a DPoP-bound token is required") {
		t.Errorf("%d %s, want 401: a DPoP-bound token is required", resp.StatusCode, body)
	}
	if got := resp.Header.Values("WWW-Authenticate"); len(got) != 1 || !strings.HasPrefix(got[0], `DPoP realm="authsidecar", algs="RS256 ES256", error="invalid_dpop_proof"`) {
		t.Errorf("challenges %q, want one DPoP challenge", got)
	}
	resp, _ = f.do(t, "/", nil)
	if got := resp.Header.Values("WWW-Authenticate"); len(got) != 1 || got[0] != `DPoP realm="authsidecar", algs="RS256 ES256"` {
		t.Errorf("no token: challenges %q, want the DPoP challenge alone", got)
	}
	key := newDPoPKey(t)
	tok := f.token(t, map[string]any{"cnf": map[string]any{"jkt": key.jkt}})
	if resp, body := f.do(t, "/", dpopHeaders(tok, key.proof(t, proofClaims(f.sidecar.URL+"/", tok, nil), nil))); resp.StatusCode != 200 {
		t.Errorf("a DPoP-bound token with its proof: %d %s", resp.StatusCode, body)
	}
}

// TestForwardedHostsCountOnlyWhenTrusted: behind a proxy that terminates
// TLS, the caller's htu is the proxy's URL, which the sidecar learns from
// X-Forwarded-* only when told to trust them.
func TestForwardedHostsCountOnlyWhenTrusted(t *testing.T) {
	key := newDPoPKey(t)
	for _, trusted := range []bool{false, true} {
		f := newFixture(t, fixtureOptions{trustForwarded: trusted})
		tok := f.token(t, map[string]any{"cnf": map[string]any{"jkt": key.jkt}})
		h := dpopHeaders(tok, key.proof(t, proofClaims("https://payments.example/orders", tok, nil), nil))
		h.Set("X-Forwarded-Proto", "https")
		h.Set("X-Forwarded-Host", "payments.example")
		resp, body := f.do(t, "/orders", h)
		if want := map[bool]int{false: 401, true: 200}[trusted]; resp.StatusCode != want {
			t.Errorf("trusted %v: %d %s, want %d", trusted, resp.StatusCode, body, want)
		}
		if trusted && f.app.requests()[0].Header.Get("X-Forwarded-Host") == "payments.example" {
			t.Error("the caller's X-Forwarded-Host reached the app")
		}
	}
}

// TestAProofForAnotherServiceCannotBeReplayedHere: a proof names the URL
// of the service it was made for. Naming that host in Host, or in front of
// a trusted proxy's X-Forwarded-Host, does not make this service take it;
// with INBOUND_RESOURCE the proof must name the resource's origin.
func TestAProofForAnotherServiceCannotBeReplayedHere(t *testing.T) {
	key := newDPoPKey(t)
	const elsewhere = "https://orders-a.example/orders"
	withProxy := newFixture(t, fixtureOptions{trustForwarded: true})
	tok := withProxy.token(t, map[string]any{"cnf": map[string]any{"jkt": key.jkt}})
	h := dpopHeaders(tok, key.proof(t, proofClaims(elsewhere, tok, nil), nil))
	h["X-Forwarded-Proto"] = []string{"https"}
	h["X-Forwarded-Host"] = []string{"orders-a.example, orders-b.example"} // the caller's, then the proxy's
	if resp, body := withProxy.do(t, "/orders", h); resp.StatusCode != 401 {
		t.Errorf("a caller's X-Forwarded-Host in front of the proxy's: %d %s, want 401", resp.StatusCode, body)
	}

	withResource := newFixture(t, fixtureOptions{resource: "https://orders-b.example"})
	tok = withResource.token(t, map[string]any{"cnf": map[string]any{"jkt": key.jkt}})
	req, _ := http.NewRequest(http.MethodGet, withResource.sidecar.URL+"/orders", nil)
	req.Host = "orders-a.example"
	req.Header = dpopHeaders(tok, key.proof(t, proofClaims(elsewhere, tok, nil), nil))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 {
		t.Errorf("a proof for orders-a sent with Host: orders-a to orders-b: %d, want 401", resp.StatusCode)
	}
	ours := dpopHeaders(tok, key.proof(t, proofClaims("https://orders-b.example/orders", tok, nil), nil))
	if resp, body := withResource.do(t, "/orders", ours); resp.StatusCode != 200 {
		t.Errorf("a proof for the resource's own origin: %d %s, want 200", resp.StatusCode, body)
	}
}

func TestADPoPRequestCannotCarryAMethodOverride(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	key := newDPoPKey(t)
	tok := f.token(t, map[string]any{"cnf": map[string]any{"jkt": key.jkt}})
	resp, body := f.do(t, "/orders/7?_method=DELETE", dpopHeaders(tok, key.proof(t, proofClaims(f.sidecar.URL+"/orders/7", tok, nil), nil)))
	if resp.StatusCode != 401 || !strings.Contains(body, "a request with a DPoP proof cannot carry a method override") {
		t.Errorf("%d %s, want 401 for the method override", resp.StatusCode, body)
	}
}

func TestTheAppNeverGetsAProof(t *testing.T) {
	f := newFixture(t, fixtureOptions{forwardToken: true, allowEncodedSlashes: true})
	key := newDPoPKey(t)
	bound := f.token(t, map[string]any{"cnf": map[string]any{"jkt": key.jkt}})
	plain := f.token(t, nil)
	for name, h := range map[string]http.Header{
		"a DPoP-bound token and its proof, on an encoded-slash path": dpopHeaders(bound, key.proof(t, proofClaims(f.sidecar.URL+"/files/a%2Fb", bound, nil), nil)),
		"a bearer token and a DPoP header nobody checked":            {"Authorization": {"Bearer " + plain}, "Dpop": {"forged.proof.value"}},
	} {
		before := len(f.app.requests())
		if resp, body := f.do(t, "/files/a%2Fb", h); resp.StatusCode != 200 {
			t.Fatalf("%s: %d %s", name, resp.StatusCode, body)
		}
		seen := f.app.requests()[before]
		if seen.Header.Get("Dpop") != "" || seen.Header.Get("Authorization") == "" {
			t.Errorf("%s: the app got DPoP %q, Authorization %q; want the token (FORWARD_TOKEN) and no proof", name, seen.Header.Get("Dpop"), seen.Header.Get("Authorization"))
		}
	}
}
