package inbound

import (
	"crypto"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"hash/maphash"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/authsidecar/authsidecar/internal/clock"
)

// reasonInvalidDPoPProof: a DPoP-bound token without a valid proof, a
// proof for an unbound token, or a bearer token where DPoP is required.
const reasonInvalidDPoPProof = "invalid_dpop_proof"

// dpopProofType is the typ of a DPoP proof's header (RFC 9449 4.2).
const dpopProofType = "dpop+jwt"

// maxJTILength bounds a proof's jti: 256 bits of randomness need 43
// characters; a much longer one is no proof anyone makes.
const maxJTILength = 256

// dpopChecker checks DPoP proofs (RFC 9449 4.3) on requests that carry
// DPoP-bound tokens.
type dpopChecker struct {
	algs []jose.SignatureAlgorithm // asymmetric only
	// algNames is algs for the DPoP challenge's algs parameter.
	algNames string
	skew     time.Duration
	clock    clock.Clock
	seen     *replayCache
	// require refuses tokens that are not DPoP-bound.
	require bool
	// trustForwarded takes the scheme and host the caller addressed from
	// X-Forwarded-Proto and X-Forwarded-Host, as set by a proxy in front.
	trustForwarded bool
}

// addressed is the URL the caller addressed, less the path: the htu a
// proof must name (RFC 9449 4.3 step 9).
type addressed struct {
	scheme, host string
}

// addressedOf is r's scheme and host as the caller addressed them; it
// reads r's X-Forwarded-* headers, so it runs before they are removed.
func (d *dpopChecker) addressedOf(r *http.Request) addressed {
	a := addressed{scheme: "http", host: r.Host}
	if r.TLS != nil {
		a.scheme = "https"
	}
	if d.trustForwarded {
		if p := firstValue(r.Header.Get("X-Forwarded-Proto")); p == "http" || p == "https" {
			a.scheme = p
		}
		if h := firstValue(r.Header.Get("X-Forwarded-Host")); h != "" {
			a.host = h
		}
	}
	return a
}

// firstValue is the first of a comma-separated header value's entries:
// the one the proxy nearest the caller set.
func firstValue(v string) string {
	if i := strings.IndexByte(v, ','); i >= 0 {
		v = v[:i]
	}
	return strings.TrimSpace(v)
}

// proofClaims are a proof's claims, read by their exact names.
type proofClaims struct {
	JTI   string          `json:"jti"`
	HTM   string          `json:"htm"`
	HTU   string          `json:"htu"`
	IAT   json.Number     `json:"iat"`
	ATH   string          `json:"ath"`
	Nonce json.RawMessage `json:"nonce"`
}

// check verifies the DPoP proof of a request whose token, raw, is bound to
// the key with thumbprint jkt, judged by path t. Every refusal tells the
// caller which check failed, in fixed words.
func (d *dpopChecker) check(r *http.Request, at addressed, t target, raw, jkt string) *rejection {
	proofs := r.Header.Values("DPoP")
	if len(proofs) != 1 {
		return dpopRefusal("the request must carry exactly one DPoP proof", "%d DPoP headers", len(proofs))
	}
	jws, err := jose.ParseSigned(proofs[0], d.algs)
	if err != nil {
		// go-jose also refuses here a jwk that holds a private key.
		return dpopRefusal("the DPoP proof is not a well-formed JWS signed with an accepted algorithm", "%v", err)
	}
	if len(jws.Signatures) != 1 {
		return dpopRefusal("the DPoP proof must have one signature", "%d signatures", len(jws.Signatures))
	}
	h := jws.Signatures[0].Protected
	if typ, _ := h.ExtraHeaders[jose.HeaderType].(string); typ != dpopProofType {
		return dpopRefusal("the DPoP proof's typ must be dpop+jwt", "typ %q", typ)
	}
	key := h.JSONWebKey
	if key == nil || !key.Valid() || !key.IsPublic() {
		return dpopRefusal("the DPoP proof must carry its public key as jwk", "jwk missing, invalid or private")
	}
	payload, err := jws.Verify(key)
	if err != nil {
		return dpopRefusal("the DPoP proof's signature is invalid", "%v", err)
	}
	thumb, err := key.Thumbprint(crypto.SHA256)
	if err != nil || subtle.ConstantTimeCompare([]byte(base64.RawURLEncoding.EncodeToString(thumb)), []byte(jkt)) != 1 {
		return dpopRefusal("the DPoP proof's key is not the one the token is bound to", "jwk thumbprint differs from cnf.jkt")
	}
	var c proofClaims
	dec := json.NewDecoder(strings.NewReader(string(payload)))
	dec.UseNumber()
	if err := dec.Decode(&c); err != nil {
		return dpopRefusal("the DPoP proof's claims are malformed", "%v", err)
	}
	if c.JTI == "" || len(c.JTI) > maxJTILength {
		return dpopRefusal("the DPoP proof needs a jti", "jti of %d bytes", len(c.JTI))
	}
	if c.HTM != r.Method {
		return dpopRefusal("the DPoP proof's htm is not the request's method", "htm %q, method %q", c.HTM, r.Method)
	}
	if !sameTarget(c.HTU, at, t) {
		return dpopRefusal("the DPoP proof's htu is not the request's URL", "htu does not match %s://%s%s", at.scheme, at.host, t.path)
	}
	iat, err := c.IAT.Int64()
	if err != nil {
		return dpopRefusal("the DPoP proof needs an iat", "iat %q", c.IAT)
	}
	now := d.clock.Now()
	issued := time.Unix(iat, 0)
	if issued.Before(now.Add(-d.skew)) || issued.After(now.Add(d.skew)) {
		return dpopRefusal("the DPoP proof is too old or from the future", "iat %s, now %s", issued.Format(time.RFC3339), now.Format(time.RFC3339))
	}
	ath := sha256.Sum256([]byte(raw))
	if subtle.ConstantTimeCompare([]byte(c.ATH), []byte(base64.RawURLEncoding.EncodeToString(ath[:]))) != 1 {
		return dpopRefusal("the DPoP proof's ath is not the token's hash", "ath differs")
	}
	// Last, so that only proofs that passed every other check use room:
	// the proof is remembered for as long as it would be accepted.
	switch d.seen.add(jkt, c.JTI, issued.Add(d.skew), now) {
	case replaySeen:
		return dpopRefusal("the DPoP proof was used before", "jti replayed")
	case replayFull:
		return dpopRefusal("the DPoP proof cannot be checked for replay now", "replay cache full")
	}
	return nil
}

