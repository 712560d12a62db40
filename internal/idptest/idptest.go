// Package idptest is a fake identity provider for tests: an httptest server
// speaking OIDC discovery and JWKS with keys made at run time, keys that can
// be swapped or made to fail mid-test, and counters on every endpoint.
package idptest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// Key is a signing key with its kid and algorithm.
type Key struct {
	ID      string
	Alg     jose.SignatureAlgorithm
	Private crypto.Signer
}

// Public returns the key as a public JWK.
func (k Key) Public() jose.JSONWebKey {
	return jose.JSONWebKey{Key: k.Private.Public(), KeyID: k.ID, Algorithm: string(k.Alg), Use: "sig"}
}

var (
	rsaOnce sync.Once
	rsaKeys []*rsa.PrivateKey
)

// NewRSAKey returns an RS256 key. RSA generation is slow, so a few keys are
// made once per test binary and handed out in turn.
func NewRSAKey(t testing.TB, kid string) Key {
	t.Helper()
	rsaOnce.Do(func() {
		for range 4 {
			k, err := rsa.GenerateKey(rand.Reader, 2048)
			if err != nil {
				panic(err)
			}
			rsaKeys = append(rsaKeys, k)
		}
	})
	return Key{ID: kid, Alg: jose.RS256, Private: rsaKeys[rsaCounter.Add(1)%uint32(len(rsaKeys))]}
}

var rsaCounter atomic.Uint32

// NewECKey returns a fresh ES256 key.
func NewECKey(t testing.TB, kid string) Key {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return Key{ID: kid, Alg: jose.ES256, Private: k}
}

// IDP is a running fake identity provider.
type IDP struct {
	Server *httptest.Server
	// Issuer is the server's URL, the iss of its tokens.
	Issuer string

	mu      sync.Mutex
	keys    []Key
	failing bool
	delay   time.Duration
	// noIntrospection leaves introspection_endpoint out of discovery, as
	// Ory Hydra's public port does.
	noIntrospection bool
	// jwks, when set, is served as the JWKS document instead of keys.
	jwks string
	// jwksGate, when set, holds JWKS requests; jwksArrived hears of each.
	jwksGate    chan struct{}
	jwksArrived chan struct{}

	DiscoveryHits atomic.Int64
	JWKSHits      atomic.Int64

	// Introspection: answers by token, and the calls received.
	answers          map[string]map[string]any
	introspectDown   bool
	introspectGate   chan struct{}
	introspectSeen   chan struct{}
	IntrospectHits   atomic.Int64
	introspectClient string
	introspectSecret string
}

// New starts a fake IdP publishing keys; it stops when the test ends.
func New(t testing.TB, keys ...Key) *IDP {
	idp := &IDP{keys: keys}
	idp.Server = httptest.NewUnstartedServer(idp.mux())
	idp.Issuer = "http://" + idp.Server.Listener.Addr().String()
	idp.Server.Start()
	t.Cleanup(idp.Server.Close)
	return idp
}

func (idp *IDP) mux() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", idp.serveDiscovery)
	mux.HandleFunc("GET /jwks", idp.serveJWKS)
	mux.HandleFunc("POST /introspect", idp.serveIntrospect)
	return mux
}

// SetKeys replaces the published keys, as a key rotation does.
func (idp *IDP) SetKeys(keys ...Key) {
	idp.mu.Lock()
	defer idp.mu.Unlock()
	idp.keys = keys
}

// SetFailing makes every endpoint answer 500 while on.
func (idp *IDP) SetFailing(on bool) {
	idp.mu.Lock()
	defer idp.mu.Unlock()
	idp.failing = on
}

// SetDelay makes every endpoint wait d before answering.
func (idp *IDP) SetDelay(d time.Duration) {
	idp.mu.Lock()
	defer idp.mu.Unlock()
	idp.delay = d
}

func (idp *IDP) state() ([]Key, bool, time.Duration) {
	idp.mu.Lock()
	defer idp.mu.Unlock()
	return idp.keys, idp.failing, idp.delay
}

func (idp *IDP) serveDiscovery(w http.ResponseWriter, r *http.Request) {
	idp.DiscoveryHits.Add(1)
	if _, failing, delay := idp.state(); failing {
		http.Error(w, "down", http.StatusInternalServerError)
		return
	} else if delay > 0 {
		time.Sleep(delay)
	}
	md := map[string]any{
		"issuer":                 idp.Issuer,
		"jwks_uri":               idp.Issuer + "/jwks",
		"token_endpoint":         idp.Issuer + "/token",
		"introspection_endpoint": idp.Issuer + "/introspect",
	}
	idp.mu.Lock()
	if idp.noIntrospection {
		delete(md, "introspection_endpoint")
	}
	idp.mu.Unlock()
	writeJSON(w, md)
}

// SetJWKS makes the JWKS endpoint serve doc as it is.
func (idp *IDP) SetJWKS(doc string) {
	idp.mu.Lock()
	defer idp.mu.Unlock()
	idp.jwks = doc
}

// HoldJWKS makes JWKS requests wait until release is called; arrived
// receives one value per request that reaches the gate.
func (idp *IDP) HoldJWKS() (arrived <-chan struct{}, release func()) {
	gate, ch := make(chan struct{}), make(chan struct{}, 100)
	idp.mu.Lock()
	idp.jwksGate, idp.jwksArrived = gate, ch
	idp.mu.Unlock()
	var once sync.Once
	return ch, func() { once.Do(func() { close(gate) }) }
}

