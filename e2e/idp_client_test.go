package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
)

// TokenURL is the provider's token endpoint.
func (i *IDP) TokenURL() string { return i.Issuer + "/token" }

// IntrospectionURL is the provider's RFC 7662 endpoint.
func (i *IDP) IntrospectionURL() string { return i.Issuer + "/token/introspection" }

// RevocationURL is the provider's RFC 7009 endpoint.
func (i *IDP) RevocationURL() string { return i.Issuer + "/token/revocation" }

// FetchToken makes a client-credentials request, authenticating the way the
// client is registered (for private_key_jwt, with an assertion signed by the
// first key of its JWKS; secret is then ignored). resource and scope are
// omitted when empty; scope is space-separated.
func (i *IDP) FetchToken(ctx context.Context, clientID, secret, resource, scope string) (*oauth2.Token, error) {
	style, params, err := i.clientAuth(clientID, &secret)
	if err != nil {
		return nil, err
	}
	if resource != "" {
		params.Set("resource", resource)
	}
	cc := clientcredentials.Config{
		ClientID:       clientID,
		ClientSecret:   secret,
		TokenURL:       i.TokenURL(),
		Scopes:         strings.Fields(scope),
		AuthStyle:      style,
		EndpointParams: params,
	}
	ctx = context.WithValue(ctx, oauth2.HTTPClient, i.client)
	return cc.Token(ctx)
}

// ClientCredentialsToken is FetchToken that fails the test on error.
func (i *IDP) ClientCredentialsToken(t testing.TB, clientID, secret, resource, scope string) *oauth2.Token {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	tok, err := i.FetchToken(ctx, clientID, secret, resource, scope)
	if err != nil {
		t.Fatalf("client credentials token for %q (resource %q, scope %q): %v", clientID, resource, scope, err)
	}
	return tok
}

