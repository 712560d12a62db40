package outbound

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"math"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/authsidecar/authsidecar/internal/clock"
	"github.com/authsidecar/authsidecar/internal/reload"
)

// FuzzTokenResponse drives a route's real token source and Cache against a
// token endpoint whose status, content type and body the fuzzer picks. A
// token is only handed out when the endpoint answered 2xx with a non-empty
// access_token a header can carry, a Bearer (or absent) token_type and a
// positive lifetime: expires_in when the answer gives it, else the default
// lifetime. A clean answer of that kind is never refused. A refusal is
// errTokenUnavailable, repeated without asking again while backing off;
// no log line or error shows the client secret, nor an accepted token.
func FuzzTokenResponse(f *testing.F) {
	for _, seed := range tokenSeeds {
		f.Add(uint16(seed.status-100), seed.ctype, []byte(seed.body))
	}
	f.Fuzz(func(t *testing.T, statusSeed uint16, ctype string, body []byte) {
		checkTokenResponse(t, 100+int(statusSeed)%500, ctype, body)
	})
}

const fakeJWT = "eyJhbGciOiJSUzI1NiIsInR5cCI6ImF0K2p3dCJ9.eyJzdWIiOiJvcmRlcnMifQ.c2ln"

// tokenSeeds are token endpoint answers as identity providers give them,
// and as they go wrong, with whether a token must be had from each.
var tokenSeeds = []struct {
	status   int
	ctype    string
	body     string
	accepted bool
}{
	// Keycloak, Okta, Auth0, Entra v1 (numbers as strings), Hydra.
	{200, "application/json", `{"access_token":"` + fakeJWT + `","expires_in":300,"refresh_expires_in":0,"token_type":"Bearer","not-before-policy":0,"scope":"profile email"}`, true},
	{200, "application/json;charset=UTF-8", `{"token_type":"Bearer","expires_in":3600,"access_token":"` + fakeJWT + `","scope":"payments:read"}`, true},
	{200, "application/json", `{"access_token":"` + fakeJWT + `","scope":"read:payments","expires_in":86400,"token_type":"Bearer"}`, true},
	{200, "application/json; charset=utf-8", `{"token_type":"Bearer","expires_in":"3599","ext_expires_in":"3599","expires_on":"1767326645","resource":"api://payments","access_token":"` + fakeJWT + `"}`, true},
	{200, "application/json", `{"access_token":"ory_at_Xq2b.8fK","expires_in":3599,"scope":"","token_type":"bearer"}`, true},
	// Form-encoded answers, as GitHub and old servers send them.
	{200, "application/x-www-form-urlencoded", `access_token=gho_16C7e42F292c6912E7710c838347Ae178B4a&scope=repo&token_type=bearer&expires_in=28800`, true},
	{200, "text/plain; charset=utf-8", `access_token=a.b.c&expires_in=60`, true},
	// Lifetimes: none, zero, negative, huge, past what a Duration holds.
	{200, "application/json", `{"access_token":"t1","token_type":"Bearer"}`, true},
	{200, "application/json", `{"access_token":"t1","expires_in":0}`, true},
	{200, "application/json", `{"access_token":"t1","expires_in":-30}`, false},
	{200, "application/json", `{"access_token":"t1","expires_in":10000000000}`, true},
	{200, "application/json", `{"access_token":"t1","expires_in":18446744074}`, true},
	{200, "application/x-www-form-urlencoded", `access_token=t1&expires_in=18446744074`, true},
	{200, "application/json", `{"access_token":"t1","expires_in":1.5}`, false},
	{200, "application/json", `{"access_token":"t1","expires_in":null}`, true},
	// What cannot go in a Bearer header.
	{200, "application/json", `{"access_token":"t1","token_type":"DPoP","expires_in":300}`, false},
	{200, "application/json", `{"access_token":"t1","token_type":"mac","mac_key":"k"}`, false},
	{200, "application/json", `{"access_token":"a b","expires_in":300}`, false},
	{200, "application/json", `{"access_token":"t\r\nX-Injected: 1","expires_in":300}`, false},
	{200, "application/json", `{"access_token":"tökén","expires_in":300}`, false},
	{200, "application/json", `{"access_token":"","expires_in":300}`, false},
	{200, "application/json", `{"access_token":42}`, false},
	// Errors, with and without the right status.
	{400, "application/json", `{"error":"invalid_client","error_description":"Client authentication failed"}`, false},
	{200, "application/json", `{"error":"invalid_scope","access_token":"t1"}`, false},
	{401, "application/json", `{"access_token":"t1","expires_in":300}`, false},
	{502, "text/html", `<html><body>Bad Gateway</body></html>`, false},
	{204, "", ``, false},
	{301, "text/html", `moved`, false},
	{200, "application/json", `{"access_token":"t1"`, false},
}

