package inbound_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/authsidecar/authsidecar/internal/handoff"
)

// TestTheAppGetsAHandleNeverTheToken: with token exchange on, each
// verified caller's token is kept and the app gets its handle in
// X-Auth-Context; a caller's own X-Auth-Context never reaches the app.
func TestTheAppGetsAHandleNeverTheToken(t *testing.T) {
	store := handoff.New(100)
	f := newFixture(t, fixtureOptions{handoff: store, publicPaths: []string{"/health"}})
	alice, bob := f.token(t, map[string]any{"sub": "alice"}), f.token(t, map[string]any{"sub": "bob"})
	spoofed := http.Header{handoff.Header: {store.Handle(bob)}}
	for _, tc := range []struct {
		name   string
		path   string
		token  string
		handle string // what the app must see; "" for none
	}{
		{"alice", "/orders", alice, store.Handle(alice)},
		{"bob", "/orders", bob, store.Handle(bob)},
		{"alice on a public path", "/health", alice, store.Handle(alice)},
		{"nobody on a public path", "/health", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := spoofed.Clone()
			if tc.token != "" {
				h.Set("Authorization", "Bearer "+tc.token)
			}
			before := len(f.app.requests())
			if resp, body := f.do(t, tc.path, h); resp.StatusCode != 200 {
				t.Fatalf("%d %s", resp.StatusCode, body)
			}
			seen := f.app.requests()[before]
			if got := seen.Header.Values(handoff.Header); (tc.handle == "" && len(got) != 0) || (tc.handle != "" && (len(got) != 1 || got[0] != tc.handle)) {
				t.Errorf("the app saw %s %q, want %q", handoff.Header, got, tc.handle)
			}
			if tc.token == "" {
				return
			}
			if tok, ok := store.Token(tc.handle, time.Now()); !ok || tok != tc.token {
				t.Errorf("the handle stands for %q %v, want the caller's token", tok, ok)
			}
		})
	}
	// A refused caller's copy goes nowhere, and makes no handle.
	if resp, _ := f.do(t, "/orders", spoofed); resp.StatusCode != 401 {
		t.Errorf("without a token: %d", resp.StatusCode)
	}
	if _, ok := store.Token(store.Handle("not a token"), time.Now()); ok {
		t.Error("a token never verified has a handle")
	}
	// The handle lasts as long as the token (and the clock skew), no more.
	if _, ok := store.Token(store.Handle(alice), time.Now().Add(2*time.Hour)); ok {
		t.Error("alice's handle outlives her token")
	}
}

func TestWithoutTokenExchangeThereIsNoHandle(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	f.do(t, "/", bearer(f.token(t, nil)))
	if got := f.app.requests()[0].Header.Get(handoff.Header); got != "" {
		t.Errorf("the app saw %s %q with token exchange off", handoff.Header, got)
	}
}
