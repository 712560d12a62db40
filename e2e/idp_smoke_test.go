package e2e

// Smoke tests of the identity provider itself: they pin down what a real
// provider does, which the sidecar scenarios rely on, without the sidecar.

import (
	"context"
	"errors"
	"maps"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/go-jose/go-jose/v4"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
)

const (
	ordersAPI   = "https://orders.example/api" // JWT, RS256
	paymentsAPI = "https://payments.example"   // JWT, ES256
	ledgerAPI   = "https://ledger.example"     // opaque
)

// smokeConfig has a client per secret method, a resource server that may
// introspect, and three resources.
func smokeConfig() IDPConfig {
	all := []string{"orders:read", "orders:write", "payments:pay", "ledger:read"}
	return IDPConfig{
		Clients: []IDPClient{
			{ID: "svc-basic", Secret: "basic-secret", AuthMethod: "client_secret_basic", Scopes: all},
			{ID: "svc-post", Secret: "post-secret", AuthMethod: "client_secret_post", Scopes: all},
			{ID: "svc-reader", Secret: "reader-secret", Scopes: []string{"orders:read"}},
			{ID: "rs-ledger", Secret: "ledger-secret"},
		},
		Resources: map[string]IDPResource{
			ordersAPI:   {Scopes: []string{"orders:read", "orders:write"}, Alg: "RS256", TTL: 300 * time.Second},
			paymentsAPI: {Scopes: []string{"payments:pay"}, Alg: "ES256", TTL: 120 * time.Second},
			ledgerAPI:   {Scopes: []string{"ledger:read"}, Opaque: true},
		},
	}
}

// verifyAccessToken checks raw against the provider's discovery and JWKS
// (go-oidc, as the sidecar will) and returns its header and claims.
func verifyAccessToken(t *testing.T, idp *IDP, raw, alg string) (jose.Header, map[string]any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	provider, err := oidc.NewProvider(ctx, idp.Issuer)
	if err != nil {
		t.Fatalf("discovery: %v", err)
	}
	v := provider.VerifierContext(ctx, &oidc.Config{SkipClientIDCheck: true, SupportedSigningAlgs: []string{alg}})
	tok, err := v.Verify(ctx, raw)
	if err != nil {
		t.Fatalf("verifying the access token: %v", err)
	}
	var claims map[string]any
	if err := tok.Claims(&claims); err != nil {
		t.Fatal(err)
	}
	jws, err := jose.ParseSignedCompact(raw, []jose.SignatureAlgorithm{jose.SignatureAlgorithm(alg)})
	if err != nil {
		t.Fatalf("parsing the access token: %v", err)
	}
	return jws.Signatures[0].Header, claims
}

func TestIDPIssuesJWTAccessTokensThatVerifyAgainstItsJWKS(t *testing.T) {
	t.Parallel()
	idp := startIDP(t, smokeConfig())
	rsaKID, ecKID := idp.Keys()[0].KID, idp.Keys()[1].KID
	tests := []struct {
		name, client, secret, resource, scope, alg, kid string
	}{
		{"client_secret_basic, RS256 resource", "svc-basic", "basic-secret", ordersAPI, "orders:read orders:write", "RS256", rsaKID},
		{"client_secret_post, ES256 resource", "svc-post", "post-secret", paymentsAPI, "payments:pay", "ES256", ecKID},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tok := idp.ClientCredentialsToken(t, tc.client, tc.secret, tc.resource, tc.scope)
			if tok.TokenType != "Bearer" {
				t.Errorf("token_type %q, want Bearer", tok.TokenType)
			}
			hdr, claims := verifyAccessToken(t, idp, tok.AccessToken, tc.alg)
			if hdr.Algorithm != tc.alg || hdr.KeyID != tc.kid || hdr.ExtraHeaders["typ"] != "at+jwt" {
				t.Errorf("header alg %q kid %q typ %v, want %q %q at+jwt", hdr.Algorithm, hdr.KeyID, hdr.ExtraHeaders["typ"], tc.alg, tc.kid)
			}
			// The exact claim set oidc-provider 9 puts in a client
			// credentials JWT access token (RFC 9068): no nbf, aud a string.
			want := []string{"aud", "client_id", "exp", "iat", "iss", "jti", "scope", "sub"}
			if got := slices.Sorted(maps.Keys(claims)); !slices.Equal(got, want) {
				t.Errorf("claims %v, want %v", got, want)
			}
			if claims["aud"] != tc.resource || claims["client_id"] != tc.client || claims["sub"] != tc.client ||
				claims["scope"] != tc.scope || claims["iss"] != idp.Issuer {
				t.Errorf("claims %v", claims)
			}
		})
	}
}

