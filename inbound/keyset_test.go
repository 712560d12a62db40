package inbound_test

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/authsidecar/authsidecar/inbound"
	"github.com/authsidecar/authsidecar/internal/idptest"
)

// clock is a settable time source for cooldown tests.
type clock struct{ now atomic.Int64 }

func newClock() *clock {
	c := &clock{}
	c.now.Store(time.Now().UnixNano())
	return c
}
func (c *clock) Now() time.Time          { return time.Unix(0, c.now.Load()) }
func (c *clock) Advance(d time.Duration) { c.now.Add(int64(d)) }

func TestForgedKidsCauseAtMostOneJWKSFetchPerCooldown(t *testing.T) {
	clk := newClock()
	f := newFixture(t, fixtureOptions{now: clk.Now})
	clk.Advance(inbound.UnknownKidCooldown + time.Second)
	before := f.idp.JWKSHits.Load()

	var wg sync.WaitGroup
	for i := range 50 {
		forged := idptest.NewECKey(t, fmt.Sprintf("forged-%d", i))
		tok := idptest.Sign(t, forged, f.idp.Claims(audience, nil))
		wg.Go(func() {
			if resp, _ := f.do(t, "/", bearer(tok)); resp.StatusCode != 401 {
				t.Errorf("forged kid: status %d, want 401", resp.StatusCode)
			}
		})
	}
	wg.Wait()
	if got := f.idp.JWKSHits.Load() - before; got != 1 {
		t.Errorf("50 forged kids caused %d JWKS fetches, want 1", got)
	}

	clk.Advance(inbound.UnknownKidCooldown - time.Second)
	f.do(t, "/", bearer(idptest.Sign(t, idptest.NewECKey(t, "late"), f.idp.Claims(audience, nil))))
	if got := f.idp.JWKSHits.Load() - before; got != 1 {
		t.Errorf("within the cooldown: %d fetches in all, want still 1", got)
	}
	clk.Advance(2 * time.Second)
	f.do(t, "/", bearer(idptest.Sign(t, idptest.NewECKey(t, "later"), f.idp.Claims(audience, nil))))
	if got := f.idp.JWKSHits.Load() - before; got != 2 {
		t.Errorf("after the cooldown: %d fetches in all, want 2", got)
	}
}

func TestRotatedKeyIsAcceptedWithoutRestart(t *testing.T) {
	clk := newClock()
	f := newFixture(t, fixtureOptions{now: clk.Now})
	next := idptest.NewECKey(t, "key-2")
	tok := idptest.Sign(t, next, f.idp.Claims(audience, nil))

	f.idp.SetKeys(f.key, next)
	clk.Advance(inbound.UnknownKidCooldown)
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			if resp, body := f.do(t, "/", bearer(tok)); resp.StatusCode != 200 {
				t.Errorf("token under the new kid: %d %s, want 200", resp.StatusCode, body)
			}
		})
	}
	wg.Wait()
	if resp, _ := f.do(t, "/", bearer(f.token(t, nil))); resp.StatusCode != 200 {
		t.Errorf("token under the old kid, still published: %d, want 200", resp.StatusCode)
	}

	f.idp.SetKeys(next)
	if err := f.keys.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	if resp, _ := f.do(t, "/", bearer(f.token(t, nil))); resp.StatusCode != 401 {
		t.Errorf("token under a withdrawn key: %d, want 401", resp.StatusCode)
	}
}

func TestFailingIdentityProviderKeepsLoadedKeys(t *testing.T) {
	clk := newClock()
	f := newFixture(t, fixtureOptions{now: clk.Now})
	f.idp.SetFailing(true)
	if err := f.keys.Refresh(context.Background()); err == nil {
		t.Fatal("refresh against a failing IdP succeeded")
	}
	clk.Advance(time.Hour)
	// An unknown kid tries a refresh too; it fails and must change nothing.
	f.do(t, "/", bearer(idptest.Sign(t, idptest.NewECKey(t, "unknown"), f.idp.Claims(audience, nil))))
	if resp, body := f.do(t, "/", bearer(f.token(t, nil))); resp.StatusCode != 200 {
		t.Fatalf("cached key during the outage: %d %s, want 200", resp.StatusCode, body)
	}
	if err := f.keys.Ready(); err != nil {
		t.Errorf("Ready() = %v during the outage, want nil", err)
	}
}

func TestSlowIdentityProviderDoesNotStallRequestsWithKnownKeys(t *testing.T) {
	clk := newClock()
	f := newFixture(t, fixtureOptions{now: clk.Now})
	f.idp.SetDelay(2 * time.Second)
	clk.Advance(time.Hour)
	unknown := idptest.Sign(t, idptest.NewECKey(t, "unknown"), f.idp.Claims(audience, nil))
	slow := make(chan struct{})
	go func() {
		defer close(slow)
		req, _ := http.NewRequest(http.MethodGet, f.sidecar.URL, nil)
		req.Header.Set("Authorization", "Bearer "+unknown)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
		}
	}()
	defer func() { <-slow }()
	for deadline := time.Now().Add(5 * time.Second); f.idp.JWKSHits.Load() < 2; {
		if time.Now().After(deadline) {
			t.Fatal("the unknown kid did not start a refresh")
		}
		time.Sleep(5 * time.Millisecond)
	}
	start := time.Now()
	if resp, _ := f.do(t, "/", bearer(f.token(t, nil))); resp.StatusCode != 200 {
		t.Fatalf("status %d, want 200", resp.StatusCode)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("a known key waited %s for the slow refresh", d)
	}
}

func TestRunRetriesUntilTheIssuerAppears(t *testing.T) {
	key := idptest.NewRSAKey(t, "k")
	idp := idptest.New(t, key)
	idp.SetFailing(true)
	ks := inbound.NewKeySet(inbound.KeySetOptions{
		Issuer: idp.Issuer, Algorithms: []jose.SignatureAlgorithm{jose.RS256},
		Client: &http.Client{Timeout: time.Second},
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go ks.Run(ctx)
	deadline := time.Now().Add(time.Second)
	for time.Now().Before(deadline) && idp.DiscoveryHits.Load() == 0 {
		time.Sleep(10 * time.Millisecond)
	}
	if ks.Ready() == nil {
		t.Fatal("ready while the issuer fails")
	}
	idp.SetFailing(false)
	deadline = time.Now().Add(10 * time.Second)
	for ks.Ready() != nil {
		if time.Now().After(deadline) {
			t.Fatal("keys not loaded 10s after the issuer came back")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestJWKSDropsSymmetricAndEncryptionKeys(t *testing.T) {
	// A JWKS is public: an "oct" key in it would let anyone sign.
	srv := jwksServer(t, `{"keys":[{"kty":"oct","kid":"k","k":"c2VjcmV0"},{"kty":"EC","use":"enc","kid":"e","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]}`)
	ks := inbound.NewKeySet(inbound.KeySetOptions{Issuer: "x", JWKSURL: srv, Client: http.DefaultClient,
		Algorithms: []jose.SignatureAlgorithm{jose.ES256}})
	if err := ks.Refresh(context.Background()); err == nil {
		t.Fatal("a JWKS with no usable signing key was accepted")
	}
}

func jwksServer(t *testing.T, body string) string {
	idp := idptest.New(t)
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, body) })
	idp.Server.Config.Handler = mux
	return idp.Server.URL
}
