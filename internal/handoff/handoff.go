// Package handoff carries a caller's token from the inbound direction to
// the outbound one, for token exchange (RFC 8693), without the token
// itself ever reaching the app: inbound gives the app an opaque handle in
// X-Auth-Context, the app passes the handle on in its outbound call, and
// a token-exchange route turns it back into the token. One Store, made by
// the program, serves both directions.
package handoff

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"time"

	"github.com/authsidecar/authsidecar/internal/ttlcache"
)

// Header carries the handle to the app and back.
const Header = "X-Auth-Context"

// Store maps handles to the verified tokens they stand for, each until
// its token's expiry. It is bounded: a handle evicted from a full store
// is answered as unknown (the call gets 401 no_caller_token), never as
// another caller's token.
type Store struct {
	key    [32]byte
	tokens *ttlcache.Cache[string]
}

// New returns a store for size tokens (see ttlcache.Bound for the most
// it holds).
func New(size int) *Store {
	s := &Store{tokens: ttlcache.New[string](max(size, 1))}
	if _, err := rand.Read(s.key[:]); err != nil {
		panic(err) // crypto/rand does not fail on supported systems
	}
	return s
}

// Handle returns token's handle: an HMAC of the token under a key random
// per process, so that it tells nothing about the token, cannot be made
// up by a caller, and is the same for every request with the same token.
func (s *Store) Handle(token string) string {
	m := hmac.New(sha256.New, s.key[:])
	m.Write([]byte(token))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil)[:18])
}

// Keep remembers token under handle (from Handle) until until.
func (s *Store) Keep(handle, token string, until, now time.Time) {
	if got, ok := s.tokens.Get(handle, now); ok && got == token {
		return
	}
	s.tokens.Put(handle, token, until, now)
}

// Token returns the token handle stands for, if it is known and its token
// has not expired.
func (s *Store) Token(handle string, now time.Time) (string, bool) {
	if handle == "" {
		return "", false
	}
	return s.tokens.Get(handle, now)
}
