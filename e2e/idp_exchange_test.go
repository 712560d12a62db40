package e2e

// Smoke tests of the provider's RFC 8693 token exchange grant
// (idp/token_exchange.mjs), which the sidecar's token-exchange routes use.

import (
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"
)

// exchangeConfig: svc-a is a caller, svc-b (and its variants per client
// authentication method) and svc-d may exchange, svc-basic may not.
func exchangeConfig(t testing.TB) (IDPConfig, *IDPKey) {
	jwtKey := newECKey(t, "svc-b-jwt-key")
	cfg := smokeConfig()
	cfg.Clients = append(cfg.Clients,
		IDPClient{ID: "svc-a", Secret: "a-secret", Scopes: []string{"orders:read"}},
		IDPClient{ID: "svc-b", Secret: "b-secret", TokenExchange: true},
		IDPClient{ID: "svc-b-post", Secret: "b-post-secret", AuthMethod: "client_secret_post", TokenExchange: true},
		IDPClient{ID: "svc-b-jwt", AuthMethod: "private_key_jwt", JWKS: []*IDPKey{jwtKey}, TokenExchange: true},
		IDPClient{ID: "svc-b-narrow", Secret: "narrow-secret", Scopes: []string{"orders:read"}, TokenExchange: true},
		IDPClient{ID: "svc-b-bound", Secret: "bound-secret", TokenExchange: true, DPoPBound: true},
		IDPClient{ID: "svc-d", Secret: "d-secret", TokenExchange: true},
	)
	cfg.Resources["https://aliased.example"] = IDPResource{Scopes: []string{"orders:read"}, Audience: "aliased-api"}
	cfg.Resources["https://short.example"] = IDPResource{Scopes: []string{"orders:read"}, TTL: 5 * time.Second}
	return cfg, jwtKey
}

func TestIDPExchangesACallersTokenForAnotherResource(t *testing.T) {
	t.Parallel()
	cfg, _ := exchangeConfig(t)
	idp := startIDP(t, cfg)
	ecKID := idp.Keys()[1].KID
	subject := idp.ClientCredentialsToken(t, "svc-a", "a-secret", ordersAPI, "orders:read").AccessToken

	tests := []struct {
		name, client, secret string
		withActor            bool
	}{
		{"client_secret_basic, no actor", "svc-b", "b-secret", false},
		{"client_secret_basic, B as the actor", "svc-b", "b-secret", true},
		{"client_secret_post, B as the actor", "svc-b-post", "b-post-secret", true},
		{"private_key_jwt, no actor", "svc-b-jwt", "", false},
		{"private_key_jwt, B as the actor", "svc-b-jwt", "", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := idp.Exchanges(t)
			var actor string
			if tc.withActor {
				actor = idp.ClientCredentialsToken(t, tc.client, tc.secret, ordersAPI, "").AccessToken
			}
			r := idp.ExchangeToken(t, tc.client, tc.secret, subject, paymentsAPI, "payments:pay", actor)
			if r.TokenType != "Bearer" || r.IssuedTokenType != accessTokenType || r.Scope != "payments:pay" ||
				r.ExpiresIn < 118 || r.ExpiresIn > 120 {
				t.Errorf("answer %v", r.Raw)
			}
			hdr, claims := verifyAccessToken(t, idp, r.AccessToken, "ES256")
			if hdr.ExtraHeaders["typ"] != "at+jwt" || hdr.KeyID != ecKID {
				t.Errorf("header typ %v kid %q, want at+jwt %q", hdr.ExtraHeaders["typ"], hdr.KeyID, ecKID)
			}
			want := []string{"aud", "client_id", "exp", "iat", "iss", "jti", "scope", "sub"}
			if tc.withActor {
				want = append(want, "act")
				slices.Sort(want)
			}
			if got := slices.Sorted(maps.Keys(claims)); !slices.Equal(got, want) {
				t.Errorf("claims %v, want %v", got, want)
			}
			if claims["sub"] != "svc-a" || claims["client_id"] != tc.client || claims["aud"] != paymentsAPI ||
				claims["scope"] != "payments:pay" || claims["iss"] != idp.Issuer {
				t.Errorf("claims %v", claims)
			}
			if tc.withActor {
				if act, _ := claims["act"].(map[string]any); len(act) != 1 || act["sub"] != tc.client {
					t.Errorf("act %v, want {sub: %q}", claims["act"], tc.client)
				}
			}

			log := idp.ExchangeLog(t)
			if log.Count != before+1 || log.Last == nil {
				t.Fatalf("exchange count %d, want %d", log.Count, before+1)
			}
			last := *log.Last
			wantActor := ""
			if tc.withActor {
				wantActor = tc.client
			}
			if last.Result != "issued" || last.ClientID != tc.client || last.SubjectSub != "svc-a" ||
				last.SubjectClientID != "svc-a" || last.ActorSub != wantActor || last.Resource != paymentsAPI ||
				last.Scope != "payments:pay" || last.IssuedAud != paymentsAPI || last.IssuedTokenType != "Bearer" ||
				last.SubjectTokenType != accessTokenType || last.DPoP {
				t.Errorf("exchange record %+v", last)
			}
		})
	}
}

