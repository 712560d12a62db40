package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// IDPConfig describes the identity provider a test runs. The zero value is
// a provider with fresh keys and no clients.
type IDPConfig struct {
	Clients []IDPClient
	// Resources maps an RFC 8707 resource indicator to its settings. A token
	// request without resource (and no DefaultResource) gets an opaque token
	// without audience.
	Resources       map[string]IDPResource
	DefaultResource string
	// AccessTokenTTL is the lifetime of tokens whose resource sets none
	// (default 300 s). Whole seconds.
	AccessTokenTTL time.Duration
	// Keys are the provider's signing keys; for each key type the first one
	// signs. Nil means one RSA and one EC P-256 key, generated.
	Keys []*IDPKey
	// DPoP configures RFC 9449 sender-constrained tokens; the zero value is
	// oidc-provider's default (on, no nonces, replayed proofs refused).
	DPoP IDPDPoP
}

// IDPDPoP configures oidc-provider's features.dPoP. With DPoP on, any
// client's token request that carries a valid DPoP proof gets a DPoP-bound
// token (token_type DPoP, cnf.jkt); IDPClient.DPoPBound makes the proof
// mandatory for one client.
type IDPDPoP struct {
	// Disabled turns DPoP off: proofs are ignored, tokens are Bearer.
	Disabled bool
	// Nonces makes the provider hand out DPoP-Nonce values (a DPoP-Nonce
	// header on every answer to a request with a proof) and accept proofs
	// carrying them. Without it a proof with a nonce is refused.
	Nonces bool
	// RequireNonce refuses proofs without a valid nonce with 400
	// use_dpop_nonce and a DPoP-Nonce header to retry with. Implies Nonces.
	RequireNonce bool
	// AllowReplay accepts a proof jti more than once.
	AllowReplay bool
}

// IDPClient is an OAuth client registered with the provider.
type IDPClient struct {
	ID     string
	Secret string
	// AuthMethod is client_secret_basic (default), client_secret_post or
	// private_key_jwt.
	AuthMethod string
	// Scopes the client may request; none means any scope the provider
	// knows (oidc-provider treats a client without "scope" so).
	Scopes []string
	// JWKS holds the keys whose public halves verify the client's
	// private_key_jwt assertions.
	JWKS []*IDPKey
	// DPoPBound (dpop_bound_access_tokens) refuses the client's token
	// requests without a DPoP proof: 400 invalid_grant.
	DPoPBound bool
	// TokenExchange lets the client use the RFC 8693 token exchange grant
	// (urn:ietf:params:oauth:grant-type:token-exchange) besides client
	// credentials.
	TokenExchange bool
}

// IDPResource is a resource server, named by its resource indicator.
type IDPResource struct {
	// Scopes the resource accepts: a token carries the requested scopes that
	// are both allowed for the client and listed here.
	Scopes []string
	// Alg signs its JWT access tokens: RS256 (default) or ES256 (any alg
	// one of the provider's keys supports).
	Alg string
	// KID pins the signing key; empty means the first key fit for Alg.
	KID string
	// TTL of its access tokens, whole seconds; zero means AccessTokenTTL.
	TTL time.Duration
	// Opaque issues opaque (introspectable, revocable) tokens, not JWTs.
	Opaque bool
	// Audience overrides the aud claim, which is the indicator by default.
	Audience string
}

// IDP is a running node-oidc-provider.
type IDP struct {
	Issuer string // http://127.0.0.1:PORT, stable across restarts
	Port   int

	dir    string
	logs   *logBuffer // stdout and stderr of every run
	client *http.Client

	mu     sync.Mutex
	cfg    IDPConfig
	proc   *proc
	stdin  interface{ Close() error }
	starts int
}

// startIDP starts an identity provider with cfg on a free port. It is
// stopped when the test ends; its output is logged if the test failed.
func startIDP(t testing.TB, cfg IDPConfig) *IDP {
	t.Helper()
	if cfg.Keys == nil {
		cfg.Keys = newKeySet(t)
	}
	i := &IDP{
		cfg:    cfg,
		dir:    t.TempDir(),
		logs:   &logBuffer{},
		client: &http.Client{Timeout: 10 * time.Second},
	}
	t.Cleanup(func() {
		i.Stop()
		if t.Failed() {
			t.Logf("identity provider %s output:\n%s", i.Issuer, i.logs.String())
		}
	})
	i.Start(t)
	return i
}