func dpopRefusal(say, format string, args ...any) *rejection {
	rej := reject(reasonInvalidDPoPProof, format, args...)
	rej.say = say
	return rej
}

// sameTarget reports whether htu names the request: scheme and host as the
// caller addressed the sidecar, and the path the request is judged by,
// compared after RFC 3986 syntax-based normalization (case of scheme and
// host, default port, dot segments, percent-encoding), query and fragment
// ignored (RFC 9449 4.3 step 9).
func sameTarget(htu string, at addressed, t target) bool {
	u, err := url.Parse(htu)
	if err != nil || u.Opaque != "" || u.User != nil {
		return false
	}
	scheme := strings.ToLower(u.Scheme)
	if scheme != strings.ToLower(at.scheme) || !sameHost(scheme, u.Host, at.host) {
		return false
	}
	escaped := u.EscapedPath()
	if escaped == "" {
		escaped = "/"
	}
	raw, err := normalPath(escaped, false)
	if err != nil {
		return false
	}
	p, err := url.PathUnescape(raw)
	return err == nil && p == t.path
}

// sameHost compares two authorities, case-insensitively and with the
// scheme's default port made explicit.
func sameHost(scheme, a, b string) bool {
	return withPort(scheme, strings.ToLower(a)) == withPort(scheme, strings.ToLower(b))
}

func withPort(scheme, host string) string {
	if i := strings.LastIndexByte(host, ':'); i >= 0 && !strings.Contains(host[i:], "]") {
		return host
	}
	if scheme == "https" {
		return host + ":443"
	}
	return host + ":80"
}

// replayCache remembers the proofs accepted, by key thumbprint and jti,
// until they would no longer be accepted anyway (iat + skew). It is
// bounded; when full of proofs still live it refuses new ones rather than
// forget one that could then be replayed.
type replayCache struct {
	seed   maphash.Seed
	shards [replayShards]replayShard
	// perShard bounds each shard.
	perShard int
}

const replayShards = 16

type replayShard struct {
	mu    sync.Mutex
	until map[uint64]int64 // hash of jkt and jti -> expiry, Unix nanoseconds
}

// Outcomes of replayCache.add.
const (
	replayNew = iota
	replaySeen
	replayFull
)

// dpopReplayEntries bounds the replay cache: 2^18 proofs, about 10 MiB.
// With the default skew of 30 s a proof is kept about 30 s, so it holds
// the proofs of some 8,700 DPoP requests a second.
const dpopReplayEntries = 1 << 18

func newReplayCache(entries int) *replayCache {
	c := &replayCache{seed: maphash.MakeSeed(), perShard: max(entries/replayShards, 1)}
	for i := range c.shards {
		c.shards[i].until = map[uint64]int64{}
	}
	return c
}

func (c *replayCache) add(jkt, jti string, until, now time.Time) int {
	var h maphash.Hash
	h.SetSeed(c.seed)
	_, _ = h.WriteString(jkt)
	_ = h.WriteByte(0)
	_, _ = h.WriteString(jti)
	key := h.Sum64()
	s := &c.shards[key%replayShards]
	s.mu.Lock()
	defer s.mu.Unlock()
	n := now.UnixNano()
	if exp, ok := s.until[key]; ok && exp >= n {
		return replaySeen
	}
	if len(s.until) >= c.perShard {
		for k, exp := range s.until {
			if exp < n {
				delete(s.until, k)
			}
		}
		if len(s.until) >= c.perShard {
			return replayFull
		}
	}
	s.until[key] = until.UnixNano()
	return replayNew
}