func TestIDPExchangeNestsAnExistingDelegationChain(t *testing.T) {
	t.Parallel()
	cfg, _ := exchangeConfig(t)
	idp := startIDP(t, cfg)
	subject := idp.ClientCredentialsToken(t, "svc-a", "a-secret", ordersAPI, "orders:read").AccessToken
	bActor := idp.ClientCredentialsToken(t, "svc-b", "b-secret", ordersAPI, "").AccessToken
	hop1 := idp.ExchangeToken(t, "svc-b", "b-secret", subject, paymentsAPI, "payments:pay", bActor).AccessToken

	dActor := idp.ClientCredentialsToken(t, "svc-d", "d-secret", ordersAPI, "").AccessToken
	hop2 := idp.ExchangeToken(t, "svc-d", "d-secret", hop1, ordersAPI, "orders:read", dActor)
	_, claims := verifyAccessToken(t, idp, hop2.AccessToken, "RS256")
	act, _ := claims["act"].(map[string]any)
	inner, _ := act["act"].(map[string]any)
	if claims["sub"] != "svc-a" || claims["client_id"] != "svc-d" || len(act) != 2 || act["sub"] != "svc-d" ||
		len(inner) != 1 || inner["sub"] != "svc-b" {
		t.Errorf("sub %v, client_id %v, act %v; want svc-a, svc-d, {sub: svc-d, act: {sub: svc-b}}", claims["sub"], claims["client_id"], claims["act"])
	}

	t.Run("without an actor token the chain is not carried on", func(t *testing.T) {
		r := idp.ExchangeToken(t, "svc-d", "d-secret", hop1, ordersAPI, "orders:read", "")
		if _, claims := verifyAccessToken(t, idp, r.AccessToken, "RS256"); claims["act"] != nil || claims["sub"] != "svc-a" {
			t.Errorf("sub %v, act %v; want svc-a and no act", claims["sub"], claims["act"])
		}
	})
}

