package inbound

import (
	"context"
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/authsidecar/authsidecar/internal/clock"
	"github.com/authsidecar/authsidecar/internal/handoff"
	"github.com/authsidecar/authsidecar/internal/ttlcache"
)

// identity is a verified caller, as the app is told about it.
type identity struct {
	subject  string
	issuer   string
	clientID string
	scopes   []string
	audience []string
	expiry   time.Time
	// claims is the token's verified JSON payload, for rules that read
	// claims beyond the ones above.
	claims []byte
	// certThumbprint is the cnf.x5t#S256 of a certificate-bound token.
	certThumbprint string
	// dpopThumbprint is the cnf.jkt of a DPoP-bound token.
	dpopThumbprint string
	// headers are the X-Auth-* values, built once per verified token
	// rather than per request: a cached identity serves many requests.
	headers identityHeaders
	// introspected is set when the authorization server vouched for the
	// token, which then needs no second introspection.
	introspected bool
	// handle stands for the token in X-Auth-Context when token exchange
	// is on (see handoff).
	handle string
}

func newIdentity(c *claims, payload []byte) *identity {
	id := &identity{
		subject:        c.Subject,
		issuer:         c.Issuer,
		clientID:       c.clientID(),
		scopes:         c.scopes(),
		audience:       c.Audience,
		expiry:         c.Expiry.Time,
		claims:         payload,
		certThumbprint: c.certThumbprint(),
		dpopThumbprint: c.dpopThumbprint(),
	}
	id.headers = newIdentityHeaders(id)
	return id
}

// verifier checks JWT access tokens from a set of trusted issuers, and
// opaque ones through introspection when that is on.
type verifier struct {
	issuers   map[string]*trustedIssuer
	audiences []string
	algs      map[string]bool
	skew      time.Duration
	// handoff, when token exchange is on, keeps callers' tokens for the
	// outbound direction.
	handoff  *handoff.Store
	clock    clock.Clock
	cache    *ttlcache.Cache[*cacheEntry]
	intro    *introspector // nil: off
	introAll bool
	// requireATJWT accepts only typ at+jwt (RFC 9068).
	requireATJWT bool
	hits         prometheus.Counter
	misses       prometheus.Counter
}

type trustedIssuer struct {
	keys *keySet
	oidc *oidc.IDTokenVerifier
}

// cacheEntry is a token whose signature has been verified. What depends on
// the clock or the configuration (expiry, audience, scopes, client) is
// still checked on every request.
type cacheEntry struct {
	identity   *identity
	claims     *claims
	keys       *keySet
	generation uint64
}

func (v *verifier) addIssuer(ks *keySet, algorithms []string) {
	v.issuers[ks.issuerURL()] = &trustedIssuer{
		keys: ks,
		// Expiry and audience are checked here, with leeway and several
		// audiences, which go-oidc does not offer.
		oidc: oidc.NewVerifier(ks.issuerURL(), ks, &oidc.Config{
			SupportedSigningAlgs: algorithms,
			SkipClientIDCheck:    true,
			SkipExpiryCheck:      true,
		}),
	}
}

// verify checks raw, a compact JWS or an opaque token, and returns the
// caller's identity. A refusal is a *rejection; errKeysNotLoaded and
// errIntrospectionUnavailable mean the token cannot be judged now.
func (v *verifier) verify(ctx context.Context, raw string) (*identity, error) {
	id, err := v.verifyCached(ctx, raw)
	if err != nil || !v.introAll || id.introspected {
		return id, err
	}
	if err := v.checkActive(ctx, raw); err != nil {
		return nil, err
	}
	return id, nil
}

func (v *verifier) verifyCached(ctx context.Context, raw string) (*identity, error) {
	if v.cache == nil {
		return v.verifyJWT(ctx, raw)
	}
	if e, ok := v.cache.Get(raw, v.clock.Now()); ok && e.generation == e.keys.generation.Load() {
		v.hits.Inc()
		if err := v.checkClaims(e.claims); err != nil {
			return nil, err
		}
		return e.identity, nil
	}
	v.misses.Inc()
	return v.verifyJWT(ctx, raw)
}

func (v *verifier) verifyJWT(ctx context.Context, raw string) (*identity, error) {
	hdr, c, payload, err := parseUnverified(raw)
	if err != nil {
		if v.intro != nil {
			return v.verifyOpaque(ctx, raw)
		}
		return nil, reject(reasonMalformed, "%v", err)
	}
	if !v.algs[hdr.Alg] {
		return nil, reject(reasonDisallowedAlgorithm, "alg %q", hdr.Alg)
	}
	if err := v.checkType(hdr.Typ, c.Typ); err != nil {
		return nil, err
	}
	iss, ok := v.issuers[c.Issuer]
	if !ok {
		return nil, reject(reasonWrongIssuer, "iss %q", c.Issuer)
	}
	if err := iss.keys.awaitKeys(ctx); err != nil {
		return nil, err
	}
	generation := iss.keys.generation.Load()
	if err := iss.verifySignature(ctx, raw); err != nil {
		return nil, err
	}
	if err := v.checkClaims(c); err != nil {
		return nil, err
	}
	id := newIdentity(c, payload)
	if err := checkCarriable(id); err != nil {
		return nil, err
	}
	v.attachHandle(id, raw)
	v.cache.Put(raw, &cacheEntry{identity: id, claims: c, keys: iss.keys, generation: generation},
		c.Expiry.Add(v.skew), v.clock.Now())
	return id, nil
}

