package e2e

// Smoke tests of the provider's DPoP (RFC 9449): what it issues and what it
// refuses at the token endpoint, which the sidecar's outbound DPoP and
// inbound verification rely on.

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
)

func dpopConfig(d IDPDPoP) IDPConfig {
	cfg := smokeConfig()
	cfg.DPoP = d
	cfg.Clients = append(cfg.Clients,
		IDPClient{ID: "svc-bound", Secret: "bound-secret", Scopes: []string{"orders:read"}, DPoPBound: true})
	return cfg
}

func ccForm(resource, scope string) url.Values {
	return url.Values{"grant_type": {"client_credentials"}, "resource": {resource}, "scope": {scope}}
}

func TestIDPBindsTokensToTheDPoPProofsKey(t *testing.T) {
	t.Parallel()
	jwtKey := newECKey(t, "client-ec")
	cfg := dpopConfig(IDPDPoP{})
	cfg.Clients = append(cfg.Clients,
		IDPClient{ID: "svc-jwt", AuthMethod: "private_key_jwt", Scopes: []string{"orders:read"}, JWKS: []*IDPKey{jwtKey}})
	idp := startIDP(t, cfg)
	ed := func() ed25519.PrivateKey {
		_, k, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}()
	tests := []struct {
		name, client, secret string
		key                  crypto.Signer // nil: a fresh P-256 key
	}{
		{"client_secret_basic, ES256 proof", "svc-basic", "basic-secret", nil},
		{"client_secret_post, ES256 proof", "svc-post", "post-secret", nil},
		{"private_key_jwt, ES256 proof", "svc-jwt", "", nil},
		{"client_secret_basic, EdDSA proof", "svc-basic", "basic-secret", ed},
		{"a DPoP-bound client", "svc-bound", "bound-secret", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			key := tc.key
			if key == nil {
				key = newDPoPKey(t)
			}
			jkt := dpopThumbprint(t, key)
			r := idp.TokenRequest(t, tc.client, tc.secret, ccForm(ordersAPI, "orders:read"), dpopProof(t, key, http.MethodPost, idp.TokenURL(), "", ""))
			if r.Status != http.StatusOK || r.TokenType != "DPoP" {
				t.Fatalf("token request with a proof: %s, want 200 token_type DPoP", r)
			}
			if n := r.Header.Get("DPoP-Nonce"); n != "" {
				t.Errorf("DPoP-Nonce %q without nonces configured", n)
			}
			hdr, claims := verifyAccessToken(t, idp, r.AccessToken, "RS256")
			if hdr.ExtraHeaders["typ"] != "at+jwt" {
				t.Errorf("typ %v, want at+jwt", hdr.ExtraHeaders["typ"])
			}
			want := []string{"aud", "client_id", "cnf", "exp", "iat", "iss", "jti", "scope", "sub"}
			if got := slices.Sorted(maps.Keys(claims)); !slices.Equal(got, want) {
				t.Errorf("claims %v, want %v", got, want)
			}
			cnf, _ := claims["cnf"].(map[string]any)
			if len(cnf) != 1 || cnf["jkt"] != jkt {
				t.Errorf("cnf %v, want {jkt: %q}", claims["cnf"], jkt)
			}
			if claims["client_id"] != tc.client || claims["aud"] != ordersAPI {
				t.Errorf("claims %v", claims)
			}
		})
	}

	t.Run("a token request without a proof still gets a Bearer token", func(t *testing.T) {
		tok := idp.ClientCredentialsToken(t, "svc-basic", "basic-secret", ordersAPI, "orders:read")
		if _, claims := verifyAccessToken(t, idp, tok.AccessToken, "RS256"); tok.TokenType != "Bearer" || claims["cnf"] != nil {
			t.Errorf("token_type %q, cnf %v; want Bearer without cnf", tok.TokenType, claims["cnf"])
		}
	})

	t.Run("discovery lists the proof algorithms", func(t *testing.T) {
		var doc map[string]any
		idp.GetJSON(t, "/.well-known/openid-configuration", &doc)
		got, _ := doc["dpop_signing_alg_values_supported"].([]any)
		if !slices.Equal(got, []any{"ES256", "Ed25519", "EdDSA"}) {
			t.Errorf("dpop_signing_alg_values_supported %v", doc["dpop_signing_alg_values_supported"])
		}
	})
}