const fuzzSecret = "fuzz-secret-Qm7r"

// checkTokenResponse runs one token fetch against the answer and holds the
// result to the properties above; it returns whether a token was given.
func checkTokenResponse(t *testing.T, status int, ctype string, body []byte) bool {
	t.Helper()
	now := time.Now() // x/oauth2 reads the real clock; the cache's starts there
	clk := clock.NewFake(now)
	var logs bytes.Buffer
	calls := 0
	src := &clientCredentials{
		clientID: testClientID, auth: SecretBasic(reload.Static(fuzzSecret)),
		endpoint: func(context.Context) (string, error) { return "https://idp.example/token", nil },
		scopes:   []string{"payments:read"}, params: url.Values{"audience": {"payments"}},
		client: &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
			calls++
			checkTokenRequest(t, r)
			h := http.Header{}
			if ctype != "" {
				h.Set("Content-Type", ctype)
			}
			return &http.Response{StatusCode: status, Header: h, Body: io.NopCloser(bytes.NewReader(body)), Request: r}, nil
		})},
		timeout: 5 * time.Second, clock: clk,
	}
	c := NewCache(src, CacheOptions{Route: "payments", Clock: clk,
		Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	tok, err := c.Token(t.Context())
	want := tokenOracle(status, ctype, body)
	if err != nil {
		if want.mustAccept {
			t.Fatalf("%d %q %q: refused (%v), but it is a clean token answer", status, ctype, body, err)
		}
		if !errors.Is(err, errTokenUnavailable) {
			t.Fatalf("%d %q %q: error %v does not wrap errTokenUnavailable", status, ctype, body, err)
		}
		if _, again := c.Token(t.Context()); again == nil || calls != 1 {
			t.Fatalf("%d %q %q: during the backoff the cache asked the endpoint %d times (error %v)", status, ctype, body, calls, again)
		}
		if !bytes.Contains(body, []byte(fuzzSecret)) && (strings.Contains(err.Error(), fuzzSecret) || strings.Contains(logs.String(), fuzzSecret)) {
			t.Fatalf("%d %q %q: the error or the log shows the client secret", status, ctype, body)
		}
		return false
	}
	e := c.cur.Load()
	lifetime := e.expiry.Sub(now)
	switch {
	case status < 200 || status > 299:
		t.Fatalf("%d %q %q: a token from a %d answer", status, ctype, body, status)
	case tok.AccessToken == "" || strings.ContainsFunc(tok.AccessToken, func(r rune) bool { return r < 0x21 || r > 0x7e }):
		t.Fatalf("%d %q %q: access token %q cannot go in a header", status, ctype, body, tok.AccessToken)
	case tok.TokenType != "" && !strings.EqualFold(tok.TokenType, "bearer"):
		t.Fatalf("%d %q %q: a %q token sent as Bearer", status, ctype, body, tok.TokenType)
	case e.tok != tok || e.header != "Bearer "+tok.AccessToken:
		t.Fatalf("%d %q %q: the cache holds %q for %q", status, ctype, body, e.header, tok.AccessToken)
	case lifetime <= 0 || !e.refreshAt.After(now) || e.refreshAt.After(e.expiry):
		t.Fatalf("%d %q %q: lifetime %s, refresh at %s of it", status, ctype, body, lifetime, e.refreshAt.Sub(now))
	case want.lifetime != 0 && (lifetime-want.lifetime).Abs() > time.Second:
		t.Fatalf("%d %q %q: lifetime %s, want %s", status, ctype, body, lifetime, want.lifetime)
	// A token of a few characters shows in any log by chance (found by the
	// fuzzer: "0", in the timestamps); real ones are long.
	case len(tok.AccessToken) >= 12 && strings.Contains(logs.String(), tok.AccessToken) || strings.Contains(logs.String(), fuzzSecret):
		t.Fatalf("%d %q %q: the log shows the token or the secret:\n%s", status, ctype, body, logs.String())
	}
	e.stop()
	return true
}

// checkTokenRequest checks that the request is a client-credentials grant
// (RFC 6749 4.4) authenticated with client_secret_basic.
func checkTokenRequest(t *testing.T, r *http.Request) {
	t.Helper()
	id, secret, ok := r.BasicAuth()
	if err := r.ParseForm(); err != nil || r.Method != http.MethodPost || !ok || id != testClientID ||
		secret != url.QueryEscape(fuzzSecret) || r.PostForm.Get("grant_type") != "client_credentials" ||
		r.PostForm.Get("scope") != "payments:read" || r.PostForm.Get("audience") != "payments" {
		t.Fatalf("a bad token request: %s %v %v", r.Method, r.PostForm, err)
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// tokenVerdict is what the oracle knows of an answer: that a token must be
// had from it, and with which lifetime (0: unknown, any positive one).
type tokenVerdict struct {
	mustAccept bool
	lifetime   time.Duration
}

// maxLifetime caps expires_in as x/oauth2 does (math.MaxInt32 seconds,
// 68 years): a Duration holds no more than 292 years.
const maxLifetime = math.MaxInt32 * time.Second

// tokenOracle reads an answer as RFC 6749 section 5.1 and the sidecar's
// rules say, without x/oauth2: a clean answer is a 2xx JSON object (or
// form, by its content type) whose fields have the types the RFC gives,
// no error, a header-safe access_token, a Bearer or absent token_type and
// an integer expires_in that is not negative.
func tokenOracle(status int, ctype string, body []byte) tokenVerdict {
	fields, ok := tokenFields(ctype, body)
	if !ok {
		return tokenVerdict{}
	}
	expires, hasExpires := fields["expires_in"]
	lifetime := defaultLifetime
	if hasExpires {
		n, err := strconv.ParseInt(expires, 10, 64)
		if err != nil {
			return tokenVerdict{} // x/oauth2 refuses some, the cache others
		}
		switch {
		case n < 0:
			return tokenVerdict{}
		case n > 0:
			lifetime = min(time.Duration(min(n, math.MaxInt32))*time.Second, maxLifetime)
		}
	}
	tok := fields["access_token"]
	clean := status >= 200 && status <= 299 && fields["error"] == "" && tok != "" &&
		!strings.ContainsFunc(tok, func(r rune) bool { return r < 0x21 || r > 0x7e }) &&
		(fields["token_type"] == "" || strings.EqualFold(fields["token_type"], "bearer"))
	return tokenVerdict{mustAccept: clean, lifetime: lifetime}
}

// tokenFields returns the answer's fields as strings, expires_in as its
// integer literal; ok is false for an answer with a field of the wrong
// type, or a field named twice or in another case (which field wins then
// is the JSON decoder's choice, not the RFC's).
func tokenFields(ctype string, body []byte) (map[string]string, bool) {
	out := map[string]string{}
	if mt, _, _ := mime.ParseMediaType(ctype); mt == "application/x-www-form-urlencoded" || mt == "text/plain" {
		vals, err := url.ParseQuery(string(body))
		if err != nil {
			return nil, false
		}
		for k, v := range vals {
			if len(v) != 1 {
				return nil, false
			}
			out[k] = v[0]
		}
		_, err = strconv.Atoi(vals.Get("expires_in")) // x/oauth2 drops what Atoi cannot read
		if vals.Has("expires_in") && err != nil {
			return nil, false
		}
		return out, true
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	var raw map[string]json.RawMessage
	if dec.Decode(&raw) != nil || raw == nil || dec.More() {
		return nil, false
	}
	seen := map[string]bool{}
	for k, v := range raw {
		lk := strings.ToLower(k)
		if seen[lk] {
			return nil, false
		}
		seen[lk] = true
		if !isTokenField(lk) {
			continue
		}
		if lk != k {
			return nil, false
		}
		s, ok := tokenFieldValue(k, v)
		if !ok {
			return nil, false
		}
		if s != "" || k == "expires_in" {
			out[k] = s
		}
	}
	if dupKeys(body) {
		return nil, false
	}
	return out, true
}

func isTokenField(k string) bool {
	switch k {
	case "access_token", "token_type", "refresh_token", "expires_in", "error", "error_description", "error_uri":
		return true
	}
	return false
}

// tokenFieldValue reads a string field, or expires_in as an integer
// literal, bare or quoted; null is absent.
func tokenFieldValue(k string, v json.RawMessage) (string, bool) {
	if string(v) == "null" {
		return "", true
	}
	var s string
	if k != "expires_in" {
		return s, json.Unmarshal(v, &s) == nil
	}
	lit := string(v)
	if json.Unmarshal(v, &s) == nil {
		lit = s
	}
	if lit == "" || strings.ContainsAny(lit, ".eE+") || !json.Valid([]byte(lit)) {
		return "", false
	}
	return lit, true
}

// dupKeys reports whether the object names a key twice at its top level.
func dupKeys(body []byte) bool {
	dec := json.NewDecoder(bytes.NewReader(body))
	if _, err := dec.Token(); err != nil {
		return false
	}
	seen := map[string]bool{}
	for dec.More() {
		k, err := dec.Token()
		if err != nil {
			return false
		}
		key := strings.ToLower(k.(string))
		if seen[key] {
			return true
		}
		seen[key] = true
		var skip json.RawMessage
		if dec.Decode(&skip) != nil {
			return false
		}
	}
	return false
}

// TestTokenResponseSeedsAreJudgedAsExpected keeps the fuzz target honest:
// the seeds that are good answers give a token, and only those.
func TestTokenResponseSeedsAreJudgedAsExpected(t *testing.T) {
	for _, tc := range tokenSeeds {
		if got := checkTokenResponse(t, tc.status, tc.ctype, []byte(tc.body)); got != tc.accepted {
			t.Errorf("%d %q: accepted = %v, want %v", tc.status, tc.body, got, tc.accepted)
		}
	}
}

// FuzzAPathStaysBelowTheRoutesBasePath: a path climbsOut lets through
// stays below the route's base path however the upstream resolves its
// dot segments: decoded, with backslashes as slashes, and ";parameters"
// dropped from a segment.
func FuzzAPathStaysBelowTheRoutesBasePath(f *testing.F) {
	for _, seed := range []string{"/a/../b", "/../x", "/%2e%2e/x", "/..%2f..", "/a\\..\\..", "/..;/x", "/./a", "", "/"} {
		f.Add(seed)
	}
	base := &url.URL{Path: "/base/path"}
	f.Fuzz(func(t *testing.T, rest string) {
		escaped := (&url.URL{Path: "/" + rest}).EscapedPath()
		if climbsOut(escaped) {
			return
		}
		joined, _ := joinPath(base, escaped)
		var stack []string
		for _, seg := range strings.FieldsFunc(joined, func(c rune) bool { return c == '/' || c == '\\' }) {
			seg, _, _ = strings.Cut(seg, ";")
			switch seg {
			case ".":
			case "..":
				if len(stack) > 0 {
					stack = stack[:len(stack)-1]
				}
			default:
				stack = append(stack, seg)
			}
		}
		if len(stack) < 2 || stack[0] != "base" || stack[1] != "path" {
			t.Fatalf("%q (escaped %q) resolves to /%s, outside /base/path", rest, escaped, strings.Join(stack, "/"))
		}
	})
}
