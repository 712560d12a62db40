package inbound

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	jose "github.com/go-jose/go-jose/v4"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/authsidecar/authsidecar/discovery"
	"github.com/authsidecar/authsidecar/internal/clock"
	"github.com/authsidecar/authsidecar/internal/flight"
	"github.com/authsidecar/authsidecar/internal/redact"
	"github.com/authsidecar/authsidecar/internal/tracing"
)

// Errors a key set reports, told apart by the verifier to name the reason
// for a refusal.
var (
	errUnknownKey    = errors.New("inbound: no key matches the token's kid")
	errBadSignature  = errors.New("inbound: signature does not verify")
	errKeysNotLoaded = errors.New("inbound: issuer keys not loaded yet")
)

// unknownKidCooldown is the least time between two JWKS fetches triggered
// by tokens with an unknown kid, so that forged kids cannot flood the
// issuer.
const unknownKidCooldown = 10 * time.Second

// coldProbeInterval is the least time between two JWKS fetches triggered
// by requests while no keys are loaded at all: after an outage of the
// identity provider at start, the first request past its return loads the
// keys instead of waiting out the start-up backoff (up to 30 s), and a
// provider still down is asked twice a second, not once per request.
const coldProbeInterval = 500 * time.Millisecond

// jwksFetchTimeout bounds one key set download, discovery included.
const jwksFetchTimeout = 15 * time.Second

// keySet holds one issuer's public keys. It implements oidc.KeySet.
//
// Reads are lock-free. Keys are replaced only by a successful fetch: an
// unreachable or failing issuer never drops keys already loaded.
type keySet struct {
	issuer   *discovery.Issuer
	jwksURL  string // configured; "" to use discovery's
	client   *discovery.Client
	algs     []jose.SignatureAlgorithm
	interval time.Duration
	clock    clock.Clock
	log      *slog.Logger
	fetchOK  prometheus.Counter
	fetchErr prometheus.Counter

	keys atomic.Pointer[keyIndex]
	// generation counts changes of the key set, so that tokens verified
	// under keys since withdrawn are not taken from the token cache.
	generation atomic.Uint64

	// fetches holds the one fetch at a time; its result says whether it
	// fetched or found the unknown-kid cool-down still running.
	fetches flight.Group[bool]
	mu      sync.Mutex
	lastTry time.Time
	// lastErr is the last fetch's failure, for readiness to name.
	lastErr atomic.Pointer[error]
}

var _ oidc.KeySet = (*keySet)(nil)

type keyIndex struct {
	byKID  map[string][]jose.JSONWebKey
	all    []jose.JSONWebKey
	source []byte // the JWKS document, to tell a change from a repeat
}

// issuerURL is the issuer whose keys these are.
func (ks *keySet) issuerURL() string { return ks.issuer.URL() }

// ready reports whether keys have been loaded, and if not, why: the last
// fetch's error, when there was one.
func (ks *keySet) ready() error {
	if ks.keys.Load() != nil {
		return nil
	}
	if err := ks.lastErr.Load(); err != nil {
		return fmt.Errorf("%w: %w", errKeysNotLoaded, *err)
	}
	return errKeysNotLoaded
}

// awaitKeys returns nil when keys are loaded; otherwise it fetches them,
// unless a fetch was tried less than coldProbeInterval ago, and returns
// ready's error if there are still none.
func (ks *keySet) awaitKeys(ctx context.Context) error {
	if ks.keys.Load() != nil {
		return nil
	}
	ks.refreshAfter(ctx, coldProbeInterval)
	return ks.ready()
}

// run loads the keys, retrying with backoff until it succeeds, then
// refreshes them every interval until ctx ends. While no keys are loaded,
// requests fetch too: see coldProbeInterval.
//
// Sidecars start together (a rollout, a restart of every pod) and load
// their keys together; refreshed every interval from then on, they would
// ask the identity provider together once per interval forever. So the
// first refresh after the keys are loaded waits a random time between half
// and one and a half intervals, one interval on average, and every later
// one exactly one interval, keeping that phase: each sidecar asks once per
// interval, the fleet's requests spread evenly over it.
//
// A refresh that fails while keys are loaded is retried one interval
// later too: the loaded keys keep serving, a token signed by a key that
// was added meanwhile makes its own fetch (see refreshUnknownKid), and a
// fleet that retried sooner would ask a provider that is down, or
// struggling, many times per interval, then all come back at once.
func (ks *keySet) run(ctx context.Context) {
	retry := time.Second
	loaded := false // keys loaded by this loop, and its phase drawn
	for {
		wait := ks.interval
		err := ks.refresh(ctx)
		switch {
		case ks.keys.Load() == nil:
			wait = jitter(retry)
			retry = min(2*retry, 30*time.Second)
		case !loaded && err == nil:
			wait = ks.interval/2 + time.Duration(rand.Int64N(int64(ks.interval)+1))
			loaded = true
		}
		select {
		case <-ctx.Done():
			return
		case <-ks.clock.After(wait):
		}
	}
}