func (idp *IDP) serveJWKS(w http.ResponseWriter, r *http.Request) {
	idp.JWKSHits.Add(1)
	idp.mu.Lock()
	gate, arrived, doc := idp.jwksGate, idp.jwksArrived, idp.jwks
	idp.mu.Unlock()
	if gate != nil {
		arrived <- struct{}{}
		<-gate
	}
	if doc != "" {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(doc))
		return
	}
	keys, failing, delay := idp.state()
	if failing {
		http.Error(w, "down", http.StatusInternalServerError)
		return
	}
	if delay > 0 {
		time.Sleep(delay)
	}
	set := jose.JSONWebKeySet{}
	for _, k := range keys {
		set.Keys = append(set.Keys, k.Public())
	}
	writeJSON(w, set)
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

// Claims builds a token's claims: the registered ones for this issuer
// and audience, valid for an hour from now, plus extra.
func (idp *IDP) Claims(aud string, extra map[string]any) map[string]any {
	now := time.Now()
	c := map[string]any{
		"iss":       idp.Issuer,
		"sub":       "svc-orders",
		"aud":       aud,
		"iat":       now.Unix(),
		"nbf":       now.Unix(),
		"exp":       now.Add(time.Hour).Unix(),
		"client_id": "orders",
		"scope":     "payments:read payments:write",
	}
	for k, v := range extra {
		if v == nil {
			delete(c, k)
			continue
		}
		c[k] = v
	}
	return c
}

// Sign returns claims as a compact JWS signed by k, with k.ID as kid.
func Sign(t testing.TB, k Key, claims map[string]any) string {
	t.Helper()
	return SignWithHeaders(t, k, claims, map[jose.HeaderKey]any{"kid": k.ID})
}

// SignWithHeaders is Sign with the protected headers given; a "kid" entry
// is used as is, so tests can lie about the key.
func SignWithHeaders(t testing.TB, k Key, claims map[string]any, headers map[jose.HeaderKey]any) string {
	t.Helper()
	opts := &jose.SignerOptions{ExtraHeaders: map[jose.HeaderKey]any{}}
	opts.WithType("at+jwt")
	for hk, v := range headers {
		opts.ExtraHeaders[hk] = v
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: k.Alg, Key: k.Private}, opts)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := jwt.Signed(signer).Claims(claims).Serialize()
	if err != nil {
		t.Fatal(fmt.Errorf("idptest: sign: %w", err))
	}
	return raw
}

// NewOn is New on a fixed address, for tests where the issuer's URL must
// be known before the issuer is up.
func NewOn(t testing.TB, addr string, keys ...Key) *IDP {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	idp := &IDP{keys: keys}
	idp.Server = httptest.NewUnstartedServer(idp.mux())
	idp.Server.Listener.Close()
	idp.Server.Listener = ln
	idp.Issuer = "http://" + ln.Addr().String()
	idp.Server.Start()
	t.Cleanup(idp.Server.Close)
	return idp
}

// SetAnswer makes introspection of token answer with answer; a token with
// no answer is {"active": false}.
func (idp *IDP) SetAnswer(token string, answer map[string]any) {
	idp.mu.Lock()
	defer idp.mu.Unlock()
	if idp.answers == nil {
		idp.answers = map[string]map[string]any{}
	}
	idp.answers[token] = answer
}

// SetIntrospectionClient sets the credentials introspection callers need.
func (idp *IDP) SetIntrospectionClient(id, secret string) {
	idp.mu.Lock()
	defer idp.mu.Unlock()
	idp.introspectClient, idp.introspectSecret = id, secret
}

// OmitIntrospectionEndpoint leaves introspection_endpoint out of the
// discovery document.
func (idp *IDP) OmitIntrospectionEndpoint() {
	idp.mu.Lock()
	defer idp.mu.Unlock()
	idp.noIntrospection = true
}

// SetIntrospectionDown makes the introspection endpoint answer 503 while on.
func (idp *IDP) SetIntrospectionDown(on bool) {
	idp.mu.Lock()
	defer idp.mu.Unlock()
	idp.introspectDown = on
}

// HoldIntrospection makes introspection calls wait until the returned
// function is called.
func (idp *IDP) HoldIntrospection() (release func()) {
	gate := make(chan struct{})
	idp.mu.Lock()
	idp.introspectGate = gate
	idp.mu.Unlock()
	var once sync.Once
	return func() { once.Do(func() { close(gate) }) }
}

// HoldIntrospectionArrivals is HoldIntrospection, and arrived receives
// one value per call that reaches the gate.
func (idp *IDP) HoldIntrospectionArrivals() (arrived <-chan struct{}, release func()) {
	ch := make(chan struct{}, 1000)
	release = idp.HoldIntrospection()
	idp.mu.Lock()
	idp.introspectSeen = ch
	idp.mu.Unlock()
	return ch, release
}

func (idp *IDP) serveIntrospect(w http.ResponseWriter, r *http.Request) {
	idp.IntrospectHits.Add(1)
	idp.mu.Lock()
	down, gate, seen := idp.introspectDown, idp.introspectGate, idp.introspectSeen
	wantID, wantSecret := idp.introspectClient, idp.introspectSecret
	idp.mu.Unlock()
	if seen != nil {
		seen <- struct{}{}
	}
	if gate != nil {
		<-gate
	}
	if down {
		http.Error(w, "down", http.StatusServiceUnavailable)
		return
	}
	if id, secret, ok := r.BasicAuth(); !ok || id != wantID || secret != wantSecret {
		w.Header().Set("WWW-Authenticate", "Basic")
		writeJSONStatus(w, http.StatusUnauthorized, map[string]string{"error": "invalid_client"})
		return
	}
	_ = r.ParseForm()
	idp.mu.Lock()
	answer, ok := idp.answers[r.PostForm.Get("token")]
	idp.mu.Unlock()
	if !ok {
		answer = map[string]any{"active": false}
	}
	writeJSON(w, answer)
}

func writeJSONStatus(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
