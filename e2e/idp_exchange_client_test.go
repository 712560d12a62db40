package e2e

// Client helpers for the provider's DPoP-bound tokens and its RFC 8693
// token exchange grant (server.mjs, token_exchange.mjs).

import (
	"crypto"
	"net/http"
	"net/url"
	"testing"
)

const (
	tokenExchangeGrant = "urn:ietf:params:oauth:grant-type:token-exchange"
	accessTokenType    = "urn:ietf:params:oauth:token-type:access_token"
)

// DPoPClientCredentialsToken makes a client-credentials request with a
// DPoP proof signed by key and returns the answer, which it requires to be
// a 200 with token_type DPoP. A use_dpop_nonce challenge is answered once
// with the nonce the provider sent, as a client must.
func (i *IDP) DPoPClientCredentialsToken(t testing.TB, clientID, secret, resource, scope string, key crypto.Signer) *IDPTokenResponse {
	t.Helper()
	form := func() url.Values {
		f := url.Values{"grant_type": {"client_credentials"}}
		setIfNotEmpty(f, "resource", resource)
		setIfNotEmpty(f, "scope", scope)
		return f
	}
	r := i.TokenRequest(t, clientID, secret, form(), dpopProof(t, key, http.MethodPost, i.TokenURL(), "", ""))
	if nonce := r.Header.Get("DPoP-Nonce"); r.Status == http.StatusBadRequest && r.Error == "use_dpop_nonce" && nonce != "" {
		r = i.TokenRequest(t, clientID, secret, form(), dpopProof(t, key, http.MethodPost, i.TokenURL(), "", nonce))
	}
	if r.Status != http.StatusOK || r.TokenType != "DPoP" {
		t.Fatalf("DPoP client credentials token for %q (resource %q, scope %q): %s", clientID, resource, scope, r)
	}
	return r
}

// ExchangeForm is the form of an RFC 8693 exchange of subjectToken (an
// access token) for resource and scope, with actorToken as the actor's
// access token; empty arguments are left out.
func ExchangeForm(subjectToken, resource, scope, actorToken string) url.Values {
	f := url.Values{"grant_type": {tokenExchangeGrant}}
	setIfNotEmpty(f, "subject_token", subjectToken)
	if subjectToken != "" {
		f.Set("subject_token_type", accessTokenType)
	}
	setIfNotEmpty(f, "resource", resource)
	setIfNotEmpty(f, "scope", scope)
	if actorToken != "" {
		f.Set("actor_token", actorToken)
		f.Set("actor_token_type", accessTokenType)
	}
	return f
}

// ExchangeToken exchanges subjectToken as the client (authenticated the way
// it is registered, see FetchToken) for a token for resource with scope,
// sending actorToken as the actor unless empty. It fails the test unless
// the provider issues a token.
func (i *IDP) ExchangeToken(t testing.TB, clientID, secret, subjectToken, resource, scope, actorToken string) *IDPTokenResponse {
	t.Helper()
	r := i.TokenRequest(t, clientID, secret, ExchangeForm(subjectToken, resource, scope, actorToken), "")
	if r.Status != http.StatusOK {
		t.Fatalf("token exchange by %q for resource %q (scope %q, actor %t): %s", clientID, resource, scope, actorToken != "", r)
	}
	return r
}

// IDPExchange is the provider's record of one token exchange that reached
// the grant handler (GET /test/exchanges). It holds no token or secret.
type IDPExchange struct {
	At                 string `json:"at"`
	ClientID           string `json:"client_id"`
	Resource           string `json:"resource"`
	Audience           string `json:"audience"`
	Scope              string `json:"scope"`
	SubjectTokenType   string `json:"subject_token_type"`
	ActorTokenType     string `json:"actor_token_type"`
	RequestedTokenType string `json:"requested_token_type"`
	DPoP               bool   `json:"dpop"` // a DPoP header was sent
	// Result is "issued" or the error code the provider answered.
	Result           string `json:"result"`
	ErrorDescription string `json:"error_description"`
	// ErrorDetail is the reason the client is not told (oidc-provider
	// answers invalid_grant with a generic description).
	ErrorDetail string `json:"error_detail"`
	// Set when issued:
	SubjectSub      string `json:"subject_sub"`
	SubjectClientID string `json:"subject_client_id"`
	ActorSub        string `json:"actor_sub"`
	IssuedAud       string `json:"issued_aud"`
	IssuedScope     string `json:"issued_scope"`
	IssuedTokenType string `json:"issued_token_type"` // Bearer or DPoP
	JKT             string `json:"jkt"`
	ExpiresIn       int    `json:"expires_in"`
}

// IDPExchangeLog is what the provider counted since it last started.
type IDPExchangeLog struct {
	Count    int           `json:"count"`    // tokens issued
	Failures int           `json:"failures"` // refused by the grant handler
	Last     *IDPExchange  `json:"last"`
	Recent   []IDPExchange `json:"recent"` // the last 100, oldest first
}

// ExchangeLog fetches the provider's exchange records. A request is
// recorded before its answer is sent, so after a response it is counted.
// Requests refused before the grant handler (a bad client secret, a client
// without the grant) are not. A restart starts from zero.
func (i *IDP) ExchangeLog(t testing.TB) IDPExchangeLog {
	t.Helper()
	var log IDPExchangeLog
	i.GetJSON(t, "/test/exchanges", &log)
	return log
}

// Exchanges is the number of tokens the provider issued by token exchange
// since it last started.
func (i *IDP) Exchanges(t testing.TB) int {
	t.Helper()
	return i.ExchangeLog(t).Count
}

func setIfNotEmpty(f url.Values, k, v string) {
	if v != "" {
		f.Set(k, v)
	}
}
