package soak

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/authsidecar/authsidecar/internal/grpctest"
)

// Kinds of request the soak sends.
const (
	KindOutbound     = "outbound"      // GET through A: A's token, B verifies it
	KindInbound      = "inbound"       // GET to B with a valid token
	KindGRPCOutbound = "grpc-outbound" // unary gRPC through A (authority "app")
	KindGRPCInbound  = "grpc-inbound"  // unary gRPC to B with a valid token
	KindExpired      = "expired"       // GET to B, token expired an hour ago
	KindForged       = "forged"        // GET to B, signed by another key under the current kid (a kid never published while the provider is down)
	KindNoScope      = "no-scope"      // GET to B, token without the required scope
)

// mix is the round robin of kinds: valid traffic is 7 in 10.
var mix = []string{KindOutbound, KindInbound, KindExpired, KindGRPCOutbound, KindOutbound,
	KindForged, KindInbound, KindNoScope, KindGRPCInbound, KindOutbound}

// Valid reports whether a kind's requests must all succeed.
func Valid(kind string) bool {
	switch kind {
	case KindOutbound, KindInbound, KindGRPCOutbound, KindGRPCInbound:
		return true
	}
	return false
}

// want is the HTTP status each invalid kind must get.
var want = map[string]int{KindExpired: 401, KindForged: 401, KindNoScope: 403}

// tokens are the tokens the soak sends straight to B, signed anew at each
// rotation with the provider's current key (few of them, so that B's
// verified-token cache stays small and does not pass for growth).
type tokens struct {
	valid, expired, forged, noScope []string
	// unknownKid is forged under a kid the provider never had: sent
	// instead of forged while the provider is down, it makes B try a JWKS
	// fetch that fails, and B must keep its keys.
	unknownKid string
}

func signTokens(p *IDP, attacker *ecdsa.PrivateKey, life time.Duration) (*tokens, error) {
	forger, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: attacker, KeyID: p.KeyID()}},
		(&jose.SignerOptions{}).WithType("at+jwt"))
	if err != nil {
		return nil, err
	}
	t := &tokens{}
	now := time.Now()
	stranger, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: attacker, KeyID: "not-" + p.KeyID()}},
		(&jose.SignerOptions{}).WithType("at+jwt"))
	if err != nil {
		return nil, err
	}
	if t.unknownKid, err = jwt.Signed(stranger).Claims(p.Claims(now, Scope, life)).Serialize(); err != nil {
		return nil, err
	}
	for range 4 {
		for _, add := range []struct {
			dst  *[]string
			sign func() (string, error)
		}{
			{&t.valid, func() (string, error) { return p.Sign(p.Claims(now, Scope, life)) }},
			{&t.noScope, func() (string, error) { return p.Sign(p.Claims(now, "other", life)) }},
			{&t.expired, func() (string, error) { return p.Sign(p.Claims(now.Add(-2*time.Hour), Scope, time.Hour)) }},
			{&t.forged, func() (string, error) { return jwt.Signed(forger).Claims(p.Claims(now, Scope, life)).Serialize() }},
		} {
			tok, err := add.sign()
			if err != nil {
				return nil, err
			}
			*add.dst = append(*add.dst, tok)
		}
	}
	return t, nil
}

func newAttackerKey() (*ecdsa.PrivateKey, error) {
	return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
}

// client sends the soak's requests.
type client struct {
	outboundURL, inboundURL string
	http                    *http.Client
	grpcA, grpcB            *grpctest.Client
	conns                   []*grpc.ClientConn
	toks                    atomic.Pointer[tokens]
	n                       atomic.Uint64
	down                    atomic.Bool // the provider is down
}

func newClient(outboundAddr, inboundAddr string, workers int) (*client, error) {
	c := &client{
		outboundURL: "http://" + outboundAddr + "/app/orders/42",
		inboundURL:  "http://" + inboundAddr + "/orders/42",
		http: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
			Proxy: nil, MaxIdleConnsPerHost: workers, MaxConnsPerHost: workers,
		}},
	}
	a, err := grpc.NewClient(outboundAddr, grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithAuthority("app"))
	if err != nil {
		return nil, err
	}
	b, err := grpc.NewClient(inboundAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		a.Close()
		return nil, err
	}
	c.conns = []*grpc.ClientConn{a, b}
	c.grpcA, c.grpcB = grpctest.NewClient(a), grpctest.NewClient(b)
	return c, nil
}

func (c *client) close() {
	for _, cc := range c.conns {
		_ = cc.Close()
	}
	c.http.CloseIdleConnections()
}

func pick(v []string, i uint64) string { return v[i%uint64(len(v))] }

// do sends one request of kind and returns nil if it got the answer it
// must get.
func (c *client) do(ctx context.Context, kind string) error {
	i := c.n.Add(1)
	t := c.toks.Load()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	switch kind {
	case KindOutbound:
		return c.get(ctx, c.outboundURL, "", 200)
	case KindInbound:
		return c.get(ctx, c.inboundURL, pick(t.valid, i), 200)
	case KindExpired:
		return c.get(ctx, c.inboundURL, pick(t.expired, i), want[kind])
	case KindForged:
		if c.down.Load() {
			return c.get(ctx, c.inboundURL, t.unknownKid, want[kind])
		}
		return c.get(ctx, c.inboundURL, pick(t.forged, i), want[kind])
	case KindNoScope:
		return c.get(ctx, c.inboundURL, pick(t.noScope, i), want[kind])
	case KindGRPCOutbound:
		return c.unary(ctx, c.grpcA)
	case KindGRPCInbound:
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+pick(t.valid, i))
		return c.unary(ctx, c.grpcB)
	}
	return fmt.Errorf("unknown kind %q", kind)
}

func (c *client) get(ctx context.Context, url, token string, status int) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != status {
		return fmt.Errorf("status %d, want %d: %s %s", resp.StatusCode, status,
			resp.Header.Get("X-Authsidecar-Error"), strings.TrimSpace(string(body)))
	}
	if status == 200 && !strings.HasPrefix(string(body), "ok "+ClientID) {
		return fmt.Errorf("the app answered %q, want the caller's client id", body)
	}
	return nil
}

func (c *client) unary(ctx context.Context, gc *grpctest.Client) error {
	seen, err := gc.Unary(ctx, "soak")
	if err != nil {
		return err
	}
	if seen.ClientID != ClientID || seen.Authorization != "" {
		return fmt.Errorf("the app saw client %q and authorization %q, want %q and none", seen.ClientID, seen.Authorization, ClientID)
	}
	return nil
}

// Count is what one kind of request got.
type Count struct {
	Sent, Failed int64
	// FirstFailure is the first failure's error.
	FirstFailure string
}

type counts struct {
	mu sync.Mutex
	m  map[string]*Count
}

func (c *counts) add(kind string, err error, at time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	k := c.m[kind]
	if k == nil {
		k = &Count{}
		c.m[kind] = k
	}
	k.Sent++
	if err != nil {
		k.Failed++
		if k.FirstFailure == "" {
			k.FirstFailure = fmt.Sprintf("at %s: %v", at.Round(time.Millisecond), err)
		}
	}
}