func (iss *trustedIssuer) verifySignature(ctx context.Context, raw string) error {
	var sigErr error
	_, err := iss.oidc.Verify(context.WithValue(ctx, sigErrKey{}, &sigErr), raw)
	switch {
	case err == nil:
		return nil
	case errors.Is(sigErr, errUnknownKey):
		return reject(reasonUnknownKey, "%v", sigErr)
	case errors.Is(sigErr, errKeysNotLoaded):
		return errKeysNotLoaded
	case sigErr != nil:
		return reject(reasonBadSignature, "%v", sigErr)
	default:
		return reject(reasonMalformed, "%v", err)
	}
}

// verifyOpaque checks a token that is not a JWT by asking the
// authorization server, then applies the same checks as to a JWT.
func (v *verifier) verifyOpaque(ctx context.Context, raw string) (*identity, error) {
	a, err := v.intro.introspect(ctx, raw)
	if err != nil {
		return nil, err
	}
	if !a.Active {
		return nil, reject(reasonInactive, "introspection: not active")
	}
	if a.refreshToken() {
		return nil, reject(reasonWrongTokenType, "introspection: a refresh token")
	}
	if a.Issuer != "" {
		if _, ok := v.issuers[a.Issuer]; !ok {
			return nil, reject(reasonWrongIssuer, "iss %q", a.Issuer)
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
	id := newIdentity(&c, a.raw)
	if err := checkCarriable(id); err != nil {
		return nil, err
	}
	id.introspected = true
	v.attachHandle(id, raw)
	return id, nil
}

// checkCarriable refuses an identity whose X-Auth-* values no header can
// carry: a control character other than tab (RFC 9110 section 5.5). Sent
// on, it would fail every request at the transport to the app, a 502
// counted against the app for what is a malformed token.
func checkCarriable(id *identity) error {
	for _, v := range append([]string{id.subject, id.clientID}, id.scopes...) {
		for i := 0; i < len(v); i++ {
			if b := v[i]; b < 0x20 && b != '\t' || b == 0x7f {
				return reject(reasonMalformed, "a control character in an identity claim")
			}
		}
	}
	return nil
}

// attachHandle gives id the handle of its token, when token exchange is on.
func (v *verifier) attachHandle(id *identity, raw string) {
	if v.handoff != nil {
		id.handle = v.handoff.Handle(raw)
	}
}

// checkActive asks the authorization server whether a locally valid JWT
// is still active, so that revocation takes effect before expiry.
func (v *verifier) checkActive(ctx context.Context, raw string) error {
	a, err := v.intro.introspect(ctx, raw)
	if err != nil {
		return err
	}
	if !a.Active {
		return reject(reasonInactive, "introspection: revoked")
	}
	if a.refreshToken() {
		return reject(reasonWrongTokenType, "introspection: a refresh token")
	}
	return nil
}

// checkType refuses a JWT that says it is no access token. RFC 9068 names
// access tokens "at+jwt"; many providers write "JWT" (or its full media
// type, "application/jwt", which RFC 7515 4.1.9 makes the same) or
// nothing, and so do their ID tokens, which typ cannot tell apart:
// REQUIRED_SCOPES or ALLOWED_CLIENTS is the defence there. A logout
// token (OIDC Back-Channel Logout, "logout+jwt") or any other declared
// type is refused, and so are Keycloak's ID and refresh tokens, which say
// so in the payload.
func (v *verifier) checkType(header, payload string) error {
	switch {
	case strings.EqualFold(header, "at+jwt"), strings.EqualFold(header, "application/at+jwt"):
	case v.requireATJWT:
		return reject(reasonWrongTokenType, "typ %q, want at+jwt", header)
	case header != "" && !strings.EqualFold(header, "JWT") && !strings.EqualFold(header, "application/jwt"):
		return reject(reasonWrongTokenType, "typ %q", header)
	}
	if strings.EqualFold(payload, "ID") || strings.EqualFold(payload, "Refresh") {
		return reject(reasonWrongTokenType, "payload typ %q", payload)
	}
	return nil
}

// checkClaims checks time and audience. The claims were decoded before
// the signature was checked, from the very bytes it covers.
func (v *verifier) checkClaims(c *claims) error {
	now := v.clock.Now()
	switch {
	case c.Expiry == nil:
		return reject(reasonMalformed, "no exp claim")
	case now.After(c.Expiry.Add(v.skew)):
		return reject(reasonExpired, "expired at %s", c.Expiry.UTC().Format(time.RFC3339))
	case c.NotBefore != nil && now.Add(v.skew).Before(c.NotBefore.Time):
		return reject(reasonNotYetValid, "nbf %s", c.NotBefore.UTC().Format(time.RFC3339))
	case c.IssuedAt != nil && now.Add(v.skew).Before(c.IssuedAt.Time):
		return reject(reasonNotYetValid, "iat %s is in the future", c.IssuedAt.UTC().Format(time.RFC3339))
	}
	for _, aud := range c.Audience {
		if slices.Contains(v.audiences, aud) {
			return nil
		}
	}
	return reject(reasonWrongAudience, "aud %q, want one of %q", []string(c.Audience), v.audiences)
}
