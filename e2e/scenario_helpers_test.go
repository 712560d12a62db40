package e2e

// Helpers shared by the sidecar scenarios (chain_test.go, faults_test.go):
// the two sidecars of a service-to-service chain, HTTP calls, metric
// scrapes and hand-made tokens.

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// Resource servers of the chain scenarios; the provider signs the first
// with RS256, the second with ES256. otherAPI stands for some other
// service: its tokens must not open paymentsRS.
const (
	paymentsRS = "http://payments.example"
	paymentsES = "http://payments-es.example"
	otherAPI   = "http://other.example"
)

// Clients of the chain scenarios. The provider enforces each client's
// registered token_endpoint_auth_method, so a token at all proves the
// sidecar authenticated the way it was told to.
const (
	basicClient, basicSecret   = "svc-orders-basic", "orders-basic-secret-1c9d"
	postClient, postSecret     = "svc-orders-post", "orders-post-secret-77fa"
	readerClient, readerSecret = "svc-reporting", "reporting-secret-b3e0" // payments:read only
)

func chainIDPConfig() IDPConfig {
	payScopes := []string{"payments:read", "payments:write"}
	return IDPConfig{
		Clients: []IDPClient{
			{ID: basicClient, Secret: basicSecret, AuthMethod: "client_secret_basic"},
			{ID: postClient, Secret: postSecret, AuthMethod: "client_secret_post"},
			{ID: readerClient, Secret: readerSecret, Scopes: []string{"payments:read"}},
		},
		Resources: map[string]IDPResource{
			paymentsRS: {Scopes: payScopes, Alg: "RS256"},
			paymentsES: {Scopes: payScopes, Alg: "ES256"},
			otherAPI:   {Scopes: payScopes, Alg: "RS256"},
		},
	}
}

// inboundSidecar is sidecar B: it verifies the provider's tokens for
// audience and passes good requests to app.
type inboundSidecar struct {
	*Sidecar
	Addrs SidecarAddrs
}

// startInbound starts sidecar B in front of app, trusting idp for
// audience and requiring requiredScopes (space-separated, may be empty).
// extra variables are merged last. It does not wait for readiness.
func startInbound(t testing.TB, idp *IDP, audience, requiredScopes string, app *App, extra map[string]string) *inboundSidecar {
	t.Helper()
	addrs := freeSidecarAddrs(t)
	env := mergeEnv(addrs.Env(), map[string]string{
		"AUTHSIDECAR_INBOUND_ISSUERS":   idp.Issuer,
		"AUTHSIDECAR_INBOUND_AUDIENCES": audience,
		"AUTHSIDECAR_INBOUND_UPSTREAM":  app.URL,
		"AUTHSIDECAR_LOG_LEVEL":         "debug",
	})
	if requiredScopes != "" {
		env["AUTHSIDECAR_INBOUND_REQUIRED_SCOPES"] = requiredScopes
	}
	return &inboundSidecar{Sidecar: startSidecar(t, mergeEnv(env, extra)), Addrs: addrs}
}

// outboundRoute is one route of sidecar A.
type outboundRoute struct {
	Name     string
	URL      string
	Resource string
	Scopes   string
}

// outboundSidecar is sidecar A: the app's outbound calls get tokens of
// client from the provider.
type outboundSidecar struct {
	*Sidecar
	Addrs SidecarAddrs
}

