package inbound

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	jose "github.com/go-jose/go-jose/v4"

	"github.com/authsidecar/authsidecar/discovery"
)

// Errors a KeySet reports, told apart by the verifier to name the reason
// for a refusal.
var (
	ErrUnknownKey    = errors.New("inbound: no key matches the token's kid")
	ErrBadSignature  = errors.New("inbound: signature does not verify")
	ErrKeysNotLoaded = errors.New("inbound: issuer keys not loaded yet")
)

// UnknownKidCooldown is the least time between two JWKS fetches triggered by
// tokens with an unknown kid, so that forged kids cannot flood the issuer.
const UnknownKidCooldown = 10 * time.Second

// KeySetOptions configure a KeySet.
type KeySetOptions struct {
	Issuer string
	// JWKSURL is used as is when set; otherwise it comes from discovery.
	JWKSURL string
	// Algorithms the tokens may be signed with.
	Algorithms []jose.SignatureAlgorithm
	Client     *http.Client
	// RefreshInterval is how often keys are fetched while all goes well.
	RefreshInterval time.Duration
	// OnFetch is told the result of every JWKS fetch, for metrics.
	OnFetch func(err error)
	Logger  *slog.Logger
	Now     func() time.Time
}

// KeySet holds one issuer's public keys. It implements oidc.KeySet.
//
// Reads are lock-free. Keys are replaced only by a successful fetch: an
// unreachable or failing issuer never drops keys already loaded.
type KeySet struct {
	opts    KeySetOptions
	keys    atomic.Pointer[keyIndex]
	jwksURL atomic.Pointer[string]
	// generation counts changes of the key set, so that tokens verified
	// under keys since withdrawn are not taken from the token cache.
	generation atomic.Uint64

	mu        sync.Mutex
	inflight  chan struct{} // closed when the running fetch ends
	lastFetch time.Time
}

var _ oidc.KeySet = (*KeySet)(nil)

type keyIndex struct {
	byKID  map[string][]jose.JSONWebKey
	all    []jose.JSONWebKey
	source []byte // the JWKS document, to tell a change from a repeat
}

// NewKeySet returns a KeySet with no keys; Run loads them.
func NewKeySet(opts KeySetOptions) *KeySet {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.RefreshInterval <= 0 {
		opts.RefreshInterval = 10 * time.Minute
	}
	ks := &KeySet{opts: opts}
	if opts.JWKSURL != "" {
		ks.jwksURL.Store(&opts.JWKSURL)
	}
	return ks
}

// Issuer returns the issuer whose keys these are.
func (ks *KeySet) Issuer() string { return ks.opts.Issuer }

// Ready reports whether keys have been loaded.
func (ks *KeySet) Ready() error {
	if ks.keys.Load() == nil {
		return ErrKeysNotLoaded
	}
	return nil
}

