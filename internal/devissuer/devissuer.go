// Package devissuer is a small in-process OAuth2 authorization server for
// demos: OIDC discovery, a JWKS, and a client-credentials token endpoint
// that issues RS256 JWT access tokens (RFC 9068). It is for the quickstart
// and examples only: it keeps one key in memory and trusts a fixed client
// list. Never use it to protect anything.
package devissuer

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// TokenRequest is what the token endpoint was asked, for the demo's story.
type TokenRequest struct {
	ClientID   string
	AuthMethod string
	Audience   string
	Scope      string
	Granted    bool
}

// Issuer is a running development issuer.
type Issuer struct {
	// URL is the issuer identifier and base URL.
	URL string
	// TokenLifetime is the lifetime of issued tokens.
	TokenLifetime time.Duration

	clients map[string]string
	key     *rsa.PrivateKey
	signer  jose.Signer
	srv     *http.Server

	mu       sync.Mutex
	requests []TokenRequest
}

// Start serves an issuer on addr for clients, a map of client id to secret.
func Start(addr string, clients map[string]string) (*Issuer, error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: jose.JSONWebKey{Key: key, KeyID: "dev-1"}},
		(&jose.SignerOptions{}).WithType("at+jwt"))
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	iss := &Issuer{URL: "http://" + ln.Addr().String(), TokenLifetime: 5 * time.Minute, clients: clients, key: key, signer: signer}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", iss.discovery)
	mux.HandleFunc("GET /jwks", iss.jwks)
	mux.HandleFunc("POST /token", iss.token)
	iss.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = iss.srv.Serve(ln) }()
	return iss, nil
}

// Close stops the issuer.
func (iss *Issuer) Close() error { return iss.srv.Shutdown(context.Background()) }

// Requests returns the token requests received so far.
func (iss *Issuer) Requests() []TokenRequest {
	iss.mu.Lock()
	defer iss.mu.Unlock()
	return append([]TokenRequest(nil), iss.requests...)
}

func (iss *Issuer) discovery(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{
		"issuer":                                iss.URL,
		"jwks_uri":                              iss.URL + "/jwks",
		"token_endpoint":                        iss.URL + "/token",
		"grant_types_supported":                 []string{"client_credentials"},
		"token_endpoint_auth_methods_supported": []string{"client_secret_basic", "client_secret_post"},
		"id_token_signing_alg_values_supported": []string{"RS256"},
	})
}

func (iss *Issuer) jwks(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, jose.JSONWebKeySet{Keys: []jose.JSONWebKey{
		{Key: &iss.key.PublicKey, KeyID: "dev-1", Algorithm: "RS256", Use: "sig"},
	}})
}

func (iss *Issuer) token(w http.ResponseWriter, r *http.Request) {
	req, err := iss.authenticate(r)
	if err == nil && r.PostForm.Get("grant_type") != "client_credentials" {
		err = errors.New("unsupported_grant_type")
	}
	req.Granted = err == nil
	iss.mu.Lock()
	iss.requests = append(iss.requests, req)
	iss.mu.Unlock()
	if err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
		return
	}
	raw, err := iss.sign(req)
	if err != nil {
		writeJSON(w, http.StatusInternalServerError, map[string]string{"error": "server_error"})
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, map[string]any{
		"access_token": raw, "token_type": "Bearer",
		"expires_in": int(iss.TokenLifetime.Seconds()), "scope": req.Scope,
	})
}

func (iss *Issuer) authenticate(r *http.Request) (TokenRequest, error) {
	if err := r.ParseForm(); err != nil {
		return TokenRequest{}, errors.New("invalid_request")
	}
	req := TokenRequest{AuthMethod: "client_secret_basic", Scope: r.PostForm.Get("scope"),
		Audience: firstNonEmpty(r.PostForm.Get("audience"), r.PostForm.Get("resource"))}
	id, secret, ok := r.BasicAuth()
	if !ok {
		req.AuthMethod = "client_secret_post"
		id, secret = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	}
	req.ClientID = id
	if want, known := iss.clients[id]; !known || want != secret || secret == "" {
		return req, errors.New("invalid_client")
	}
	return req, nil
}

func (iss *Issuer) sign(req TokenRequest) (string, error) {
	now := time.Now()
	jti := make([]byte, 16)
	_, _ = rand.Read(jti)
	claims := map[string]any{
		"iss": iss.URL, "sub": req.ClientID, "client_id": req.ClientID,
		"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(iss.TokenLifetime).Unix(),
		"jti": hex.EncodeToString(jti),
	}
	if req.Audience != "" {
		claims["aud"] = req.Audience
	}
	if scope := strings.TrimSpace(req.Scope); scope != "" {
		claims["scope"] = scope
	}
	return jwt.Signed(iss.signer).Claims(claims).Serialize()
}

func firstNonEmpty(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