func TestIDPGrantsOnlyScopesTheResourceAccepts(t *testing.T) {
	t.Parallel()
	idp := startIDP(t, smokeConfig())
	tok := idp.ClientCredentialsToken(t, "svc-basic", "basic-secret", ordersAPI, "orders:read payments:pay")
	_, claims := verifyAccessToken(t, idp, tok.AccessToken, "RS256")
	if claims["scope"] != "orders:read" {
		t.Errorf("scope %v, want orders:read", claims["scope"])
	}
	tok = idp.ClientCredentialsToken(t, "svc-basic", "basic-secret", ordersAPI, "")
	_, claims = verifyAccessToken(t, idp, tok.AccessToken, "RS256")
	if _, ok := claims["scope"]; ok {
		t.Errorf("scope %v, want no scope claim when none was asked for", claims["scope"])
	}
}

func TestIDPRefusesBadTokenRequests(t *testing.T) {
	t.Parallel()
	idp := startIDP(t, smokeConfig())
	tests := []struct {
		name, client, secret, resource, scope, wantErr string
	}{
		{"a wrong secret", "svc-basic", "nope", ordersAPI, "orders:read", "invalid_client"},
		{"a scope the client may not have", "svc-reader", "reader-secret", ordersAPI, "orders:write", "invalid_scope"},
		{"an unknown resource", "svc-basic", "basic-secret", "https://unknown.example", "orders:read", "invalid_target"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_, err := idp.FetchToken(ctx, tc.client, tc.secret, tc.resource, tc.scope)
			var re *oauth2.RetrieveError
			if !errors.As(err, &re) || re.ErrorCode != tc.wantErr {
				t.Fatalf("error %v, want %s", err, tc.wantErr)
			}
		})
	}
}

func TestIDPDiscoveryNamesTheEndpointsTheSidecarUses(t *testing.T) {
	t.Parallel()
	idp := startIDP(t, smokeConfig())
	var doc map[string]any
	idp.GetJSON(t, "/.well-known/openid-configuration", &doc)
	want := map[string]string{
		"issuer":                 idp.Issuer,
		"token_endpoint":         idp.TokenURL(),
		"jwks_uri":               idp.Issuer + "/jwks",
		"introspection_endpoint": idp.IntrospectionURL(),
		"revocation_endpoint":    idp.RevocationURL(),
	}
	for k, v := range want {
		if doc[k] != v {
			t.Errorf("%s = %v, want %q", k, doc[k], v)
		}
	}
}

func TestIDPRotatesKeysOnRestartOnTheSamePort(t *testing.T) {
	t.Parallel()
	idp := startIDP(t, smokeConfig())
	issuer := idp.Issuer
	oldKeys := idp.Keys()
	oldTok := idp.ClientCredentialsToken(t, "svc-basic", "basic-secret", ordersAPI, "orders:read").AccessToken

	newRSA := newRSAKey(t, "rsa-new-"+randomID(t))
	idp.Restart(t, []*IDPKey{newRSA, oldKeys[0], oldKeys[1]})
	if idp.Issuer != issuer {
		t.Fatalf("issuer %q after restart, want %q", idp.Issuer, issuer)
	}
	if got := jwksKIDs(t, idp); !slices.Equal(got, []string{newRSA.KID, oldKeys[0].KID, oldKeys[1].KID}) {
		t.Errorf("JWKS kids %v after rotation", got)
	}
	newTok := idp.ClientCredentialsToken(t, "svc-basic", "basic-secret", ordersAPI, "orders:read").AccessToken
	if hdr, _ := verifyAccessToken(t, idp, newTok, "RS256"); hdr.KeyID != newRSA.KID {
		t.Errorf("new token kid %q, want %q", hdr.KeyID, newRSA.KID)
	}
	verifyAccessToken(t, idp, oldTok, "RS256") // the old key is still published

	idp.Restart(t, []*IDPKey{newRSA, oldKeys[1]})
	if got := jwksKIDs(t, idp); !slices.Equal(got, []string{newRSA.KID, oldKeys[1].KID}) {
		t.Errorf("JWKS kids %v after dropping the old key", got)
	}
}

func jwksKIDs(t *testing.T, idp *IDP) []string {
	t.Helper()
	var set jose.JSONWebKeySet
	idp.GetJSON(t, "/jwks", &set)
	var kids []string
	for _, k := range set.Keys {
		if !k.IsPublic() {
			t.Errorf("JWKS publishes a private key %q", k.KeyID)
		}
		kids = append(kids, k.KeyID)
	}
	return kids
}

