package handoff

import (
	"fmt"
	"testing"
	"time"
)

func TestAHandleStandsForItsTokenUntilItExpires(t *testing.T) {
	s := New(10)
	now := time.Unix(1_700_000_000, 0)
	h := s.Handle("token-a")
	if h != s.Handle("token-a") {
		t.Fatal("the same token got two handles")
	}
	if h == s.Handle("token-b") {
		t.Fatal("two tokens got the same handle")
	}
	if len(h) != 24 {
		t.Errorf("handle %q: %d characters, want 24 (18 bytes of HMAC)", h, len(h))
	}
	s.Keep(h, "token-a", now.Add(time.Minute), now)
	if got, ok := s.Token(h, now.Add(59*time.Second)); !ok || got != "token-a" {
		t.Errorf("before expiry: %q %v, want token-a", got, ok)
	}
	if got, ok := s.Token(h, now.Add(time.Minute+time.Second)); ok {
		t.Errorf("after expiry: %q, want none", got)
	}
}

func TestHandlesACallerCannotMakeUp(t *testing.T) {
	s := New(10)
	now := time.Unix(1_700_000_000, 0)
	s.Keep(s.Handle("token-a"), "token-a", now.Add(time.Hour), now)
	for _, h := range []string{"", "x", s.Handle("token-a") + "x", New(10).Handle("token-a")} {
		if got, ok := s.Token(h, now); ok {
			t.Errorf("handle %q: %q, want unknown", h, got)
		}
	}
}

// TestAFullStoreForgetsRatherThanConfuses: past its bound a store drops
// handles; a dropped handle is unknown, never another caller's token.
func TestAFullStoreForgetsRatherThanConfuses(t *testing.T) {
	s := New(16)
	now := time.Unix(1_700_000_000, 0)
	const n = 1000
	for i := range n {
		tok := fmt.Sprintf("token-%d", i)
		s.Keep(s.Handle(tok), tok, now.Add(time.Hour), now)
	}
	known := 0
	for i := range n {
		tok := fmt.Sprintf("token-%d", i)
		got, ok := s.Token(s.Handle(tok), now)
		if !ok {
			continue
		}
		known++
		if got != tok {
			t.Fatalf("handle of %s gave %s", tok, got)
		}
	}
	if known == 0 || known > n/2 {
		t.Errorf("%d of %d handles known in a store for 16, want some, and far fewer than all", known, n)
	}
}