func TestIDPExchangeTargetsScopesAndLifetime(t *testing.T) {
	t.Parallel()
	cfg, _ := exchangeConfig(t)
	idp := startIDP(t, cfg)
	subject := idp.ClientCredentialsToken(t, "svc-a", "a-secret", ordersAPI, "orders:read").AccessToken
	exchange := func(t *testing.T, client, secret, subject string, extra url.Values) *IDPTokenResponse {
		t.Helper()
		form := ExchangeForm(subject, "", "", "")
		for k, v := range extra {
			form[k] = v
		}
		return idp.TokenRequest(t, client, secret, form, "")
	}

	t.Run("audience naming an indicator", func(t *testing.T) {
		r := exchange(t, "svc-b", "b-secret", subject, url.Values{"audience": {paymentsAPI}})
		if _, claims := verifyAccessToken(t, idp, r.AccessToken, "ES256"); r.Status != 200 || claims["aud"] != paymentsAPI {
			t.Errorf("%s, aud %v", r, claims["aud"])
		}
	})
	t.Run("audience naming a resource's aud", func(t *testing.T) {
		r := exchange(t, "svc-b", "b-secret", subject, url.Values{"audience": {"aliased-api"}, "scope": {"orders:read"}})
		if _, claims := verifyAccessToken(t, idp, r.AccessToken, "RS256"); r.Status != 200 || claims["aud"] != "aliased-api" || claims["scope"] != "orders:read" {
			t.Errorf("%s, claims %v", r, claims)
		}
	})
	t.Run("resource and audience of the same resource", func(t *testing.T) {
		r := exchange(t, "svc-b", "b-secret", subject, url.Values{"audience": {"aliased-api"}, "resource": {"https://aliased.example"}})
		if r.Status != 200 {
			t.Errorf("%s", r)
		}
	})
	t.Run("scopes the resource does not accept are dropped", func(t *testing.T) {
		r := exchange(t, "svc-b", "b-secret", subject, url.Values{"resource": {paymentsAPI}, "scope": {"payments:pay orders:read"}})
		if _, claims := verifyAccessToken(t, idp, r.AccessToken, "ES256"); r.Scope != "payments:pay" || claims["scope"] != "payments:pay" {
			t.Errorf("%s, scope claim %v", r, claims["scope"])
		}
	})
	t.Run("no scope asked, no scope claim", func(t *testing.T) {
		r := exchange(t, "svc-b", "b-secret", subject, url.Values{"resource": {paymentsAPI}})
		if _, claims := verifyAccessToken(t, idp, r.AccessToken, "ES256"); r.Scope != "" || claims["scope"] != nil {
			t.Errorf("%s, scope claim %v", r, claims["scope"])
		}
	})
	t.Run("an opaque resource: introspection shows sub and act", func(t *testing.T) {
		actor := idp.ClientCredentialsToken(t, "svc-b", "b-secret", ordersAPI, "").AccessToken
		r := exchange(t, "svc-b", "b-secret", subject, url.Values{
			"resource": {ledgerAPI}, "scope": {"ledger:read"},
			"actor_token": {actor}, "actor_token_type": {accessTokenType},
		})
		got := idp.Introspect(t, "rs-ledger", "ledger-secret", r.AccessToken)
		act, _ := got["act"].(map[string]any)
		if r.Status != 200 || got["active"] != true || got["sub"] != "svc-a" || got["client_id"] != "svc-b" ||
			got["aud"] != ledgerAPI || got["scope"] != "ledger:read" || len(act) != 1 || act["sub"] != "svc-b" {
			t.Errorf("%s, introspection %v", r, got)
		}
	})
	t.Run("a DPoP-bound subject token; the new token is bound only with a proof", func(t *testing.T) {
		bound := idp.DPoPClientCredentialsToken(t, "svc-a", "a-secret", ordersAPI, "orders:read", newDPoPKey(t)).AccessToken
		r := exchange(t, "svc-b", "b-secret", bound, url.Values{"resource": {paymentsAPI}})
		if _, claims := verifyAccessToken(t, idp, r.AccessToken, "ES256"); r.TokenType != "Bearer" || claims["cnf"] != nil || claims["sub"] != "svc-a" {
			t.Errorf("%s, cnf %v, sub %v", r, claims["cnf"], claims["sub"])
		}
	})
	t.Run("the new token does not outlive the subject token", func(t *testing.T) {
		short := idp.ClientCredentialsToken(t, "svc-a", "a-secret", "https://short.example", "orders:read").AccessToken
		r := exchange(t, "svc-b", "b-secret", short, url.Values{"resource": {ordersAPI}})
		_, sc := verifyAccessToken(t, idp, short, "RS256")
		_, nc := verifyAccessToken(t, idp, r.AccessToken, "RS256")
		if r.ExpiresIn < 1 || r.ExpiresIn > 5 || nc["exp"].(float64) > sc["exp"].(float64) {
			t.Errorf("expires_in %d, exp %v after the subject's %v", r.ExpiresIn, nc["exp"], sc["exp"])
		}
	})
}

