package inbound

import (
	"strconv"
	"testing"
	"time"
)

func TestTheReplayCacheRemembersEachProofWhileItIsAcceptable(t *testing.T) {
	c := newReplayCache(100, 10)
	now := time.Unix(1_800_000_000, 0)
	if got := c.add("key", "j1", now.Add(30*time.Second), now); got != replayNew {
		t.Fatalf("a first proof: %d", got)
	}
	if got := c.add("key", "j1", now.Add(30*time.Second), now.Add(29*time.Second)); got != replaySeen {
		t.Errorf("the same proof within its lifetime: %d, want seen", got)
	}
	if got := c.add("other-key", "j1", now.Add(30*time.Second), now); got != replayNew {
		t.Errorf("another key's proof with the same jti: %d, want new", got)
	}
	if got := c.add("key", "j1", now.Add(61*time.Second), now.Add(31*time.Second)); got != replayNew {
		t.Errorf("the same jti once the first could no longer be accepted: %d, want new", got)
	}
	// Both first proofs expired (at +30 s) and left; the new one stays.
	if len(c.until) != 1 || len(c.expiry) != 1 || len(c.perKey) != 1 || c.perKey[c.hash("key", "")] != 1 {
		t.Errorf("%d proofs, %d timers, %d keys, want the expired ones gone", len(c.until), len(c.expiry), len(c.perKey))
	}
}

// TestOneKeyCannotFillTheReplayCacheForEveryone: a client that sends as
// many proofs as it can (each kept as long as it can be, iat in the
// future) is refused once it holds its share; other clients are not.
func TestOneKeyCannotFillTheReplayCacheForEveryone(t *testing.T) {
	c := newReplayCache(dpopReplayEntries, dpopReplayPerKey)
	now := time.Unix(1_800_000_000, 0)
	until := now.Add(60 * time.Second)
	accepted := 0
	for i := range dpopReplayEntries {
		if c.add("hostile-key", strconv.Itoa(i), until, now) == replayNew {
			accepted++
		}
	}
	if accepted != dpopReplayPerKey {
		t.Errorf("the hostile key got %d proofs accepted, want its share, %d", accepted, dpopReplayPerKey)
	}
	for i := range 1000 {
		if got := c.add("victim-"+strconv.Itoa(i%7), "v"+strconv.Itoa(i), now.Add(30*time.Second), now); got != replayNew {
			t.Fatalf("a victim's proof %d refused: %d", i, got)
		}
	}
	// Once its proofs expire, the hostile key is let in again.
	if got := c.add("hostile-key", "late", now.Add(120*time.Second), until.Add(time.Second)); got != replayNew {
		t.Errorf("after its proofs expired: %d, want new", got)
	}
}

func BenchmarkReplayCacheAdd(b *testing.B) {
	c := newReplayCache(dpopReplayEntries, dpopReplayPerKey)
	now := time.Unix(1_800_000_000, 0)
	b.ReportAllocs()
	for i := range b.N {
		// A steady stream: each proof expires 30 s after it came, a
		// thousand a second, from 100 keys.
		at := now.Add(time.Duration(i) * time.Millisecond)
		c.add("key-"+strconv.Itoa(i%100), strconv.Itoa(i), at.Add(30*time.Second), at)
	}
}