func TestIDPRefusesBadDPoPProofs(t *testing.T) {
	t.Parallel()
	idp := startIDP(t, dpopConfig(IDPDPoP{}))
	key := newDPoPKey(t)
	tokenURL := idp.TokenURL()
	valid := func(mutate func(*DPoPProofSpec)) string {
		spec := DPoPProofSpec{Method: http.MethodPost, URL: tokenURL}
		mutate(&spec)
		return signDPoPProof(t, key, spec)
	}
	other := jose.JSONWebKey{Key: newDPoPKey(t).Public()}
	tests := []struct {
		name, client, secret, proof, wantErr string
	}{
		{"no proof from a DPoP-bound client", "svc-bound", "bound-secret", "", "invalid_grant"},
		{"htu of another URL", "svc-basic", "basic-secret", valid(func(s *DPoPProofSpec) { s.URL = idp.Issuer + "/other" }), "invalid_dpop_proof"},
		{"htm GET", "svc-basic", "basic-secret", valid(func(s *DPoPProofSpec) { s.Method = http.MethodGet }), "invalid_dpop_proof"},
		{"iat six minutes old", "svc-basic", "basic-secret", valid(func(s *DPoPProofSpec) { s.IAT = time.Now().Add(-6 * time.Minute) }), "invalid_dpop_proof"},
		{"iat six minutes ahead", "svc-basic", "basic-secret", valid(func(s *DPoPProofSpec) { s.IAT = time.Now().Add(6 * time.Minute) }), "invalid_dpop_proof"},
		{"typ JWT", "svc-basic", "basic-secret", valid(func(s *DPoPProofSpec) { s.Typ = "JWT" }), "invalid_dpop_proof"},
		{"no jwk", "svc-basic", "basic-secret", valid(func(s *DPoPProofSpec) { s.OmitJWK = true }), "invalid_dpop_proof"},
		{"another key's jwk", "svc-basic", "basic-secret", valid(func(s *DPoPProofSpec) { s.JWK = &other }), "invalid_dpop_proof"},
		{"no jti", "svc-basic", "basic-secret", valid(func(s *DPoPProofSpec) { s.Claims = map[string]any{"jti": nil} }), "invalid_dpop_proof"},
		{"a nonce the provider never issued", "svc-basic", "basic-secret", valid(func(s *DPoPProofSpec) { s.Nonce = "made-up" }), "invalid_dpop_proof"},
		{"an RSA (PS256) proof", "svc-basic", "basic-secret", signDPoPProof(t, newRSAKey(t, "x").Private, DPoPProofSpec{Method: http.MethodPost, URL: tokenURL}), "invalid_dpop_proof"},
		{"not a JWT", "svc-basic", "basic-secret", "not-a-jwt", "invalid_dpop_proof"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := idp.TokenRequest(t, tc.client, tc.secret, ccForm(ordersAPI, "orders:read"), tc.proof)
			if r.Status != http.StatusBadRequest || r.Error != tc.wantErr {
				t.Errorf("%s, want 400 %s", r, tc.wantErr)
			}
		})
	}

	t.Run("the htu query and fragment are ignored", func(t *testing.T) {
		proof := valid(func(s *DPoPProofSpec) { s.URL = tokenURL + "?x=1#y" })
		if r := idp.TokenRequest(t, "svc-basic", "basic-secret", ccForm(ordersAPI, "orders:read"), proof); r.Status != http.StatusOK {
			t.Errorf("%s, want 200", r)
		}
	})

	t.Run("a replayed jti is refused", func(t *testing.T) {
		proof := valid(func(*DPoPProofSpec) {})
		if r := idp.TokenRequest(t, "svc-basic", "basic-secret", ccForm(ordersAPI, "orders:read"), proof); r.Status != http.StatusOK {
			t.Fatalf("first use: %s", r)
		}
		r := idp.TokenRequest(t, "svc-basic", "basic-secret", ccForm(ordersAPI, "orders:read"), proof)
		// oidc-provider says only "grant request is invalid"; the reason
		// (replay) is in its log.
		if r.Status != http.StatusBadRequest || r.Error != "invalid_grant" {
			t.Errorf("replay: %s, want 400 invalid_grant", r)
		}
	})
}