// refresh fetches the key set now, or joins a fetch already running.
func (ks *keySet) refresh(ctx context.Context) error {
	for {
		fetched, err := ks.fetches.Do(ctx, "", jwksFetchTimeout, func(ctx context.Context) (bool, error) {
			return true, ks.fetch(ctx)
		})
		if err != nil || fetched {
			return err
		}
		// Joined an unknown-kid check that found the cool-down running:
		// it fetched nothing, so fetch now.
	}
}

// refreshUnknownKid fetches the key set for a token whose kid is unknown,
// unless a fetch was tried less than unknownKidCooldown ago. A fetch
// already running is joined rather than repeated. The cool-down is checked
// inside the shared call, where no other fetch can start or end.
func (ks *keySet) refreshUnknownKid(ctx context.Context) { ks.refreshAfter(ctx, unknownKidCooldown) }

// refreshAfter fetches the key set unless a fetch was tried less than
// cooldown ago; see refreshUnknownKid.
func (ks *keySet) refreshAfter(ctx context.Context, cooldown time.Duration) {
	_, _ = ks.fetches.Do(ctx, "", jwksFetchTimeout, func(ctx context.Context) (bool, error) {
		ks.mu.Lock()
		recent := !ks.lastTry.IsZero() && ks.clock.Now().Sub(ks.lastTry) < cooldown
		ks.mu.Unlock()
		if recent {
			return false, nil
		}
		return true, ks.fetch(ctx)
	})
}

func (ks *keySet) fetch(ctx context.Context) error {
	ks.mu.Lock()
	ks.lastTry = ks.clock.Now()
	ks.mu.Unlock()
	err := ks.fetchOnce(ctx)
	if err != nil {
		ks.lastErr.Store(&err)
		ks.fetchErr.Inc()
		ks.log.Warn("jwks fetch failed; keeping the keys already loaded",
			"issuer", ks.issuerURL(), "keys_loaded", ks.keys.Load() != nil, "error", err.Error())
		return err
	}
	ks.fetchOK.Inc()
	ks.log.Debug("jwks fetched", "issuer", ks.issuerURL(), "keys", len(ks.keys.Load().all))
	return nil
}

func (ks *keySet) fetchOnce(ctx context.Context) error {
	u := ks.jwksURL
	if u == "" {
		md, err := ks.issuer.Metadata(ctx)
		if err != nil {
			return err
		}
		if md.JWKSURI == "" {
			return fmt.Errorf("inbound: issuer %q metadata has no jwks_uri", ks.issuerURL())
		}
		u = md.JWKSURI
	}
	body, err := ks.client.Get(tracing.WithOperation(ctx, tracing.OpJWKS), u)
	if err != nil {
		return err
	}
	if old := ks.keys.Load(); old != nil && bytes.Equal(old.source, body) {
		return nil
	}
	idx, err := parseJWKS(body)
	if err != nil {
		return fmt.Errorf("inbound: %s: %w", redact.URL(u), err)
	}
	ks.keys.Store(idx)
	ks.generation.Add(1)
	return nil
}

// parseJWKS keeps the public signing keys of a JWKS document that are fit
// to verify with. It drops:
//   - symmetric keys: a JWKS is public, so an HMAC key in it is known to all;
//   - keys for another use: "use" other than "sig", or "key_ops" (RFC 7517
//     4.3) without "verify";
//   - RSA keys under 2048 bits (RFC 7518 3.3), which can be factored;
//   - keys whose "alg" names no asymmetric signature algorithm (an
//     encryption key such as RSA-OAEP), which would only make an issuer
//     look ready whose keys can verify nothing;
//   - keys that do not parse, or that go-jose finds invalid.
//
// A key that does not parse does not spoil the others.
func parseJWKS(body []byte) (*keyIndex, error) {
	var set struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(body, &set); err != nil {
		return nil, fmt.Errorf("bad JWKS: %w", err)
	}
	idx := &keyIndex{byKID: map[string][]jose.JSONWebKey{}, source: body}
	for _, raw := range set.Keys {
		k, ok := usableKey(raw)
		if !ok {
			continue
		}
		idx.all = append(idx.all, k)
		idx.byKID[k.KeyID] = append(idx.byKID[k.KeyID], k)
	}
	if len(idx.all) == 0 {
		return nil, errNoUsableKey
	}
	return idx, nil
}