func TestIDPRefusesBadTokenExchanges(t *testing.T) {
	t.Parallel()
	cfg, _ := exchangeConfig(t)
	idp := startIDP(t, cfg)
	rsa := idp.Keys()[0]
	subject := idp.ClientCredentialsToken(t, "svc-a", "a-secret", ordersAPI, "orders:read").AccessToken
	aActor := idp.ClientCredentialsToken(t, "svc-a", "a-secret", ordersAPI, "").AccessToken
	opaque := idp.ClientCredentialsToken(t, "svc-basic", "basic-secret", ledgerAPI, "ledger:read").AccessToken
	claims := tokenClaims(t, subject)
	withClaims := func(mutate func(map[string]any)) map[string]any {
		c := maps.Clone(claims)
		mutate(c)
		return c
	}
	expired := signToken(t, rsa, withClaims(func(c map[string]any) {
		c["iat"], c["exp"] = time.Now().Add(-time.Hour).Unix(), time.Now().Add(-time.Minute).Unix()
	}))
	otherIssuer := signToken(t, rsa, withClaims(func(c map[string]any) { c["iss"] = "https://elsewhere.example" }))
	form := func(mutate func(url.Values)) url.Values {
		f := ExchangeForm(subject, paymentsAPI, "payments:pay", "")
		mutate(f)
		return f
	}
	set := func(kv ...string) func(url.Values) {
		return func(f url.Values) {
			for i := 0; i < len(kv); i += 2 {
				if kv[i+1] == "" {
					f.Del(kv[i])
				} else {
					f.Set(kv[i], kv[i+1])
				}
			}
		}
	}
	tests := []struct {
		name, client, secret string
		form                 url.Values
		status               int
		wantErr              string
		// detail is in the provider's record of a refusal that reached the
		// grant handler (counted as a failure); empty: not reached.
		detail string
	}{
		{"no subject_token", "svc-b", "b-secret", form(set("subject_token", "")), 400, "invalid_request", "missing required parameter 'subject_token'"},
		{"no subject_token_type", "svc-b", "b-secret", form(set("subject_token_type", "")), 400, "invalid_request", "missing required parameter 'subject_token_type'"},
		{"an id_token subject_token_type", "svc-b", "b-secret", form(set("subject_token_type", "urn:ietf:params:oauth:token-type:id_token")), 400, "invalid_request", "unsupported subject_token_type"},
		{"a forged subject token", "svc-b", "b-secret", form(set("subject_token", forgedLike(t, subject))), 400, "invalid_grant", "subject_token is invalid: ERR_JWKS_NO_MATCHING_KEY"},
		{"a tampered subject token", "svc-b", "b-secret", form(set("subject_token", tamperClaims(t, subject, func(c map[string]any) { c["sub"] = "admin" }))), 400, "invalid_grant", "subject_token is invalid: ERR_JWS_SIGNATURE_VERIFICATION_FAILED"},
		{"an expired subject token", "svc-b", "b-secret", form(set("subject_token", expired)), 400, "invalid_grant", "subject_token is invalid: ERR_JWT_EXPIRED"},
		{"a subject token of another issuer", "svc-b", "b-secret", form(set("subject_token", otherIssuer)), 400, "invalid_grant", "subject_token is invalid: ERR_JWT_CLAIM_VALIDATION_FAILED: unexpected \"iss\" claim value"},
		{"an opaque subject token", "svc-b", "b-secret", form(set("subject_token", opaque)), 400, "invalid_grant", "subject_token is invalid: ERR_JWS_INVALID"},
		{"actor_token without actor_token_type", "svc-b", "b-secret", form(set("actor_token", aActor)), 400, "invalid_request", "actor_token_type is required with actor_token"},
		{"actor_token_type without actor_token", "svc-b", "b-secret", form(set("actor_token_type", accessTokenType)), 400, "invalid_request", "actor_token_type must not be sent without actor_token"},
		{"an actor token of another client", "svc-b", "b-secret", form(set("actor_token", aActor, "actor_token_type", accessTokenType)), 400, "invalid_grant", "actor_token was not issued to the authenticated client"},
		{"a forged actor token", "svc-b", "b-secret", form(set("actor_token", forgedLike(t, aActor), "actor_token_type", accessTokenType)), 400, "invalid_grant", "actor_token is invalid: ERR_JWKS_NO_MATCHING_KEY"},
		{"an unknown resource", "svc-b", "b-secret", form(set("resource", "https://unknown.example")), 400, "invalid_target", "unknown resource"},
		{"an unknown audience", "svc-b", "b-secret", form(set("resource", "", "audience", "unknown")), 400, "invalid_target", "unknown audience"},
		{"resource and audience of different resources", "svc-b", "b-secret", form(set("audience", "aliased-api")), 400, "invalid_target", "resource and audience name different resources"},
		{"neither resource nor audience, no default", "svc-b", "b-secret", form(set("resource", "")), 400, "invalid_request", "resource or audience is required"},
		{"a requested_token_type other than access_token", "svc-b", "b-secret", form(set("requested_token_type", "urn:ietf:params:oauth:token-type:refresh_token")), 400, "invalid_request", "unsupported requested_token_type"},
		{"a scope the client may not have", "svc-b-narrow", "narrow-secret", form(set("scope", "payments:pay")), 400, "invalid_scope", "requested scope is not allowed"},
		{"a DPoP-bound client without a proof", "svc-b-bound", "bound-secret", form(set()), 400, "invalid_grant", "DPoP proof JWT not provided"},
		{"a client without the grant", "svc-basic", "basic-secret", form(set()), 400, "invalid_request", ""},
		{"a wrong client secret", "svc-b", "nope", form(set()), 401, "invalid_client", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := idp.ExchangeLog(t)
			r := idp.TokenRequest(t, tc.client, tc.secret, tc.form, "")
			if r.Status != tc.status || r.Error != tc.wantErr {
				t.Errorf("%s, want %d %s", r, tc.status, tc.wantErr)
			}
			after := idp.ExchangeLog(t)
			wantFailures := before.Failures
			if tc.detail != "" {
				wantFailures++
			}
			if after.Count != before.Count || after.Failures != wantFailures {
				t.Errorf("count %d failures %d after, want %d and %d", after.Count, after.Failures, before.Count, wantFailures)
			}
			if tc.detail != "" && (after.Last == nil || after.Last.Result != tc.wantErr ||
				!strings.Contains(after.Last.ErrorDetail+" "+after.Last.ErrorDescription, tc.detail)) {
				t.Errorf("last record %+v, want result %q, reason %q", after.Last, tc.wantErr, tc.detail)
			}

		})
	}
}

