package outbound

import (
	"crypto"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	jose "github.com/go-jose/go-jose/v4"
)

// dpopServer checks DPoP proofs the way a token endpoint or resource
// server does (the parts the sidecar's proofs must get right), and can ask
// for a nonce first.
type dpopServer struct {
	t     *testing.T
	mu    sync.Mutex
	nonce string // when set, a proof without it is answered with a nonce challenge
	jtis  map[any]bool
	seen  []string // each proof's htm, htu and whether it had ath and the nonce
}

// check verifies r's proof and returns its key's thumbprint and claims.
func (s *dpopServer) check(r *http.Request, token string) (jkt string, claims map[string]any, err error) {
	jws, err := jose.ParseSigned(r.Header.Get("DPoP"), []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		return "", nil, err
	}
	h := jws.Signatures[0].Protected
	if h.ExtraHeaders[jose.HeaderType] != "dpop+jwt" || h.JSONWebKey == nil || !h.JSONWebKey.IsPublic() {
		return "", nil, fmt.Errorf("header %+v", h)
	}
	payload, err := jws.Verify(h.JSONWebKey)
	if err != nil {
		return "", nil, err
	}
	_ = json.Unmarshal(payload, &claims)
	thumb, _ := h.JSONWebKey.Thumbprint(crypto.SHA256)
	jkt = base64.RawURLEncoding.EncodeToString(thumb)
	wantHTU := "http://" + r.Host + r.URL.Path
	if claims["htm"] != r.Method || claims["htu"] != wantHTU || claims["jti"] == "" {
		return "", nil, fmt.Errorf("claims %v, want htm %s htu %s", claims, r.Method, wantHTU)
	}
	if token != "" {
		sum := sha256.Sum256([]byte(token))
		if claims["ath"] != base64.RawURLEncoding.EncodeToString(sum[:]) {
			return "", nil, fmt.Errorf("ath %v", claims["ath"])
		}
	}
	s.mu.Lock()
	if s.jtis == nil {
		s.jtis = map[any]bool{}
	}
	if s.jtis[claims["jti"]] {
		s.t.Errorf("jti %v used twice: every request needs a fresh proof", claims["jti"])
	}
	s.jtis[claims["jti"]] = true
	s.seen = append(s.seen, fmt.Sprintf("%s %s ath=%v nonce=%v", claims["htm"], claims["htu"], claims["ath"] != nil, claims["nonce"]))
	s.mu.Unlock()
	return jkt, claims, nil
}

func (s *dpopServer) wantsNonce(claims map[string]any) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.nonce != "" && claims["nonce"] != s.nonce
}

