package inbound_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/authsidecar/authsidecar/inbound"
	"github.com/authsidecar/authsidecar/internal/clock"
	"github.com/authsidecar/authsidecar/internal/idptest"
)

// newClock is a virtual clock reading the real time now, as the tokens
// idptest signs are dated by it.
func newClock() *clock.Fake { return clock.NewFake(time.Now()) }

func TestForgedKidsCauseAtMostOneJWKSFetchPerCooldown(t *testing.T) {
	clk := newClock()
	f := newFixture(t, fixtureOptions{clock: clk})
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
	f := newFixture(t, fixtureOptions{clock: clk})
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
	if err := f.in.LoadKeys(context.Background()); err != nil {
		t.Fatal(err)
	}
	if resp, _ := f.do(t, "/", bearer(f.token(t, nil))); resp.StatusCode != 401 {
		t.Errorf("token under a withdrawn key: %d, want 401", resp.StatusCode)
	}
}

func TestFailingIdentityProviderKeepsLoadedKeys(t *testing.T) {
	clk := newClock()
	f := newFixture(t, fixtureOptions{clock: clk})
	f.idp.SetFailing(true)
	if err := f.in.LoadKeys(context.Background()); err == nil {
		t.Fatal("refresh against a failing IdP succeeded")
	}
	clk.Advance(time.Hour)
	// An unknown kid tries a refresh too; it fails and must change nothing.
	f.do(t, "/", bearer(idptest.Sign(t, idptest.NewECKey(t, "unknown"), f.idp.Claims(audience, nil))))
	if resp, body := f.do(t, "/", bearer(f.token(t, nil))); resp.StatusCode != 200 {
		t.Fatalf("cached key during the outage: %d %s, want 200", resp.StatusCode, body)
	}
	if err := f.ready(); err != nil {
		t.Errorf("ready = %v during the outage, want nil", err)
	}
}

func TestSlowIdentityProviderDoesNotStallRequestsWithKnownKeys(t *testing.T) {
	clk := newClock()
	f := newFixture(t, fixtureOptions{clock: clk})
	clk.Advance(time.Hour)
	arrived, release := f.idp.HoldJWKS()
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
	defer func() { release(); <-slow }()
	<-arrived // the unknown kid's refresh is held at the IdP
	start := time.Now()
	if resp, _ := f.do(t, "/", bearer(f.token(t, nil))); resp.StatusCode != 200 {
		t.Fatalf("status %d, want 200", resp.StatusCode)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("a known key waited %s for the held refresh", d)
	}
}

func TestRunRetriesUntilTheIssuerAppears(t *testing.T) {
	clk := newClock()
	armed := make(chan time.Duration, 10)
	clk.OnAfter(func(d time.Duration) { armed <- d })
	f := newFixture(t, fixtureOptions{clock: clk, skipWarmUp: true})
	f.idp.SetFailing(true)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { f.in.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	if d := <-armed; d > 2*time.Second {
		t.Fatalf("first retry after %s, want about 1s", d)
	}
	if f.ready() == nil {
		t.Fatal("ready while the issuer fails")
	}
	f.idp.SetFailing(false)
	clk.Advance(2 * time.Second)
	if d := <-armed; d < time.Minute {
		t.Fatalf("after the issuer came back the next fetch is in %s, want the refresh interval", d)
	}
	if err := f.ready(); err != nil {
		t.Errorf("ready = %v after the retry, want nil", err)
	}
}

func TestJWKSDropsSymmetricAndEncryptionKeys(t *testing.T) {
	// A JWKS is public: an "oct" key in it would let anyone sign.
	f := newFixture(t, fixtureOptions{skipWarmUp: true})
	f.idp.SetJWKS(`{"keys":[{"kty":"oct","kid":"k","k":"c2VjcmV0"},{"kty":"EC","use":"enc","kid":"e","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]}`)
	if err := f.in.LoadKeys(context.Background()); err == nil {
		t.Fatal("a JWKS with no usable signing key was accepted")
	}
}

func TestJWKSKeepsEachKeyThatCanVerifyAndIgnoresTheRest(t *testing.T) {
	f := newFixture(t, fixtureOptions{skipWarmUp: true})
	short, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	shortKey := idptest.Key{ID: "short", Alg: jose.RS256, Private: short}
	good := idptest.NewECKey(t, "good")
	jwk := func(k jose.JSONWebKey) string {
		b, err := json.Marshal(k)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	encOps := strings.Replace(jwk(f.key.Public()), `"kid":"key-1"`, `"kid":"key-1","key_ops":["encrypt"]`, 1)
	f.idp.SetJWKS(`{"keys":[` + strings.Join([]string{
		`{"kty":"OKP","crv":"X25519","x":"hSDwCYkwp1R0i33ctD73Wg2_Og0mOBr066SpjqqbTmo","kid":"x25519"}`,
		`{"kty":"AKP-NEW","kid":"future","pub":"AAAA"}`,
		`{}`,
		jwk(shortKey.Public()),
		encOps,
		jwk(good.Public()),
	}, ",") + `]}`)
	if err := f.in.LoadKeys(context.Background()); err != nil {
		t.Fatalf("a JWKS with one good key among keys the sidecar cannot use: %v", err)
	}
	for _, tc := range []struct {
		name   string
		key    idptest.Key
		status int
	}{
		{"the good key", good, 200},
		{"an RSA key of 1024 bits", shortKey, 401},
		{"a key whose key_ops lack verify", f.key, 401},
	} {
		if resp, body := f.do(t, "/", bearer(idptest.Sign(t, tc.key, f.idp.Claims(audience, nil)))); resp.StatusCode != tc.status {
			t.Errorf("%s: status %d %s, want %d", tc.name, resp.StatusCode, body, tc.status)
		}
	}
}
