package inbound

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/prometheus/client_golang/prometheus"
)

// Identity is a verified caller, as the app is told about it.
type Identity struct {
	Subject  string
	Issuer   string
	ClientID string
	Scopes   []string
	Audience []string
	Expiry   time.Time
	// Claims is the token's verified JSON payload, for rules that read
	// claims beyond the ones above.
	Claims []byte
	// CertThumbprint is the cnf.x5t#S256 of a certificate-bound token.
	CertThumbprint string
	// headers are the X-Auth-* values, built once per verified token
	// rather than per request: a cached identity serves many requests.
	headers identityHeaders
	// introspected is set when the authorization server vouched for the
	// token, which then needs no second introspection.
	introspected bool
}

// VerifierOptions configure a Verifier.
type VerifierOptions struct {
	// KeySets holds one key set per trusted issuer.
	KeySets []*KeySet
	// Audiences: a token's aud must hold at least one.
	Audiences []string
	// Algorithms allowed for signatures; "none" and HMAC must not be here.
	Algorithms []string
	// ClockSkew is the leeway on exp, nbf and iat.
	ClockSkew time.Duration
	// CacheSize bounds the verified-token cache; 0 turns it off.
	CacheSize int
	// Introspector, when set, checks tokens that are not JWTs (RFC 7662).
	Introspector *Introspector
	// IntrospectAll also introspects JWTs after their local checks, so that
	// a revoked token is refused before it expires.
	IntrospectAll bool
	// CacheHits and CacheMisses count cache lookups; nil for none.
	CacheHits, CacheMisses prometheus.Counter
	Now                    func() time.Time
}

// Verifier checks JWT access tokens from a set of trusted issuers.
type Verifier struct {
	issuers   map[string]*trustedIssuer
	audiences []string
	algs      map[string]bool
	skew      time.Duration
	now       func() time.Time
	cache     *tokenCache
	intro     *Introspector
	introAll  bool
	hits      prometheus.Counter
	misses    prometheus.Counter
}

type trustedIssuer struct {
	keys *KeySet
	oidc *oidc.IDTokenVerifier
}