func TestIDPExchangeWithADPoPProofIssuesABoundToken(t *testing.T) {
	t.Parallel()
	cfg, _ := exchangeConfig(t)
	cfg.DPoP = IDPDPoP{RequireNonce: true}
	idp := startIDP(t, cfg)
	key := newDPoPKey(t)
	subject := idp.ClientCredentialsToken(t, "svc-a", "a-secret", ordersAPI, "orders:read").AccessToken
	form := func() url.Values { return ExchangeForm(subject, paymentsAPI, "payments:pay", "") }

	r := idp.TokenRequest(t, "svc-b-bound", "bound-secret", form(), dpopProof(t, key, http.MethodPost, idp.TokenURL(), "", ""))
	nonce := r.Header.Get("DPoP-Nonce")
	if r.Status != 400 || r.Error != "use_dpop_nonce" || nonce == "" {
		t.Fatalf("without a nonce: %s, DPoP-Nonce %q; want 400 use_dpop_nonce", r, nonce)
	}
	r = idp.TokenRequest(t, "svc-b-bound", "bound-secret", form(), dpopProof(t, key, http.MethodPost, idp.TokenURL(), "", nonce))
	if r.Status != 200 || r.TokenType != "DPoP" || r.IssuedTokenType != accessTokenType {
		t.Fatalf("with the nonce: %s", r)
	}
	_, claims := verifyAccessToken(t, idp, r.AccessToken, "ES256")
	if cnf, _ := claims["cnf"].(map[string]any); cnf["jkt"] != dpopThumbprint(t, key) || claims["sub"] != "svc-a" {
		t.Errorf("cnf %v sub %v", claims["cnf"], claims["sub"])
	}
	log := idp.ExchangeLog(t)
	if log.Count != 1 || log.Failures != 1 || !log.Last.DPoP || log.Last.JKT != dpopThumbprint(t, key) || log.Last.IssuedTokenType != "DPoP" {
		t.Errorf("exchange log %+v, last %+v", log, log.Last)
	}
}