var errNoUsableKey = errors.New("the JWKS holds no usable signing key (an asymmetric key for use sig, RSA of 2048 bits or more)")

// minRSABits is RFC 7518 3.3's floor for RS256 and its kin.
const minRSABits = 2048

func usableKey(raw json.RawMessage) (jose.JSONWebKey, bool) {
	var ops struct {
		KeyOps *[]string `json:"key_ops"`
	}
	var k jose.JSONWebKey
	if json.Unmarshal(raw, &ops) != nil || k.UnmarshalJSON(raw) != nil {
		return k, false
	}
	if ops.KeyOps != nil && !slices.Contains(*ops.KeyOps, "verify") || k.Use != "" && k.Use != "sig" ||
		k.Algorithm != "" && !signatureAlg(k.Algorithm) {
		return k, false
	}
	if _, symmetric := k.Key.([]byte); symmetric || !k.Valid() {
		return k, false
	}
	k = k.Public()
	if rsaKey, ok := k.Key.(*rsa.PublicKey); ok && rsaKey.N.BitLen() < minRSABits {
		return k, false
	}
	return k, true
}

// signatureAlg reports whether a key's alg is an asymmetric JWS algorithm.
func signatureAlg(alg string) bool {
	switch jose.SignatureAlgorithm(alg) {
	case jose.RS256, jose.RS384, jose.RS512, jose.PS256, jose.PS384, jose.PS512, jose.ES256, jose.ES384, jose.ES512, jose.EdDSA:
		return true
	}
	return false
}

// VerifySignature implements oidc.KeySet: it returns the payload of jwt if
// one of the issuer's keys signed it. A kid not seen before triggers a
// refresh, subject to unknownKidCooldown.
func (ks *keySet) VerifySignature(ctx context.Context, jwt string) ([]byte, error) {
	jws, err := jose.ParseSignedCompact(jwt, ks.algs)
	if err != nil {
		return nil, fmt.Errorf("inbound: malformed jwt: %w", err)
	}
	if len(jws.Signatures) != 1 {
		return nil, errors.New("inbound: want exactly one signature")
	}
	hdr := jws.Signatures[0].Header
	payload, err := verifyWith(ks.keys.Load(), jws, hdr)
	if errors.Is(err, errUnknownKey) {
		ks.refreshUnknownKid(ctx)
		payload, err = verifyWith(ks.keys.Load(), jws, hdr)
	}
	if err != nil {
		reportSignatureError(ctx, err)
	}
	return payload, err
}

// maxKeysWithoutKID is how many keys a token without a kid is tried
// against: the first that fit its algorithm. A token cannot make the
// sidecar try every key of a large set (each try an RSA or ECDSA
// verification), and identity providers that leave kid out publish one
// key or very few.
const maxKeysWithoutKID = 4

func verifyWith(idx *keyIndex, jws *jose.JSONWebSignature, hdr jose.Header) ([]byte, error) {
	if idx == nil {
		return nil, errKeysNotLoaded
	}
	candidates := idx.all
	if hdr.KeyID != "" {
		candidates = idx.byKID[hdr.KeyID]
	}
	if len(candidates) == 0 {
		return nil, errUnknownKey
	}
	tried := 0
	for _, k := range candidates {
		if !keyFits(k, hdr.Algorithm) {
			continue
		}
		if hdr.KeyID == "" {
			if tried == maxKeysWithoutKID {
				break
			}
			tried++
		}
		if payload, err := jws.Verify(k); err == nil {
			return payload, nil
		}
	}
	return nil, errBadSignature
}

// keyFits reports whether k can verify a signature made with alg: its own
// alg, when it names one, is alg, and its type is the one alg uses.
func keyFits(k jose.JSONWebKey, alg string) bool {
	if k.Algorithm != "" && k.Algorithm != alg {
		return false
	}
	switch key := k.Key.(type) {
	case *rsa.PublicKey:
		return strings.HasPrefix(alg, "RS") || strings.HasPrefix(alg, "PS")
	case *ecdsa.PublicKey:
		switch alg {
		case "ES256":
			return key.Curve == elliptic.P256()
		case "ES384":
			return key.Curve == elliptic.P384()
		case "ES512":
			return key.Curve == elliptic.P521()
		}
		return false
	case ed25519.PublicKey:
		return alg == "EdDSA"
	}
	return false
}

// sigErrKey carries a *error through go-oidc's verifier, which flattens
// the key set's error into text, so the verifier can still tell an unknown
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