func TestIDPOpaqueTokensIntrospectAndRevoke(t *testing.T) {
	t.Parallel()
	idp := startIDP(t, smokeConfig())
	tok := idp.ClientCredentialsToken(t, "svc-basic", "basic-secret", ledgerAPI, "ledger:read").AccessToken
	if strings.Count(tok, ".") == 2 {
		t.Fatalf("token %q looks like a JWT, want opaque", tok[:min(len(tok), 12)]+"…")
	}

	got := idp.Introspect(t, "rs-ledger", "ledger-secret", tok)
	if got["active"] != true || got["aud"] != ledgerAPI || got["client_id"] != "svc-basic" ||
		got["scope"] != "ledger:read" || got["iss"] != idp.Issuer || got["token_type"] != "Bearer" {
		t.Errorf("introspection %v", got)
	}

	idp.Revoke(t, "svc-basic", "basic-secret", tok)
	if got := idp.Introspect(t, "rs-ledger", "ledger-secret", tok); got["active"] != false || len(got) != 1 {
		t.Errorf("introspection after revocation %v, want only active false", got)
	}
}

func TestIDPCannotIntrospectJWTs(t *testing.T) {
	t.Parallel()
	idp := startIDP(t, smokeConfig())
	jwt := idp.ClientCredentialsToken(t, "svc-basic", "basic-secret", ordersAPI, "orders:read").AccessToken
	status, body := idp.postForm(t, idp.IntrospectionURL(), "rs-ledger", "ledger-secret", map[string][]string{"token": {jwt}})
	if status != 400 || !strings.Contains(string(body), `"unsupported_token_type"`) {
		t.Errorf("introspecting a JWT: status %d, body %s; want 400 unsupported_token_type", status, body)
	}
}

func TestIDPHonoursAShortTokenLifetime(t *testing.T) {
	t.Parallel()
	cfg := smokeConfig()
	cfg.Resources["https://short.example"] = IDPResource{Scopes: []string{"orders:read"}, TTL: 2 * time.Second}
	idp := startIDP(t, cfg)
	tok := idp.ClientCredentialsToken(t, "svc-basic", "basic-secret", "https://short.example", "orders:read")
	_, claims := verifyAccessToken(t, idp, tok.AccessToken, "RS256")
	if exp, iat := claims["exp"].(float64), claims["iat"].(float64); exp-iat != 2 {
		t.Errorf("exp-iat = %v, want 2", exp-iat)
	}
	if left := time.Until(tok.Expiry); left > 3*time.Second {
		t.Errorf("token expires in %v, want about 2s", left)
	}
}

func TestIDPAcceptsPrivateKeyJWTClientAssertions(t *testing.T) {
	t.Parallel()
	rsaClientKey, ecClientKey := newRSAKey(t, "client-rsa"), newECKey(t, "client-ec")
	cfg := smokeConfig()
	cfg.Clients = append(cfg.Clients,
		IDPClient{ID: "svc-jwt-rsa", AuthMethod: "private_key_jwt", Scopes: []string{"orders:read"}, JWKS: []*IDPKey{rsaClientKey}},
		IDPClient{ID: "svc-jwt-ec", AuthMethod: "private_key_jwt", Scopes: []string{"orders:read"}, JWKS: []*IDPKey{ecClientKey}},
	)
	idp := startIDP(t, cfg)
	for _, client := range []string{"svc-jwt-rsa", "svc-jwt-ec"} {
		t.Run(client, func(t *testing.T) {
			tok := idp.ClientCredentialsToken(t, client, "", ordersAPI, "orders:read")
			if _, claims := verifyAccessToken(t, idp, tok.AccessToken, "RS256"); claims["client_id"] != client {
				t.Errorf("client_id %v, want %q", claims["client_id"], client)
			}
		})
	}

	t.Run("an assertion signed by an unregistered key is refused", func(t *testing.T) {
		assertion, err := newECKey(t, "client-ec").ClientAssertion("svc-jwt-ec", idp.Issuer)
		if err != nil {
			t.Fatal(err)
		}
		cc := clientcredentials.Config{
			ClientID: "svc-jwt-ec", TokenURL: idp.TokenURL(), AuthStyle: oauth2.AuthStyleInParams,
			EndpointParams: url.Values{
				"client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"},
				"client_assertion":      {assertion},
				"resource":              {ordersAPI},
			},
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, err = cc.Token(ctx)
		var re *oauth2.RetrieveError
		if !errors.As(err, &re) || re.ErrorCode != "invalid_client" {
			t.Fatalf("error %v, want invalid_client", err)
		}
	})
}