// Keys returns the current signing keys.
func (i *IDP) Keys() []*IDPKey {
	i.mu.Lock()
	defer i.mu.Unlock()
	return append([]*IDPKey(nil), i.cfg.Keys...)
}

// Logs returns everything the provider printed so far.
func (i *IDP) Logs() string { return i.logs.String() }

// Restart stops the provider and starts it again on the same port with
// keys as its signing keys (the first key of each type signs; nil means a
// fresh RSA and EC key). In-memory state (opaque tokens, revocations) is
// lost.
func (i *IDP) Restart(t testing.TB, keys []*IDPKey) {
	t.Helper()
	if keys == nil {
		keys = newKeySet(t)
	}
	i.Stop()
	i.mu.Lock()
	i.cfg.Keys = keys
	i.mu.Unlock()
	i.Start(t)
}

// Stop stops the provider (SIGTERM, then kill after 5 s). Start brings it
// back on the same port, so the issuer URL stays valid; nothing holds the
// port meanwhile.
func (i *IDP) Stop() {
	i.mu.Lock()
	p, stdin := i.proc, i.stdin
	i.proc, i.stdin = nil, nil
	i.mu.Unlock()
	if p == nil {
		return
	}
	p.stop(5 * time.Second)
	_ = stdin.Close()
}

