package discovery_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"github.com/authsidecar/authsidecar/discovery"
	"github.com/authsidecar/authsidecar/internal/redact"
)

// FuzzMetadata answers discovery with the fuzzer's documents: the first
// skip well-known URLs answer 404, the next one answers status and body
// ({{issuer}} in it stands for the issuer). Metadata must hold these, for
// any issuer the configuration accepts:
//   - it returns metadata only from a 200 whose "issuer" is the issuer,
//     exactly, and whose every endpoint passes SecureURL, https when the
//     issuer is (unless insecure HTTP is allowed);
//   - it asks only the issuer's own host, and only its well-known URLs;
//   - its errors are prefixed "discovery: " and never show the password
//     or query values of the issuer's URL.
func FuzzMetadata(f *testing.F) {
	for _, seed := range metadataSeeds {
		f.Add(seed.issuer, false, uint8(seed.skip), uint16(seed.status-100), []byte(seed.body))
	}
	f.Add("http://localhost:8080/realms/dev", true, uint8(0), uint16(100), []byte(`{"issuer":"{{issuer}}","jwks_uri":"http://idp.internal/certs"}`))
	f.Fuzz(func(t *testing.T, issuer string, insecure bool, skip uint8, statusSeed uint16, body []byte) {
		if discovery.SecureURL(issuer, insecure) != nil {
			return // the configuration refuses it before discovery
		}
		status := 100 + int(statusSeed)%500
		body = bytes.ReplaceAll(body, []byte("{{issuer}}"), []byte(issuer))
		var asked []string
		client := &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
			asked = append(asked, r.URL.String())
			code, b := http.StatusNotFound, []byte("not found")
			if len(asked) > int(skip%4) {
				code, b = status, body
			}
			return &http.Response{StatusCode: code, Header: http.Header{"Content-Type": {"application/json"}},
				Body: io.NopCloser(bytes.NewReader(b)), Request: r}, nil
		})}
		md, err := (&discovery.Client{HTTP: client, AllowInsecureHTTP: insecure}).Metadata(context.Background(), issuer)
		checkAsked(t, issuer, asked)
		if err != nil {
			checkError(t, issuer, err)
			return
		}
		checkMetadata(t, issuer, insecure, status, md)
	})
}

