package soak

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// Audience, scope and client of the soak's tokens.
const (
	Audience     = "soak"
	Scope        = "orders:read"
	ClientID     = "soak-client"
	ClientSecret = "soak-secret"
	// TokenLifetime is the lifetime of the tokens the provider issues:
	// long enough that the 20% left at refresh outlasts the outage.
	TokenLifetime = 5 * time.Minute
)

type retiredKey struct {
	k  *key
	at time.Time
}

type key struct {
	id   string
	priv *ecdsa.PrivateKey
	sign jose.Signer
}

func newKey(id string) (*key, error) {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: priv, KeyID: id}},
		(&jose.SignerOptions{}).WithType("at+jwt"))
	if err != nil {
		return nil, err
	}
	return &key{id: id, priv: priv, sign: s}, nil
}

// IDP is the soak's identity provider, on 127.0.0.1: discovery, a JWKS
// and a client-credentials token endpoint. It rotates its signing key as
// providers do: a key is published one rotation before it signs, and stays
// published for a token lifetime after it stopped signing, so that every
// token it signed can be verified until it expires. While down, every
// endpoint answers 503.
type IDP struct {
	URL string
	srv *http.Server

	mu               sync.Mutex
	cur, next        *key
	retired          []retiredKey
	generation       int
	down             bool
	TokenRequests    atomic.Int64
	JWKSRequests     atomic.Int64
	RefusedWhileDown atomic.Int64
}

// StartIDP serves a provider on 127.0.0.1.
func StartIDP() (*IDP, error) {
	p := &IDP{}
	var err error
	if p.cur, err = newKey("soak-1"); err != nil {
		return nil, err
	}
	if p.next, err = newKey("soak-2"); err != nil {
		return nil, err
	}
	p.generation = 2
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p.URL = "http://" + ln.Addr().String()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", p.up(p.discovery))
	mux.HandleFunc("GET /jwks", p.up(p.jwks))
	mux.HandleFunc("POST /token", p.up(p.token))
	p.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = p.srv.Serve(ln) }()
	return p, nil
}

// Close stops the provider.
func (p *IDP) Close() error { return p.srv.Close() }

// SetDown turns the outage on or off.
func (p *IDP) SetDown(down bool) {
	p.mu.Lock()
	p.down = down
	p.mu.Unlock()
}

// Rotate makes the next key sign, publishes a new next one, and keeps the
// one that signed until now published.
func (p *IDP) Rotate() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.generation++
	next, err := newKey(fmt.Sprintf("soak-%d", p.generation))
	if err != nil {
		return err
	}
	now := time.Now()
	kept := []retiredKey{{p.cur, now}}
	for _, r := range p.retired {
		if now.Sub(r.at) < TokenLifetime+time.Minute {
			kept = append(kept, r)
		}
	}
	p.retired, p.cur, p.next = kept, p.next, next
	return nil
}

func (p *IDP) up(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		down := p.down
		p.mu.Unlock()
		if down {
			p.RefusedWhileDown.Add(1)
			http.Error(w, `{"error":"temporarily_unavailable"}`, http.StatusServiceUnavailable)
			return
		}
		h(w, r)
	}
}

func (p *IDP) discovery(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{
		"issuer": p.URL, "jwks_uri": p.URL + "/jwks", "token_endpoint": p.URL + "/token",
		"id_token_signing_alg_values_supported": []string{"ES256"},
	})
}

func (p *IDP) jwks(w http.ResponseWriter, _ *http.Request) {
	p.JWKSRequests.Add(1)
	p.mu.Lock()
	var set jose.JSONWebKeySet
	keys := []*key{p.cur, p.next}
	for _, r := range p.retired {
		keys = append(keys, r.k)
	}
	for _, k := range keys {
		set.Keys = append(set.Keys, jose.JSONWebKey{Key: &k.priv.PublicKey, KeyID: k.id, Algorithm: "ES256", Use: "sig"})
	}
	p.mu.Unlock()
	writeJSON(w, http.StatusOK, set)
}

func (p *IDP) token(w http.ResponseWriter, r *http.Request) {
	p.TokenRequests.Add(1)
	id, secret, ok := r.BasicAuth()
	if !ok || id != ClientID || secret != ClientSecret || r.ParseForm() != nil {
		writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "invalid_client"})
		return
	}
	tok, err := p.Sign(p.Claims(time.Now(), r.PostForm.Get("scope"), TokenLifetime))
	if err != nil {
		writeJSON(w, http.StatusInternalServerError, map[string]string{"error": "server_error"})
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, map[string]any{"access_token": tok, "token_type": "Bearer",
		"expires_in": int(TokenLifetime.Seconds()), "scope": r.PostForm.Get("scope")})
}

// Sign signs claims with the current key.
func (p *IDP) Sign(claims map[string]any) (string, error) {
	p.mu.Lock()
	k := p.cur
	p.mu.Unlock()
	return jwt.Signed(k.sign).Claims(claims).Serialize()
}

// KeyID is the current key's kid.
func (p *IDP) KeyID() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cur.id
}

var jti atomic.Int64

// Claims are the claims of a token of the provider for the soak's
// audience, issued at now.
func (p *IDP) Claims(now time.Time, scope string, life time.Duration) map[string]any {
	return map[string]any{
		"iss": p.URL, "sub": ClientID, "client_id": ClientID, "aud": Audience, "scope": scope,
		"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(life).Unix(),
		"jti": fmt.Sprintf("soak-%d", jti.Add(1)),
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