// Start starts the provider: on a free port the first time, on the same
// port after Stop. A port still held by the previous run is retried for a
// few seconds.
func (i *IDP) Start(t testing.TB) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		err := i.launch(t)
		if err == nil {
			return
		}
		if i.Port == 0 || !strings.Contains(err.Error(), "EADDRINUSE") || time.Now().After(deadline) {
			t.Fatalf("starting identity provider: %v\noutput:\n%s", err, i.logs.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (i *IDP) launch(t testing.TB) error {
	t.Helper()
	i.mu.Lock()
	i.starts++
	cfgPath := filepath.Join(i.dir, fmt.Sprintf("idp-config-%d.json", i.starts))
	err := writeIDPConfig(cfgPath, i.cfg)
	i.mu.Unlock()
	if err != nil {
		t.Fatalf("writing identity provider config: %v", err)
	}
	fmt.Fprintf(i.logs, "--- idp start #%d, port %d ---\n", i.starts, i.Port)

	ready := make(chan string, 1)
	cmd := exec.Command("node", "server.mjs")
	cmd.Dir = idpDir
	cmd.Env = minimalEnv(map[string]string{
		"IDP_PORT":        fmt.Sprint(i.Port),
		"IDP_CONFIG":      cfgPath,
		"IDP_WATCH_STDIN": "1",
	})
	cmd.Stdout = &lineWriter{onLine: func(line string) {
		fmt.Fprintln(i.logs, line)
		var msg struct {
			Issuer string `json:"issuer"`
		}
		if json.Unmarshal([]byte(line), &msg) == nil && msg.Issuer != "" {
			select {
			case ready <- msg.Issuer:
			default:
			}
		}
	}}
	cmd.Stderr = i.logs
	// The provider exits when this pipe closes, so it cannot outlive the
	// test process even when that is killed.
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return err
	}
	p, err := startProc(cmd)
	if err != nil {
		return err
	}
	return i.awaitReady(p, stdin, ready)
}

func (i *IDP) awaitReady(p *proc, stdin interface{ Close() error }, ready <-chan string) error {
	timer := time.NewTimer(20 * time.Second)
	defer timer.Stop()
	select {
	case issuer := <-ready:
		u, err := url.Parse(issuer)
		if err != nil {
			p.stop(time.Second)
			return fmt.Errorf("bad issuer %q: %w", issuer, err)
		}
		port, err := strconv.Atoi(u.Port())
		if err != nil {
			p.stop(time.Second)
			return fmt.Errorf("bad issuer %q: %w", issuer, err)
		}
		if i.Port != 0 && port != i.Port {
			p.stop(time.Second)
			return fmt.Errorf("restarted on port %d, want %d", port, i.Port)
		}
		i.mu.Lock()
		i.Issuer, i.Port, i.proc, i.stdin = issuer, port, p, stdin
		i.mu.Unlock()
		return nil
	case <-p.done:
		_ = stdin.Close()
		logs := i.logs.String()
		if strings.Contains(logs[strings.LastIndex(logs, "--- idp start"):], "EADDRINUSE") {
			return fmt.Errorf("port %d: EADDRINUSE", i.Port)
		}
		return fmt.Errorf("node exited with code %d before it was ready", p.code)
	case <-timer.C:
		p.stop(time.Second)
		_ = stdin.Close()
		return fmt.Errorf("not ready within 20s")
	}
}

// writeIDPConfig writes cfg in the JSON form server.mjs reads.
func writeIDPConfig(path string, cfg IDPConfig) error {
	type resource struct {
		Scope    string `json:"scope"`
		Alg      string `json:"alg,omitempty"`
		KID      string `json:"kid,omitempty"`
		TTL      int    `json:"ttl,omitempty"`
		Format   string `json:"format"`
		Audience string `json:"audience,omitempty"`
	}
	type dpop struct {
		Enabled      bool `json:"enabled"`
		Nonces       bool `json:"nonces"`
		RequireNonce bool `json:"requireNonce"`
		AllowReplay  bool `json:"allowReplay"`
	}
	out := struct {
		Keys            []jose.JSONWebKey   `json:"keys"`
		Clients         []map[string]any    `json:"clients"`
		Resources       map[string]resource `json:"resources"`
		DefaultResource string              `json:"defaultResource,omitempty"`
		AccessTokenTTL  int                 `json:"accessTokenTTL,omitempty"`
		DPoP            dpop                `json:"dpop"`
	}{
		Clients:         []map[string]any{},
		Resources:       map[string]resource{},
		DefaultResource: cfg.DefaultResource,
		AccessTokenTTL:  int(cfg.AccessTokenTTL / time.Second),
		DPoP: dpop{
			Enabled: !cfg.DPoP.Disabled, Nonces: cfg.DPoP.Nonces || cfg.DPoP.RequireNonce,
			RequireNonce: cfg.DPoP.RequireNonce, AllowReplay: cfg.DPoP.AllowReplay,
		},
	}
	for _, k := range cfg.Keys {
		out.Keys = append(out.Keys, k.PrivateJWK())
	}
	for _, c := range cfg.Clients {
		out.Clients = append(out.Clients, clientMetadata(c))
	}
	for ind, r := range cfg.Resources {
		format := "jwt"
		if r.Opaque {
			format = "opaque"
		}
		out.Resources[ind] = resource{
			Scope: strings.Join(r.Scopes, " "), Alg: r.Alg, KID: r.KID,
			TTL: int(r.TTL / time.Second), Format: format, Audience: r.Audience,
		}
	}
	b, err := json.MarshalIndent(out, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o600)
}

// clientMetadata is c as oidc-provider client metadata (RFC 7591 names).
func clientMetadata(c IDPClient) map[string]any {
	method := c.AuthMethod
	if method == "" {
		method = "client_secret_basic"
	}
	grants := []string{"client_credentials"}
	if c.TokenExchange {
		grants = append(grants, tokenExchangeGrant)
	}
	m := map[string]any{
		"client_id":                  c.ID,
		"grant_types":                grants,
		"response_types":             []string{},
		"redirect_uris":              []string{},
		"token_endpoint_auth_method": method,
	}
	if c.DPoPBound {
		m["dpop_bound_access_tokens"] = true
	}
	if len(c.Scopes) > 0 {
		m["scope"] = strings.Join(c.Scopes, " ")
	}
	if c.Secret != "" {
		m["client_secret"] = c.Secret
	}
	if len(c.JWKS) > 0 {
		keys := []jose.JSONWebKey{}
		for _, k := range c.JWKS {
			keys = append(keys, k.PublicJWK())
		}
		m["jwks"] = jose.JSONWebKeySet{Keys: keys}
	}
	return m
}