// clientAuth says how clientID authenticates: in the Authorization header
// (client_secret_basic, and clients the config does not know), or in the
// form, with the parameters to add. For private_key_jwt it clears *secret.
func (i *IDP) clientAuth(clientID string, secret *string) (oauth2.AuthStyle, url.Values, error) {
	params := url.Values{}
	c, ok := i.clientByID(clientID)
	switch {
	case !ok:
		return oauth2.AuthStyleInHeader, params, nil
	case c.AuthMethod == "client_secret_post":
		return oauth2.AuthStyleInParams, params, nil
	case c.AuthMethod == "private_key_jwt":
		if len(c.JWKS) == 0 {
			return 0, nil, fmt.Errorf("client %q uses private_key_jwt but has no JWKS", clientID)
		}
		assertion, err := c.JWKS[0].ClientAssertion(clientID, i.Issuer)
		if err != nil {
			return 0, nil, err
		}
		params.Set("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
		params.Set("client_assertion", assertion)
		*secret = ""
		return oauth2.AuthStyleInParams, params, nil
	default:
		return oauth2.AuthStyleInHeader, params, nil
	}
}

func (i *IDP) clientByID(clientID string) (IDPClient, bool) {
	i.mu.Lock()
	defer i.mu.Unlock()
	for _, c := range i.cfg.Clients {
		if c.ID == clientID {
			return c, true
		}
	}
	return IDPClient{}, false
}

// Introspect asks the provider about token (RFC 7662) as the given client,
// which must use a client_secret method, and returns the JSON answer.
func (i *IDP) Introspect(t testing.TB, clientID, secret, token string) map[string]any {
	t.Helper()
	status, body := i.postForm(t, i.IntrospectionURL(), clientID, secret, url.Values{"token": {token}})
	if status != http.StatusOK {
		t.Fatalf("introspection: status %d, body %s", status, body)
	}
	var out map[string]any
	if err := json.Unmarshal(body, &out); err != nil {
		t.Fatalf("introspection: %v in %s", err, body)
	}
	return out
}

// Revoke revokes token (RFC 7009) as the given client.
func (i *IDP) Revoke(t testing.TB, clientID, secret, token string) {
	t.Helper()
	status, body := i.postForm(t, i.RevocationURL(), clientID, secret, url.Values{"token": {token}})
	if status != http.StatusOK {
		t.Fatalf("revocation: status %d, body %s", status, body)
	}
}

// postForm posts form to u authenticated as the client; it returns the
// status and body.
func (i *IDP) postForm(t testing.TB, u, clientID, secret string, form url.Values) (int, []byte) {
	t.Helper()
	return i.do(t, i.formRequest(t, u, clientID, secret, form))
}

// formRequest is a POST of form to u, authenticated as the client the way
// it is registered (see FetchToken).
func (i *IDP) formRequest(t testing.TB, u, clientID, secret string, form url.Values) *http.Request {
	t.Helper()
	style, params, err := i.clientAuth(clientID, &secret)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range params {
		form[k] = v
	}
	if style == oauth2.AuthStyleInParams {
		form.Set("client_id", clientID)
		if secret != "" {
			form.Set("client_secret", secret)
		}
	}
	req, err := http.NewRequest(http.MethodPost, u, strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if style == oauth2.AuthStyleInHeader {
		req.SetBasicAuth(url.QueryEscape(clientID), url.QueryEscape(secret))
	}
	return req
}

// IDPTokenResponse is a token endpoint answer, success or error.
type IDPTokenResponse struct {
	Status int
	Header http.Header // DPoP-Nonce, among others
	Raw    map[string]any

	AccessToken      string `json:"access_token"`
	TokenType        string `json:"token_type"`
	IssuedTokenType  string `json:"issued_token_type"`
	ExpiresIn        int    `json:"expires_in"`
	Scope            string `json:"scope"`
	Error            string `json:"error"`
	ErrorDescription string `json:"error_description"`
}

func (r *IDPTokenResponse) String() string {
	if r.Error != "" {
		return fmt.Sprintf("status %d, error %q (%s)", r.Status, r.Error, r.ErrorDescription)
	}
	return fmt.Sprintf("status %d, token_type %q, expires_in %d, scope %q", r.Status, r.TokenType, r.ExpiresIn, r.Scope)
}

// TokenRequest posts form (grant_type and the grant's parameters) to the
// token endpoint, authenticated as the client the way it is registered
// (see FetchToken), with dpop as the DPoP header unless empty. It fails the
// test only when there is no HTTP answer or the body is not JSON.
func (i *IDP) TokenRequest(t testing.TB, clientID, secret string, form url.Values, dpop string) *IDPTokenResponse {
	t.Helper()
	req := i.formRequest(t, i.TokenURL(), clientID, secret, form)
	if dpop != "" {
		req.Header.Set("DPoP", dpop)
	}
	resp, err := i.client.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", req.URL, err)
	}
	defer resp.Body.Close()
	body, err := readAllLimited(resp.Body)
	if err != nil {
		t.Fatalf("POST %s: reading body: %v", req.URL, err)
	}
	out := &IDPTokenResponse{Status: resp.StatusCode, Header: resp.Header}
	if err := json.Unmarshal(body, out); err != nil {
		t.Fatalf("POST %s: status %d, %v in %s", req.URL, resp.StatusCode, err, body)
	}
	if err := json.Unmarshal(body, &out.Raw); err != nil {
		t.Fatal(err)
	}
	return out
}

// GetJSON fetches a provider URL path (such as "/jwks") and decodes it.
func (i *IDP) GetJSON(t testing.TB, path string, out any) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, i.Issuer+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	status, body := i.do(t, req)
	if status != http.StatusOK {
		t.Fatalf("GET %s: status %d, body %s", path, status, body)
	}
	if err := json.Unmarshal(body, out); err != nil {
		t.Fatalf("GET %s: %v in %s", path, err, body)
	}
}

func (i *IDP) do(t testing.TB, req *http.Request) (int, []byte) {
	t.Helper()
	resp, err := i.client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	body, err := readAllLimited(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading body: %v", req.Method, req.URL, err)
	}
	return resp.StatusCode, body
}
