package loadbench

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
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// Audience is the audience of every benchmark token, and the one the
// sidecar under test accepts.
const Audience = "loadbench"

// OutboundToken is the access token the bench token endpoint hands out,
// valid for a day, so the outbound sidecar fetches it once.
const OutboundToken = "loadbench-outbound-access-token"

// Client credentials the outbound sidecar uses at the bench token endpoint.
const (
	OutboundClientID     = "loadbench-client"
	OutboundClientSecret = "loadbench-secret"
)

// Issuer is a tiny identity provider in the benchmark's own process: OIDC
// discovery and a JWKS publishing one RS256 and one ES256 key, and a
// client-credentials token endpoint for the outbound case. The sidecar
// talks to it only at start (and every JWKS refresh interval), never per
// request, so it costs nothing during the timed runs.
type Issuer struct {
	// URL is the issuer identifier and base URL.
	URL string

	rsaKey *rsa.PrivateKey
	ecKey  *ecdsa.PrivateKey
	rsSign jose.Signer
	esSign jose.Signer
	srv    *http.Server

	// TokenRequests counts requests to the token endpoint.
	TokenRequests atomic.Int64
	// JWKSRequests counts requests for the JWKS.
	JWKSRequests atomic.Int64
}

// Key ids in the JWKS.
const (
	KidRS256 = "bench-rs256"
	KidES256 = "bench-es256"
)

// StartIssuer generates the keys and serves the issuer on 127.0.0.1.
func StartIssuer() (*Issuer, error) {
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	iss := &Issuer{rsaKey: rsaKey, ecKey: ecKey}
	if iss.rsSign, err = newSigner(jose.RS256, rsaKey, KidRS256); err != nil {
		return nil, err
	}
	if iss.esSign, err = newSigner(jose.ES256, ecKey, KidES256); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	iss.URL = "http://" + ln.Addr().String()
	iss.srv = &http.Server{Handler: iss.Handler(), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = iss.srv.Serve(ln) }()
	return iss, nil
}

func newSigner(alg jose.SignatureAlgorithm, key crypto.Signer, kid string) (jose.Signer, error) {
	return jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: jose.JSONWebKey{Key: key, KeyID: kid}},
		(&jose.SignerOptions{}).WithType("at+jwt"))
}

// Close stops serving.
func (iss *Issuer) Close() error { return iss.srv.Close() }

// Handler serves discovery, the JWKS and the token endpoint.
func (iss *Issuer) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, map[string]any{
			"issuer":                                iss.URL,
			"jwks_uri":                              iss.URL + "/jwks",
			"token_endpoint":                        iss.URL + "/token",
			"grant_types_supported":                 []string{"client_credentials"},
			"id_token_signing_alg_values_supported": []string{"RS256", "ES256"},
		})
	})
	mux.HandleFunc("GET /jwks", func(w http.ResponseWriter, _ *http.Request) {
		iss.JWKSRequests.Add(1)
		writeJSON(w, jose.JSONWebKeySet{Keys: []jose.JSONWebKey{
			{Key: &iss.rsaKey.PublicKey, KeyID: KidRS256, Algorithm: string(jose.RS256), Use: "sig"},
			{Key: &iss.ecKey.PublicKey, KeyID: KidES256, Algorithm: string(jose.ES256), Use: "sig"},
		}})
	})
	mux.HandleFunc("POST /token", func(w http.ResponseWriter, r *http.Request) {
		iss.TokenRequests.Add(1)
		id, secret, ok := r.BasicAuth()
		if !ok {
			_ = r.ParseForm()
			id, secret = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
		}
		if id != OutboundClientID || secret != OutboundClientSecret {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = w.Write([]byte(`{"error":"invalid_client"}`))
			return
		}
		w.Header().Set("Cache-Control", "no-store")
		writeJSON(w, map[string]any{"access_token": OutboundToken, "token_type": "Bearer", "expires_in": 86400})
	})
	return mux
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

// claims returns the claims of the i-th benchmark token: distinct subject
// and jti, the benchmark audience, valid for two hours.
func (iss *Issuer) claims(i int, now time.Time) map[string]any {
	return map[string]any{
		"iss":       iss.URL,
		"sub":       fmt.Sprintf("caller-%d", i),
		"aud":       []string{Audience},
		"client_id": "loadbench-caller",
		"scope":     "orders:read orders:write",
		"iat":       now.Unix(),
		"nbf":       now.Unix(),
		"exp":       now.Add(2 * time.Hour).Unix(),
		"jti":       fmt.Sprintf("loadbench-%d-%d", now.UnixNano(), i),
	}
}

// SignRS256 returns n distinct RS256 tokens, signed on every CPU.
func (iss *Issuer) SignRS256(n int) ([]string, error) { return iss.sign(iss.rsSign, n) }

// SignES256 returns n distinct ES256 tokens.
func (iss *Issuer) SignES256(n int) ([]string, error) { return iss.sign(iss.esSign, n) }

func (iss *Issuer) sign(s jose.Signer, n int) ([]string, error) {
	out := make([]string, n)
	now := time.Now()
	var (
		next     atomic.Int64
		wg       sync.WaitGroup
		firstErr atomic.Pointer[error]
	)
	for range min(runtime.GOMAXPROCS(0), n) {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				tok, err := jwt.Signed(s).Claims(iss.claims(i, now)).Serialize()
				if err != nil {
					firstErr.CompareAndSwap(nil, &err)
					return
				}
				out[i] = tok
			}
		})
	}
	wg.Wait()
	if p := firstErr.Load(); p != nil {
		return nil, *p
	}
	return out, nil
}