// metadataSeeds are discovery documents as identity providers publish
// them, trimmed to what matters, and as they go wrong.
var metadataSeeds = []struct {
	issuer string
	skip   int
	status int
	body   string
}{
	// Keycloak.
	{"https://idp.example.com/realms/prod", 0, 200, `{"issuer":"{{issuer}}","authorization_endpoint":"{{issuer}}/protocol/openid-connect/auth","token_endpoint":"{{issuer}}/protocol/openid-connect/token","introspection_endpoint":"{{issuer}}/protocol/openid-connect/token/introspect","jwks_uri":"{{issuer}}/protocol/openid-connect/certs","grant_types_supported":["authorization_code","client_credentials"],"id_token_signing_alg_values_supported":["PS384","ES384","RS384","HS256","RS256"]}`},
	// Okta, Auth0 (trailing slash), Entra ID v2, Google.
	{"https://dev-123.okta.com/oauth2/default", 0, 200, `{"issuer":"{{issuer}}","token_endpoint":"https://dev-123.okta.com/oauth2/default/v1/token","jwks_uri":"https://dev-123.okta.com/oauth2/default/v1/keys","introspection_endpoint":"https://dev-123.okta.com/oauth2/default/v1/introspect"}`},
	{"https://tenant.eu.auth0.com/", 0, 200, `{"issuer":"https://tenant.eu.auth0.com/","token_endpoint":"https://tenant.eu.auth0.com/oauth/token","jwks_uri":"https://tenant.eu.auth0.com/.well-known/jwks.json"}`},
	{"https://login.microsoftonline.com/9188040d-6c67-4c5b-b112-36a304b66dad/v2.0", 0, 200, `{"token_endpoint":"https://login.microsoftonline.com/9188040d-6c67-4c5b-b112-36a304b66dad/oauth2/v2.0/token","jwks_uri":"https://login.microsoftonline.com/9188040d-6c67-4c5b-b112-36a304b66dad/discovery/v2.0/keys","issuer":"https://login.microsoftonline.com/9188040d-6c67-4c5b-b112-36a304b66dad/v2.0"}`},
	{"https://accounts.google.com", 0, 200, `{"issuer":"https://accounts.google.com","token_endpoint":"https://oauth2.googleapis.com/token","jwks_uri":"https://www.googleapis.com/oauth2/v3/certs","id_token_signing_alg_values_supported":["RS256"]}`},
	// RFC 8414 at the second and third well-known URLs (Ory Hydra, Authlete).
	{"https://hydra.example.com/tenant-a", 1, 200, `{"issuer":"{{issuer}}","token_endpoint":"{{issuer}}/oauth2/token","jwks_uri":"{{issuer}}/.well-known/jwks.json"}`},
	{"https://as.example.com/b", 2, 200, `{"issuer":"{{issuer}}","token_endpoint":"https://as.example.com/b/token"}`},
	// A loopback development issuer over plain HTTP.
	{"http://127.0.0.1:8080", 0, 200, `{"issuer":"{{issuer}}","jwks_uri":"{{issuer}}/jwks","token_endpoint":"{{issuer}}/token"}`},
	// What must be refused: another issuer's document, a plain-HTTP
	// endpoint under an https issuer, a non-http scheme, failures.
	{"https://idp.example.com", 0, 200, `{"issuer":"https://evil.example","jwks_uri":"https://evil.example/keys"}`},
	{"https://idp.example.com", 0, 200, `{"issuer":"https://idp.example.com/","jwks_uri":"https://idp.example.com/keys"}`},
	{"https://idp.example.com", 0, 200, `{"issuer":"{{issuer}}","jwks_uri":"http://idp.example.com/keys"}`},
	{"https://idp.example.com", 0, 200, `{"issuer":"{{issuer}}","token_endpoint":"file:///etc/passwd"}`},
	{"https://idp.example.com", 0, 200, `{"issuer":"{{issuer}}","jwks_uri":"http://127.0.0.1/keys"}`},
	{"HTTPS://idp.example.com", 0, 200, `{"issuer":"{{issuer}}","jwks_uri":"http://127.0.0.1/keys"}`},
	{"https://user:s3cret@idp.example.com/realms/a?tenant=x", 0, 200, `{"issuer":"https://idp.example.com/realms/a","jwks_uri":"https://idp.example.com/keys"}`},
	{"https://user:s3cret@idp.example.com/realms/a", 0, 200, `{"issuer":"https://idp.example.com/realms/a","jwks_uri":"https://idp.example.com/keys"}`},
	{"https://user:s3cret@idp.example.com/realms/a", 0, 200, `{"issuer":"{{issuer}}","jwks_uri":"ftp://idp.example.com/keys"}`},
	{"https://idp.example.com/#frag", 0, 200, `{"issuer":"{{issuer}}"}`},
	{"https://idp.example.com", 0, 500, `{"issuer":"{{issuer}}"}`},
	{"https://idp.example.com", 3, 200, `{"issuer":"{{issuer}}"}`},
	{"https://idp.example.com", 0, 200, `{"issuer":["{{issuer}}"]}`},
	{"https://idp.example.com", 0, 200, `<html>`},
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// wellKnown lists where OpenID Connect Discovery 4 and RFC 8414 3 put an
// issuer's metadata: the oracle for what may be asked.
func wellKnown(issuer string) []string {
	u, err := url.Parse(strings.TrimSuffix(issuer, "/"))
	if err != nil {
		return nil
	}
	oidc, rfc8414, appended := *u, *u, *u
	oidc.Path += "/.well-known/openid-configuration"
	rfc8414.Path = "/.well-known/oauth-authorization-server" + u.Path
	appended.Path += "/.well-known/oauth-authorization-server"
	return []string{oidc.String(), rfc8414.String(), appended.String()}
}

func checkAsked(t *testing.T, issuer string, asked []string) {
	t.Helper()
	iu, _ := url.Parse(issuer)
	allowed := wellKnown(issuer)
	for _, a := range asked {
		u, err := url.Parse(a)
		if err != nil || u.Scheme != iu.Scheme || !sameHost(u, iu) {
			t.Fatalf("issuer %q: asked %q, off the issuer's host", issuer, a)
		}
		found := false
		for _, w := range allowed {
			found = found || sameURL(a, w)
		}
		if !found {
			t.Fatalf("issuer %q: asked %q, which is none of its well-known URLs %q", issuer, a, allowed)
		}
	}
	if len(asked) > 3 {
		t.Fatalf("issuer %q: asked %d URLs, want at most 3", issuer, len(asked))
	}
}

// sameURL compares two URLs as a server reads them, path and query.
func sameURL(a, b string) bool {
	ua, errA := url.Parse(a)
	ub, errB := url.Parse(b)
	return errA == nil && errB == nil && sameHost(ua, ub) && ua.Path == ub.Path && ua.RawQuery == ub.RawQuery
}

// sameHost compares the hosts two URLs dial: an empty port is the
// scheme's, which net/http drops from "host:".
func sameHost(a, b *url.URL) bool {
	port := func(u *url.URL) string {
		if p := u.Port(); p != "" {
			return p
		}
		return u.Scheme
	}
	return strings.EqualFold(a.Hostname(), b.Hostname()) && port(a) == port(b)
}

func checkError(t *testing.T, issuer string, err error) {
	t.Helper()
	msg := err.Error()
	for _, line := range strings.Split(msg, "\n") {
		if !strings.HasPrefix(line, "discovery: ") {
			t.Fatalf("issuer %q: error line %q lacks the package prefix", issuer, line)
		}
	}
	// The URLs the error names, parsed, must hold neither the issuer's
	// password nor its query values. (Looking for their text instead
	// fails: the fuzzer spells them in the host and the path too.)
	u, _ := url.Parse(issuer)
	secret := map[string]bool{}
	if p, ok := u.User.Password(); ok && p != "" {
		secret[p] = true
		secret[strings.Trim(strconv.Quote(p), `"`)] = true
	}
	for _, vs := range u.Query() {
		for _, v := range vs {
			if v != "" && v != redact.Mask {
				secret[v] = true
			}
		}
	}
	for _, shown := range urlsIn(msg) {
		p, _ := shown.User.Password()
		leaked := secret[p]
		for _, vs := range shown.Query() {
			for _, v := range vs {
				leaked = leaked || secret[v]
			}
		}
		if leaked {
			t.Fatalf("issuer %q: the error shows %q: %v", issuer, shown.Redacted(), err)
		}
	}
}

// urlsIn finds the URLs in an error message: each field holding "://",
// without the quotes and punctuation around it.
func urlsIn(msg string) []*url.URL {
	var out []*url.URL
	for _, f := range strings.Fields(msg) {
		i := strings.Index(f, "://")
		if i < 0 {
			continue
		}
		start := strings.LastIndex(f[:i], `"`) + 1
		if u, err := url.Parse(strings.TrimRight(f[start:], `":,`)); err == nil {
			out = append(out, u)
		}
	}
	return out
}

func checkMetadata(t *testing.T, issuer string, insecure bool, status int, md *discovery.Metadata) {
	t.Helper()
	if status != http.StatusOK {
		t.Fatalf("issuer %q: metadata from a %d answer", issuer, status)
	}
	if md.Issuer != issuer {
		t.Fatalf("issuer %q: metadata of issuer %q accepted", issuer, md.Issuer)
	}
	iu, _ := url.Parse(issuer)
	https := iu.Scheme == "https"
	for name, e := range map[string]string{"jwks_uri": md.JWKSURI, "token_endpoint": md.TokenEndpoint, "introspection_endpoint": md.IntrospectionEndpoint} {
		if e == "" {
			continue
		}
		if err := discovery.SecureURL(e, insecure); err != nil {
			t.Fatalf("issuer %q: %s %q accepted, which %v", issuer, name, e, err)
		}
		if u, _ := url.Parse(e); https && !insecure && u.Scheme != "https" {
			t.Fatalf("issuer %q: %s %q accepted, not https under an https issuer", issuer, name, e)
		}
	}
}