// Run loads the keys, retrying with backoff until it succeeds, then
// refreshes them every RefreshInterval until ctx ends.
func (ks *KeySet) Run(ctx context.Context) {
	retry := time.Second
	for {
		wait := ks.opts.RefreshInterval
		switch err := ks.Refresh(ctx); {
		case err == nil:
			retry = time.Second
		case ks.keys.Load() == nil:
			wait = jitter(retry)
			retry = min(2*retry, 30*time.Second)
		default:
			// Keys are loaded and still used; try again sooner than usual
			// so that a rotation during the outage is not missed for long.
			wait = jitter(min(wait, time.Minute))
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

// Refresh fetches the key set now, or joins a fetch already running.
func (ks *KeySet) Refresh(ctx context.Context) error {
	ks.mu.Lock()
	ch, err := ks.startFetchLocked()
	ks.mu.Unlock()
	return ks.wait(ctx, ch, err)
}

// refreshUnknownKid fetches the key set for a token whose kid is unknown,
// unless a fetch happened less than UnknownKidCooldown ago. A fetch already
// running is joined rather than repeated.
func (ks *KeySet) refreshUnknownKid(ctx context.Context) {
	ks.mu.Lock()
	if ks.inflight == nil && ks.opts.Now().Sub(ks.lastFetch) < UnknownKidCooldown {
		ks.mu.Unlock()
		return
	}
	ch, err := ks.startFetchLocked()
	ks.mu.Unlock()
	_ = ks.wait(ctx, ch, err)
}

type fetchResult struct{ err error }

// startFetchLocked starts a fetch unless one is running; either way it
// returns the channel that is closed when the fetch ends.
func (ks *KeySet) startFetchLocked() (chan struct{}, *fetchResult) {
	if ks.inflight != nil {
		return ks.inflight, nil
	}
	ch := make(chan struct{})
	res := &fetchResult{}
	ks.inflight = ch
	ks.lastFetch = ks.opts.Now()
	go func() {
		// Detached from any caller: one impatient request must not cancel
		// the fetch the others are waiting for.
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		res.err = ks.fetch(ctx)
		ks.mu.Lock()
		ks.inflight = nil
		ks.mu.Unlock()
		close(ch)
	}()
	return ch, res
}

func (ks *KeySet) wait(ctx context.Context, ch chan struct{}, res *fetchResult) error {
	select {
	case <-ch:
		if res != nil {
			return res.err
		}
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (ks *KeySet) fetch(ctx context.Context) error {
	err := ks.fetchOnce(ctx)
	if ks.opts.OnFetch != nil {
		ks.opts.OnFetch(err)
	}
	if err != nil {
		ks.opts.Logger.Warn("jwks fetch failed; keeping the keys already loaded",
			"issuer", ks.opts.Issuer, "keys_loaded", ks.keys.Load() != nil, "error", err.Error())
		return err
	}
	ks.opts.Logger.Debug("jwks fetched", "issuer", ks.opts.Issuer, "keys", len(ks.keys.Load().all))
	return nil
}

func (ks *KeySet) fetchOnce(ctx context.Context) error {
	u := ks.jwksURL.Load()
	if u == nil {
		md, err := discovery.Fetch(ctx, ks.opts.Client, ks.opts.Issuer)
		if err != nil {
			return err
		}
		if md.JWKSURI == "" {
			return fmt.Errorf("inbound: issuer %q metadata has no jwks_uri", ks.opts.Issuer)
		}
		u = &md.JWKSURI
		ks.jwksURL.Store(u)
	}
	body, err := discovery.Get(ctx, ks.opts.Client, *u)
	if err != nil {
		return err
	}
	if old := ks.keys.Load(); old != nil && bytes.Equal(old.source, body) {
		return nil
	}
	idx, err := parseJWKS(body)
	if err != nil {
		return fmt.Errorf("inbound: %s: %w", *u, err)
	}
	ks.keys.Store(idx)
	ks.generation.Add(1)
	return nil
}

// Generation changes whenever the key set does.
func (ks *KeySet) Generation() uint64 { return ks.generation.Load() }

// parseJWKS keeps the public signing keys of a JWKS document. Symmetric
// keys are dropped: a JWKS is public, so an HMAC key in it is known to all.
func parseJWKS(body []byte) (*keyIndex, error) {
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(body, &set); err != nil {
		return nil, fmt.Errorf("bad JWKS: %w", err)
	}
	idx := &keyIndex{byKID: map[string][]jose.JSONWebKey{}, source: body}
	for _, k := range set.Keys {
		if k.Use != "" && k.Use != "sig" {
			continue
		}
		if _, symmetric := k.Key.([]byte); symmetric || !k.Valid() {
			continue
		}
		k = k.Public()
		idx.all = append(idx.all, k)
		idx.byKID[k.KeyID] = append(idx.byKID[k.KeyID], k)
	}
	if len(idx.all) == 0 {
		return nil, errors.New("JWKS holds no usable signing key")
	}
	return idx, nil
}

// VerifySignature implements oidc.KeySet: it returns the payload of jwt if
// one of the issuer's keys signed it. A kid not seen before triggers a
// refresh, subject to UnknownKidCooldown.
func (ks *KeySet) VerifySignature(ctx context.Context, jwt string) ([]byte, error) {
	jws, err := jose.ParseSignedCompact(jwt, ks.opts.Algorithms)
	if err != nil {
		return nil, fmt.Errorf("inbound: malformed jwt: %w", err)
	}
	if len(jws.Signatures) != 1 {
		return nil, errors.New("inbound: want exactly one signature")
	}
	hdr := jws.Signatures[0].Header
	payload, err := ks.verifyWith(ks.keys.Load(), jws, hdr)
	if errors.Is(err, ErrUnknownKey) {
		ks.refreshUnknownKid(ctx)
		payload, err = ks.verifyWith(ks.keys.Load(), jws, hdr)
	}
	if err != nil {
		reportSignatureError(ctx, err)
	}
	return payload, err
}

func (ks *KeySet) verifyWith(idx *keyIndex, jws *jose.JSONWebSignature, hdr jose.Header) ([]byte, error) {
	if idx == nil {
		return nil, ErrKeysNotLoaded
	}
	candidates := idx.all
	if hdr.KeyID != "" {
		candidates = idx.byKID[hdr.KeyID]
	}
	if len(candidates) == 0 {
		return nil, ErrUnknownKey
	}
	for _, k := range candidates {
		if k.Algorithm != "" && k.Algorithm != hdr.Algorithm {
			continue
		}
		if payload, err := jws.Verify(k); err == nil {
			return payload, nil
		}
	}
	return nil, ErrBadSignature
}

// sigErrKey carries a *error through go-oidc's verifier, which flattens
// the KeySet's error into text, so the verifier can still tell an unknown
// key from a bad signature.
type sigErrKey struct{}

func reportSignatureError(ctx context.Context, err error) {
	if p, ok := ctx.Value(sigErrKey{}).(*error); ok {
		*p = err
	}
}

func jitter(d time.Duration) time.Duration {
	return d - d/5 + time.Duration(rand.Int64N(int64(d/5)*2+1))
}