// NewVerifier returns a Verifier over opts.KeySets.
func NewVerifier(opts VerifierOptions) (*Verifier, error) {
	if len(opts.KeySets) == 0 || len(opts.Audiences) == 0 || len(opts.Algorithms) == 0 {
		return nil, errors.New("inbound: a verifier needs key sets, audiences and algorithms")
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	v := &Verifier{
		issuers:   map[string]*trustedIssuer{},
		audiences: opts.Audiences,
		algs:      map[string]bool{},
		skew:      opts.ClockSkew,
		now:       opts.Now,
		cache:     newTokenCache(opts.CacheSize),
		intro:     opts.Introspector,
		introAll:  opts.IntrospectAll && opts.Introspector != nil,
		hits:      orDiscardCounter(opts.CacheHits),
		misses:    orDiscardCounter(opts.CacheMisses),
	}
	for _, alg := range opts.Algorithms {
		if alg == "none" || strings.HasPrefix(alg, "HS") {
			return nil, fmt.Errorf("inbound: algorithm %q must never be accepted", alg)
		}
		v.algs[alg] = true
	}
	for _, ks := range opts.KeySets {
		v.issuers[ks.Issuer()] = &trustedIssuer{
			keys: ks,
			// Expiry and audience are checked here, with leeway and
			// several audiences, which go-oidc does not offer.
			oidc: oidc.NewVerifier(ks.Issuer(), ks, &oidc.Config{
				SupportedSigningAlgs: opts.Algorithms,
				SkipClientIDCheck:    true,
				SkipExpiryCheck:      true,
			}),
		}
	}
	return v, nil
}

// Verify checks raw, a compact JWS, and returns the caller's identity. A
// refusal is a *Rejection; ErrKeysNotLoaded means the token's issuer has
// no keys yet and the request should be retried later.
func (v *Verifier) Verify(ctx context.Context, raw string) (*Identity, error) {
	id, err := v.verifyCached(ctx, raw)
	if err != nil || !v.introAll || id.introspected {
		return id, err
	}
	if err := v.checkActive(ctx, raw); err != nil {
		return nil, err
	}
	return id, nil
}

func (v *Verifier) verifyCached(ctx context.Context, raw string) (*Identity, error) {
	if v.cache == nil {
		return v.verify(ctx, raw)
	}
	if e := v.cache.get(raw, v.now()); e != nil {
		v.hits.Inc()
		if err := v.checkClaims(e.claims); err != nil {
			return nil, err
		}
		return e.identity, nil
	}
	v.misses.Inc()
	return v.verify(ctx, raw)
}

func (v *Verifier) verify(ctx context.Context, raw string) (*Identity, error) {
	hdr, c, payload, err := parseUnverified(raw)
	if err != nil {
		if v.intro != nil {
			return v.verifyOpaque(ctx, raw)
		}
		return nil, reject(ReasonMalformed, "%v", err)
	}
	if !v.algs[hdr.Alg] {
		return nil, reject(ReasonDisallowedAlgorithm, "alg %q", hdr.Alg)
	}
	iss, ok := v.issuers[c.Issuer]
	if !ok {
		return nil, reject(ReasonWrongIssuer, "iss %q", c.Issuer)
	}
	if err := iss.keys.Ready(); err != nil {
		return nil, err
	}
	generation := iss.keys.Generation()
	if err := iss.verifySignature(ctx, raw); err != nil {
		return nil, err
	}
	if err := v.checkClaims(c); err != nil {
		return nil, err
	}
	id := &Identity{
		Subject:  c.Subject,
		Issuer:   c.Issuer,
		ClientID: c.clientID(),
		Scopes:   c.scopes(),
		Audience: c.Audience,
		Expiry:   c.Expiry.Time,
		Claims:   payload,

		CertThumbprint: c.certThumbprint(),
	}
	id.headers = newIdentityHeaders(id)
	if v.cache != nil {
		v.cache.put(raw, &cacheEntry{identity: id, claims: c, keys: iss.keys, generation: generation,
			until: c.Expiry.Add(v.skew)}, v.now())
	}
	return id, nil
}

func (iss *trustedIssuer) verifySignature(ctx context.Context, raw string) error {
	var sigErr error
	_, err := iss.oidc.Verify(context.WithValue(ctx, sigErrKey{}, &sigErr), raw)
	switch {
	case err == nil:
		return nil
	case errors.Is(sigErr, ErrUnknownKey):
		return reject(ReasonUnknownKey, "%v", sigErr)
	case errors.Is(sigErr, ErrKeysNotLoaded):
		return ErrKeysNotLoaded
	case sigErr != nil:
		return reject(ReasonBadSignature, "%v", sigErr)
	default:
		return reject(ReasonMalformed, "%v", err)
	}
}

// verifyOpaque checks a token that is not a JWT by asking the
// authorization server, then applies the same checks as to a JWT.
func (v *Verifier) verifyOpaque(ctx context.Context, raw string) (*Identity, error) {
	a, err := v.intro.introspect(ctx, raw)
	if err != nil {
		return nil, err
	}
	if !a.Active {
		return nil, reject(ReasonInactive, "introspection: not active")
	}
	if a.Issuer != "" {
		if _, ok := v.issuers[a.Issuer]; !ok {
			return nil, reject(ReasonWrongIssuer, "iss %q", a.Issuer)
		}
	}
	c := a.claims
	if c.Expiry == nil {
		// RFC 7662 makes exp optional; the answer's cache TTL bounds it.
		c.Expiry = &numericDate{Time: a.until}
	}
	if err := v.checkClaims(&c); err != nil {
		return nil, err
	}
	id := &Identity{
		Subject: c.Subject, Issuer: c.Issuer, ClientID: c.clientID(), Scopes: c.scopes(),
		Audience: c.Audience, Expiry: c.Expiry.Time, Claims: a.raw, introspected: true,
		CertThumbprint: c.certThumbprint(),
	}
	id.headers = newIdentityHeaders(id)
	return id, nil
}

// checkActive asks the authorization server whether a locally valid JWT
// is still active, so that revocation takes effect before expiry.
func (v *Verifier) checkActive(ctx context.Context, raw string) error {
	a, err := v.intro.introspect(ctx, raw)
	if err != nil {
		return err
	}
	if !a.Active {
		return reject(ReasonInactive, "introspection: revoked")
	}
	return nil
}

// checkClaims checks time and audience. The claims were decoded before
// the signature was checked, from the very bytes it covers.
func (v *Verifier) checkClaims(c *claims) error {
	now := v.now()
	switch {
	case c.Expiry == nil:
		return reject(ReasonMalformed, "no exp claim")
	case now.After(c.Expiry.Add(v.skew)):
		return reject(ReasonExpired, "expired at %s", c.Expiry.UTC().Format(time.RFC3339))
	case c.NotBefore != nil && now.Add(v.skew).Before(c.NotBefore.Time):
		return reject(ReasonNotYetValid, "nbf %s", c.NotBefore.UTC().Format(time.RFC3339))
	case c.IssuedAt != nil && now.Add(v.skew).Before(c.IssuedAt.Time):
		return reject(ReasonNotYetValid, "iat %s is in the future", c.IssuedAt.UTC().Format(time.RFC3339))
	}
	for _, aud := range c.Audience {
		if slices.Contains(v.audiences, aud) {
			return nil
		}
	}
	return reject(ReasonWrongAudience, "aud %q, want one of %q", []string(c.Audience), v.audiences)
}

// Ready reports the issuers whose keys are not loaded yet.
func (v *Verifier) Ready() map[string]error {
	out := map[string]error{}
	for name, iss := range v.issuers {
		if err := iss.keys.Ready(); err != nil {
			out[name] = err
		}
	}
	return out
}

func orDiscardCounter(c prometheus.Counter) prometheus.Counter {
	if c == nil {
		return prometheus.NewCounter(prometheus.CounterOpts{Name: "discarded"})
	}
	return c
}