func TestIDPDPoPNonceChallengeThenRetry(t *testing.T) {
	t.Parallel()
	idp := startIDP(t, dpopConfig(IDPDPoP{RequireNonce: true}))
	key := newDPoPKey(t)
	form := ccForm(ordersAPI, "orders:read")

	r := idp.TokenRequest(t, "svc-basic", "basic-secret", form, dpopProof(t, key, http.MethodPost, idp.TokenURL(), "", ""))
	nonce := r.Header.Get("DPoP-Nonce")
	if r.Status != http.StatusBadRequest || r.Error != "use_dpop_nonce" || nonce == "" {
		t.Fatalf("a proof without a nonce: %s, DPoP-Nonce %q; want 400 use_dpop_nonce with a nonce", r, nonce)
	}
	r = idp.TokenRequest(t, "svc-basic", "basic-secret", ccForm(ordersAPI, "orders:read"), dpopProof(t, key, http.MethodPost, idp.TokenURL(), "", nonce))
	if r.Status != http.StatusOK || r.TokenType != "DPoP" {
		t.Fatalf("retry with the nonce: %s", r)
	}
	if _, claims := verifyAccessToken(t, idp, r.AccessToken, "RS256"); claims["cnf"].(map[string]any)["jkt"] != dpopThumbprint(t, key) {
		t.Errorf("cnf %v", claims["cnf"])
	}

	t.Run("a made-up nonce gets a fresh challenge", func(t *testing.T) {
		r := idp.TokenRequest(t, "svc-basic", "basic-secret", ccForm(ordersAPI, "orders:read"), dpopProof(t, key, http.MethodPost, idp.TokenURL(), "", "made-up"))
		if r.Status != http.StatusBadRequest || r.Error != "use_dpop_nonce" || r.Header.Get("DPoP-Nonce") == "" {
			t.Errorf("%s, DPoP-Nonce %q; want 400 use_dpop_nonce with a nonce", r, r.Header.Get("DPoP-Nonce"))
		}
	})

	t.Run("the helper answers the challenge once", func(t *testing.T) {
		idp.DPoPClientCredentialsToken(t, "svc-bound", "bound-secret", ordersAPI, "orders:read", key)
	})
}

func TestIDPDPoPNoncesOfferedButNotRequired(t *testing.T) {
	t.Parallel()
	idp := startIDP(t, dpopConfig(IDPDPoP{Nonces: true}))
	key := newDPoPKey(t)
	r := idp.TokenRequest(t, "svc-basic", "basic-secret", ccForm(ordersAPI, "orders:read"), dpopProof(t, key, http.MethodPost, idp.TokenURL(), "", ""))
	nonce := r.Header.Get("DPoP-Nonce")
	if r.Status != http.StatusOK || r.TokenType != "DPoP" || nonce == "" {
		t.Fatalf("%s, DPoP-Nonce %q; want 200 DPoP with a nonce to use next", r, nonce)
	}
	r = idp.TokenRequest(t, "svc-basic", "basic-secret", ccForm(ordersAPI, "orders:read"), dpopProof(t, key, http.MethodPost, idp.TokenURL(), "", nonce))
	if r.Status != http.StatusOK {
		t.Errorf("with the offered nonce: %s", r)
	}
}

func TestIDPWithDPoPDisabledIgnoresProofs(t *testing.T) {
	t.Parallel()
	idp := startIDP(t, IDPConfig{
		Clients:   []IDPClient{{ID: "svc-basic", Secret: "basic-secret"}},
		Resources: map[string]IDPResource{ordersAPI: {Scopes: []string{"orders:read"}}},
		DPoP:      IDPDPoP{Disabled: true},
	})
	r := idp.TokenRequest(t, "svc-basic", "basic-secret", ccForm(ordersAPI, "orders:read"), dpopProof(t, newDPoPKey(t), http.MethodPost, idp.TokenURL(), "", ""))
	if r.Status != http.StatusOK || r.TokenType != "Bearer" {
		t.Fatalf("%s, want 200 Bearer", r)
	}
	if _, claims := verifyAccessToken(t, idp, r.AccessToken, "RS256"); claims["cnf"] != nil {
		t.Errorf("cnf %v, want none", claims["cnf"])
	}
}