func TestDPoPTokensAreAskedForAndSentWithProofs(t *testing.T) {
	as := &dpopServer{t: t, nonce: "as-nonce-1"}
	var issued sync.Map // token -> jkt
	n := 0
	tokenEndpoint := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		jkt, claims, err := as.check(r, "")
		if err != nil {
			t.Errorf("token request proof: %v", err)
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_dpop_proof"})
			return
		}
		if as.wantsNonce(claims) {
			w.Header().Set("DPoP-Nonce", as.nonce)
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "use_dpop_nonce"})
			return
		}
		n++
		tok := fmt.Sprintf("dpop-tok-%d", n)
		issued.Store(tok, jkt)
		writeJSON(w, http.StatusOK, map[string]any{"access_token": tok, "token_type": "DPoP", "expires_in": 300})
	}))
	t.Cleanup(tokenEndpoint.Close)

	rs := &dpopServer{t: t, nonce: "rs-nonce-1"}
	var bodies []string
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "DPoP ")
		jkt, _ := issued.Load(tok)
		got, claims, err := rs.check(r, tok)
		if !ok || err != nil || got != jkt {
			t.Errorf("call: Authorization %q, proof %v, key %s, want the key the token is bound to (%v)", r.Header.Get("Authorization"), err, got, jkt)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		b, _ := io.ReadAll(r.Body)
		bodies = append(bodies, string(b))
		if rs.wantsNonce(claims) {
			w.Header().Set("DPoP-Nonce", rs.nonce)
			w.Header().Set("WWW-Authenticate", `DPoP error="use_dpop_nonce", error_description="Resource server requires nonce in DPoP proof"`)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		_, _ = w.Write([]byte("paid"))
	}))
	t.Cleanup(upstream.Close)

	h := build(t, map[string]string{
		"AUTHSIDECAR_OUTBOUND_ROUTES":        "payments",
		"AUTHSIDECAR_OUTBOUND_TOKEN_URL":     tokenEndpoint.URL + "/token",
		"AUTHSIDECAR_OUTBOUND_CLIENT_ID":     testClientID,
		"AUTHSIDECAR_OUTBOUND_CLIENT_SECRET": testSecret,
		"AUTHSIDECAR_OUTBOUND_DPOP":          "true",
		"AUTHSIDECAR_ROUTE_PAYMENTS_URL":     upstream.URL + "/v1",
	}, nil)
	for i := range 2 {
		rec := h.do(t, "POST", "/payments/charges?id=7", strings.NewReader("amount=42"))
		if rec.Code != http.StatusOK || rec.Body.String() != "paid" {
			t.Fatalf("call %d: %d %s", i+1, rec.Code, rec.Body)
		}
	}
	wantAS := []string{
		"POST " + tokenEndpoint.URL + "/token ath=false nonce=<nil>",
		"POST " + tokenEndpoint.URL + "/token ath=false nonce=as-nonce-1",
	}
	wantRS := []string{
		"POST " + upstream.URL + "/v1/charges ath=true nonce=<nil>",
		"POST " + upstream.URL + "/v1/charges ath=true nonce=rs-nonce-1",
		"POST " + upstream.URL + "/v1/charges ath=true nonce=rs-nonce-1",
	}
	if fmt.Sprint(as.seen) != fmt.Sprint(wantAS) {
		t.Errorf("token requests' proofs:\n got %q\nwant %q", as.seen, wantAS)
	}
	if fmt.Sprint(rs.seen) != fmt.Sprint(wantRS) {
		t.Errorf("calls' proofs:\n got %q\nwant %q", rs.seen, wantRS)
	}
	if fmt.Sprint(bodies) != "[amount=42 amount=42 amount=42]" {
		t.Errorf("the upstream read bodies %q, want the call's body each time, replayed after the nonce challenge", bodies)
	}
	if n != 1 {
		t.Errorf("%d tokens issued, want 1", n)
	}
}

// A server that gives a new nonce with its answer to the call sent again
// with the old one gets the new one on the next call: the answer to a
// retry is read for a nonce like any other.
func TestANonceInTheAnswerToARetryIsUsedNext(t *testing.T) {
	tokenEndpoint := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"access_token": "dpop-tok", "token_type": "DPoP", "expires_in": 300})
	}))
	t.Cleanup(tokenEndpoint.Close)
	rs := &dpopServer{t: t, nonce: "rs-nonce-1"}
	var calls atomic.Int64
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		_, claims, err := rs.check(r, "dpop-tok")
		if err != nil {
			t.Errorf("call: proof %v", err)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		if rs.wantsNonce(claims) {
			w.Header().Set("DPoP-Nonce", rs.nonce)
			w.Header().Set("WWW-Authenticate", `DPoP error="use_dpop_nonce"`)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		// Accepted: the server moves on to the next nonce, and says so.
		rs.mu.Lock()
		rs.nonce = "rs-nonce-2"
		rs.mu.Unlock()
		w.Header().Set("DPoP-Nonce", "rs-nonce-2")
		_, _ = w.Write([]byte("paid"))
	}))
	t.Cleanup(upstream.Close)
	h := build(t, map[string]string{
		"AUTHSIDECAR_OUTBOUND_ROUTES":        "payments",
		"AUTHSIDECAR_OUTBOUND_TOKEN_URL":     tokenEndpoint.URL + "/token",
		"AUTHSIDECAR_OUTBOUND_CLIENT_ID":     testClientID,
		"AUTHSIDECAR_OUTBOUND_CLIENT_SECRET": testSecret,
		"AUTHSIDECAR_OUTBOUND_DPOP":          "true",
		"AUTHSIDECAR_ROUTE_PAYMENTS_URL":     upstream.URL,
	}, nil)
	for i := range 2 {
		if rec := h.do(t, "GET", "/payments/charges", nil); rec.Code != http.StatusOK {
			t.Fatalf("call %d: %d %s", i+1, rec.Code, rec.Body)
		}
	}
	want := []string{
		"GET " + upstream.URL + "/charges ath=true nonce=<nil>",
		"GET " + upstream.URL + "/charges ath=true nonce=rs-nonce-1",
		"GET " + upstream.URL + "/charges ath=true nonce=rs-nonce-2",
	}
	if fmt.Sprint(rs.seen) != fmt.Sprint(want) || calls.Load() != 3 {
		t.Errorf("calls' proofs:\n got %q\nwant %q", rs.seen, want)
	}
}