// startOutbound starts sidecar A as client (secret, method), with routes.
// Its token endpoint is tokenURL, or found by discovery of the provider
// when tokenURL is empty. It does not wait for readiness.
func startOutbound(t testing.TB, idp *IDP, client, secret, method, tokenURL string, routes ...outboundRoute) *outboundSidecar {
	t.Helper()
	addrs := freeSidecarAddrs(t)
	env := mergeEnv(addrs.Env(), map[string]string{
		"AUTHSIDECAR_OUTBOUND_CLIENT_ID":     client,
		"AUTHSIDECAR_OUTBOUND_CLIENT_SECRET": secret,
		"AUTHSIDECAR_OUTBOUND_AUTH_METHOD":   method,
		"AUTHSIDECAR_LOG_LEVEL":              "debug",
	})
	if tokenURL != "" {
		env["AUTHSIDECAR_OUTBOUND_TOKEN_URL"] = tokenURL
	} else {
		env["AUTHSIDECAR_OUTBOUND_ISSUER"] = idp.Issuer
	}
	var names []string
	for _, r := range routes {
		names = append(names, r.Name)
		p := "AUTHSIDECAR_ROUTE_" + strings.ToUpper(strings.ReplaceAll(r.Name, "-", "_")) + "_"
		env[p+"URL"] = r.URL
		if r.Resource != "" {
			env[p+"RESOURCE"] = r.Resource
		}
		if r.Scopes != "" {
			env[p+"SCOPES"] = r.Scopes
		}
	}
	env["AUTHSIDECAR_OUTBOUND_ROUTES"] = strings.Join(names, ",")
	return &outboundSidecar{Sidecar: startSidecar(t, env), Addrs: addrs}
}

// tokenTap is a reverse proxy in front of the provider's token endpoint:
// it records every token request the provider gets through it, and holds
// each back for delay first, so that callers pile up behind a fetch.
type tokenTap struct {
	*httptest.Server
	delay time.Duration

	mu   sync.Mutex
	seen []tokenRequest
}

// tokenRequest is a token request as the provider got it.
type tokenRequest struct {
	BasicUser string // client id in the Authorization header, if any
	Form      url.Values
}

func startTokenTap(t testing.TB, idp *IDP, delay time.Duration) *tokenTap {
	t.Helper()
	target, err := url.Parse(idp.Issuer)
	if err != nil {
		t.Fatal(err)
	}
	tap := &tokenTap{delay: delay}
	rp := httputil.NewSingleHostReverseProxy(target)
	tap.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/token" {
			body, err := readAllLimited(r.Body)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			form, _ := url.ParseQuery(string(body))
			user, _, _ := r.BasicAuth()
			user, _ = url.QueryUnescape(user)
			tap.mu.Lock()
			tap.seen = append(tap.seen, tokenRequest{BasicUser: user, Form: form})
			tap.mu.Unlock()
			time.Sleep(tap.delay)
			r.Body = io.NopCloser(bytes.NewReader(body))
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(tap.Close)
	return tap
}

// TokenURL is the tapped token endpoint.
func (tap *tokenTap) TokenURL() string { return tap.URL + "/token" }

// Requests returns the token requests seen so far.
func (tap *tokenTap) Requests() []tokenRequest {
	tap.mu.Lock()
	defer tap.mu.Unlock()
	return append([]tokenRequest(nil), tap.seen...)
}

// reply is an answer as a caller saw it.
type reply struct {
	Status int
	Header http.Header
	Body   []byte
}

func (r reply) String() string {
	return fmt.Sprintf("status %d, WWW-Authenticate %q, body %s", r.Status, r.Header.Get("WWW-Authenticate"), truncate(r.Body, 300))
}

// errorCode is the "error" member of a JSON error body, "" if none.
func (r reply) errorCode() string {
	var b struct {
		Error string `json:"error"`
	}
	_ = json.Unmarshal(r.Body, &b)
	return b.Error
}

func truncate(b []byte, n int) string {
	if len(b) <= n {
		return string(b)
	}
	return string(b[:n]) + "…"
}

var callClient = &http.Client{
	Timeout: 20 * time.Second,
	Transport: &http.Transport{
		Proxy:               nil,
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     5 * time.Second,
	},
}

// call sends one request and returns the answer, failing the test on a
// transport error. It is safe to use from several goroutines; it then
// must not be handed a *testing.T of a finished test.
func call(t testing.TB, method, url string, body []byte, header map[string]string) reply {
	t.Helper()
	r, err := tryCall(method, url, body, header)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	return r
}

func tryCall(method, url string, body []byte, header map[string]string) (reply, error) {
	var rd *bytes.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	var req *http.Request
	var err error
	if rd != nil {
		req, err = http.NewRequest(method, url, rd)
	} else {
		req, err = http.NewRequest(method, url, nil)
	}
	if err != nil {
		return reply{}, err
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := callClient.Do(req)
	if err != nil {
		return reply{}, err
	}
	defer resp.Body.Close()
	b, err := readAllLimited(resp.Body)
	if err != nil {
		return reply{}, fmt.Errorf("reading the body: %w", err)
	}
	return reply{Status: resp.StatusCode, Header: resp.Header, Body: b}, nil
}

func bearer(token string) map[string]string {
	return map[string]string{"Authorization": "Bearer " + token}
}

// getStatus answers url's status and body, or -1 and the error text.
func getStatus(url string) (int, string) {
	r, err := tryCall(http.MethodGet, url, nil, nil)
	if err != nil {
		return -1, err.Error()
	}
	return r.Status, string(r.Body)
}

// eventually polls cond every 100 ms until it holds, failing the test
// after d with what the last try said.
func eventually(t testing.TB, d time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		ok, last := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s; last: %s", what, d, last)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// sample is one line of the Prometheus text format.
type sample struct {
	Name   string
	Labels map[string]string
	Value  float64
}

// scrape reads adminURL/metrics.
func scrape(t testing.TB, adminURL string) []sample {
	t.Helper()
	r := call(t, http.MethodGet, adminURL+"/metrics", nil, nil)
	if r.Status != http.StatusOK {
		t.Fatalf("GET %s/metrics: %s", adminURL, r)
	}
	samples, err := parseMetrics(r.Body)
	if err != nil {
		t.Fatalf("GET %s/metrics: %v", adminURL, err)
	}
	return samples
}

// metric is the sum of the samples of name whose labels include kv
// (pairs of name and value); 0 when there is none.
func metric(t testing.TB, adminURL, name string, kv ...string) float64 {
	t.Helper()
	return sumMetric(scrape(t, adminURL), name, kv...)
}

// expectMetric checks that metric(name, kv...) reaches want within 5 s,
// and reports an error saying what it is otherwise. Request counters are
// incremented after the response is written, so a caller that has its
// answer may scrape a moment before the count moves.
func expectMetric(t testing.TB, adminURL, what string, want float64, name string, kv ...string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		got := metric(t, adminURL, name, kv...)
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("%s: %s%v = %v, want %v", what, name, kv, got, want)
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func sumMetric(samples []sample, name string, kv ...string) float64 {
	var sum float64
next:
	for _, s := range samples {
		if s.Name != name {
			continue
		}
		for i := 0; i+1 < len(kv); i += 2 {
			if s.Labels[kv[i]] != kv[i+1] {
				continue next
			}
		}
		sum += s.Value
	}
	return sum
}

// parseMetrics parses the Prometheus text exposition format, enough of it
// for authsidecar's /metrics: no timestamps, no exemplars.
func parseMetrics(text []byte) ([]sample, error) {
	var out []sample
	sc := bufio.NewScanner(bytes.NewReader(text))
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		s := sample{Labels: map[string]string{}}
		i := strings.IndexAny(line, "{ ")
		if i < 0 {
			return nil, fmt.Errorf("bad metric line %q", line)
		}
		s.Name, line = line[:i], line[i:]
		if strings.HasPrefix(line, "{") {
			rest, err := parseLabels(line[1:], s.Labels)
			if err != nil {
				return nil, fmt.Errorf("%v in %q", err, sc.Text())
			}
			line = rest
		}
		fields := strings.Fields(line)
		if len(fields) == 0 {
			return nil, fmt.Errorf("no value in %q", sc.Text())
		}
		v, err := strconv.ParseFloat(fields[0], 64)
		if err != nil {
			return nil, fmt.Errorf("bad value in %q: %v", sc.Text(), err)
		}
		s.Value = v
		out = append(out, s)
	}
	return out, sc.Err()
}

// parseLabels reads `a="x",b="y"}` into m and returns what follows '}'.
func parseLabels(s string, m map[string]string) (string, error) {
	for {
		s = strings.TrimLeft(s, " ,")
		if strings.HasPrefix(s, "}") {
			return s[1:], nil
		}
		eq := strings.Index(s, `="`)
		if eq < 0 {
			return "", fmt.Errorf("bad labels")
		}
		name := s[:eq]
		s = s[eq+2:]
		var val strings.Builder
		for {
			if s == "" {
				return "", fmt.Errorf("unterminated label value")
			}
			c := s[0]
			s = s[1:]
			if c == '"' {
				break
			}
			if c == '\\' && s != "" {
				switch s[0] {
				case 'n':
					val.WriteByte('\n')
				default:
					val.WriteByte(s[0])
				}
				s = s[1:]
				continue
			}
			val.WriteByte(c)
		}
		m[name] = val.String()
	}
}

// tokenClaims returns the unverified claims of a compact JWS.
func tokenClaims(t testing.TB, raw string) map[string]any {
	t.Helper()
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		t.Fatalf("token has %d parts, want 3", len(parts))
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatalf("token payload: %v", err)
	}
	var claims map[string]any
	if err := json.Unmarshal(b, &claims); err != nil {
		t.Fatalf("token payload: %v", err)
	}
	return claims
}

// tokenKID returns the kid of a compact JWS's header.
func tokenKID(t testing.TB, raw string) string {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(strings.Split(raw, ".")[0])
	if err != nil {
		t.Fatalf("token header: %v", err)
	}
	var hdr struct {
		KID string `json:"kid"`
	}
	if err := json.Unmarshal(b, &hdr); err != nil {
		t.Fatalf("token header: %v", err)
	}
	return hdr.KID
}

// signToken signs claims with key as an RFC 9068 access token (typ
// at+jwt, the key's kid), the way the provider would if key were its own.
func signToken(t testing.TB, key *IDPKey, claims map[string]any) string {
	t.Helper()
	signer, err := jose.NewSigner(
		jose.SigningKey{Algorithm: key.Alg(), Key: jose.JSONWebKey{Key: key.Private, KeyID: key.KID}},
		(&jose.SignerOptions{}).WithType("at+jwt"),
	)
	if err != nil {
		t.Fatal(err)
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	jws, err := signer.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := jws.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// tamperClaims returns raw with its payload changed by mutate and its
// original header and signature kept: a token the provider never signed.
func tamperClaims(t testing.TB, raw string, mutate func(map[string]any)) string {
	t.Helper()
	claims := tokenClaims(t, raw)
	mutate(claims)
	b, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(raw, ".")
	return parts[0] + "." + base64.RawURLEncoding.EncodeToString(b) + "." + parts[2]
}

// scopeSet splits a space-separated scope string into a sorted, comparable
// form.
func scopeSet(s string) string {
	f := strings.Fields(s)
	slices.Sort(f)
	return strings.Join(f, " ")
}

// checkAppSawNothing fails the test if the app saw any request.
func checkAppSawNothing(t testing.TB, app *App, when string) {
	t.Helper()
	if reqs := app.Requests(); len(reqs) != 0 {
		t.Errorf("%s: the app saw %d request(s), want none; first: %s %s", when, len(reqs), reqs[0].Method, reqs[0].RequestURI)
	}
}

// checkIdentity fails the test unless req carries exactly one copy of each
// identity header with the given client's identity from issuer, the
// scopes wanted, and no Authorization header.
func checkIdentity(t testing.TB, req RecordedRequest, issuer, client, scopes string) {
	t.Helper()
	want := map[string]string{
		"X-Auth-Subject":   client, // sub == client_id for client credentials
		"X-Auth-Issuer":    issuer,
		"X-Auth-Client-Id": client,
		"X-Auth-Scopes":    scopeSet(scopes),
	}
	for name, v := range want {
		got := req.Header.Values(name)
		if name == "X-Auth-Scopes" && len(got) == 1 {
			got = []string{scopeSet(got[0])}
		}
		if len(got) != 1 || got[0] != v {
			t.Errorf("app saw %s = %q, want exactly [%q]", name, got, v)
		}
	}
	if a := req.Header.Values("Authorization"); len(a) != 0 {
		t.Errorf("app saw Authorization %q, want none (FORWARD_TOKEN is off)", a)
	}
}
