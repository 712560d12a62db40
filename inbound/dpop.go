package inbound

import (
	"bytes"
	"container/heap"
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
	// origin, when set (from INBOUND_RESOURCE), is the scheme and host
	// every proof must name, whatever the request's Host says: a proof
	// made for another service cannot be replayed here by naming its host.
	origin *addressed
	// encodedSlashes: see handler.encodedSlashes.
	encodedSlashes bool
}

// addressed is the URL the caller addressed, less the path: the htu a
// proof must name (RFC 9449 4.3 step 9).
type addressed struct {
	scheme, host string
}

// addressedOf is r's scheme and host as the caller addressed them; it
// reads r's X-Forwarded-* headers, so it runs before they are removed.
func (d *dpopChecker) addressedOf(r *http.Request) addressed {
	if d.origin != nil {
		return *d.origin
	}
	a := addressed{scheme: "http", host: r.Host}
	if r.TLS != nil {
		a.scheme = "https"
	}
	if d.trustForwarded {
		if p := lastValue(r.Header.Values("X-Forwarded-Proto")); p == "http" || p == "https" {
			a.scheme = p
		}
		if h := lastValue(r.Header.Values("X-Forwarded-Host")); h != "" {
			a.host = h
		}
	}
	return a
}

// lastValue is the last entry of a header's comma-separated values: the
// one the proxy nearest the sidecar added, where a proxy that appends
// leaves whatever the caller wrote in front of it.
func lastValue(values []string) string {
	if len(values) == 0 {
		return ""
	}
	v := values[len(values)-1]
	if i := strings.LastIndexByte(v, ','); i >= 0 {
		v = v[i+1:]
	}
	return strings.TrimSpace(v)
}

// proofClaims are a proof's claims, read by their exact names.
type proofClaims struct {
	JTI string      `json:"jti"`
	HTM string      `json:"htm"`
	HTU string      `json:"htu"`
	IAT json.Number `json:"iat"`
	ATH string      `json:"ath"`
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
	// The key before the signature: a proof by another key is refused
	// without the cost of verifying it.
	thumb, err := key.Thumbprint(crypto.SHA256)
	if err != nil || subtle.ConstantTimeCompare([]byte(base64.RawURLEncoding.EncodeToString(thumb)), []byte(jkt)) != 1 {
		return dpopRefusal("the DPoP proof's key is not the one the token is bound to", "jwk thumbprint differs from cnf.jkt")
	}
	payload, err := jws.Verify(key)
	if err != nil {
		return dpopRefusal("the DPoP proof's signature is invalid", "%v", err)
	}
	var c proofClaims
	dec := json.NewDecoder(bytes.NewReader(payload))
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
	if queryOverrides(r.URL.RawQuery) != nil {
		// The app may run another method than htm names (see judgement),
		// and the query is no part of what a proof covers.
		return dpopRefusal("a request with a DPoP proof cannot carry a method override", "_method in the query")
	}
	if !sameTarget(c.HTU, at, t, d.encodedSlashes) {
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
func sameTarget(htu string, at addressed, t target, encodedSlashes bool) bool {
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
	raw, err := normalPath(escaped, encodedSlashes)
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
// bounded in all and per key: when one key holds its share of proofs
// still live, that key's new proofs are refused (rather than one
// forgotten that could then be replayed), and the others' are not.
// Expired proofs leave in order of expiry, each in O(log n).
type replayCache struct {
	seed maphash.Seed
	max  int // proofs in all
	// maxPerKey bounds one key's proofs, so that one client, however
	// busy or hostile, leaves room for the others.
	maxPerKey int

	mu      sync.Mutex
	until   map[uint64]int64 // hash of jkt and jti -> expiry, Unix nanoseconds
	perKey  map[uint64]int   // hash of jkt -> proofs held
	expiry  expiryHeap
	keyHash maphash.Hash
}

// Outcomes of replayCache.add.
const (
	replayNew = iota
	replaySeen
	replayFull
)

// Bounds of the replay cache: 2^18 proofs in all, about 20 MiB, and 2^15
// per key. With the default skew of 30 s a proof is kept about 30 s, so a
// replica takes some 8,700 DPoP requests a second, and 1,090 from one key.
const (
	dpopReplayEntries = 1 << 18
	dpopReplayPerKey  = 1 << 15
)

func newReplayCache(entries, perKey int) *replayCache {
	return &replayCache{seed: maphash.MakeSeed(), max: max(entries, 1), maxPerKey: max(perKey, 1),
		until: map[uint64]int64{}, perKey: map[uint64]int{}}
}

func (c *replayCache) add(jkt, jti string, until, now time.Time) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	key, proof := c.hash(jkt, ""), c.hash(jkt, jti)
	n := now.UnixNano()
	for len(c.expiry) > 0 && c.expiry[0].at < n {
		e := heap.Pop(&c.expiry).(expiring)
		delete(c.until, e.proof)
		if c.perKey[e.key]--; c.perKey[e.key] <= 0 {
			delete(c.perKey, e.key)
		}
	}
	if _, ok := c.until[proof]; ok {
		return replaySeen
	}
	if len(c.until) >= c.max || c.perKey[key] >= c.maxPerKey {
		return replayFull
	}
	at := until.UnixNano()
	c.until[proof] = at
	c.perKey[key]++
	heap.Push(&c.expiry, expiring{at: at, proof: proof, key: key})
	return replayNew
}

// hash is the seeded hash of jkt, or of jkt and jti; c.mu is held.
func (c *replayCache) hash(jkt, jti string) uint64 {
	c.keyHash.SetSeed(c.seed)
	_, _ = c.keyHash.WriteString(jkt)
	if jti != "" {
		_ = c.keyHash.WriteByte(0)
		_, _ = c.keyHash.WriteString(jti)
	}
	return c.keyHash.Sum64()
}

// expiring is a proof held until at.
type expiring struct {
	at         int64
	proof, key uint64
}

// expiryHeap orders the proofs by expiry, soonest first.
type expiryHeap []expiring

func (h expiryHeap) Len() int           { return len(h) }
func (h expiryHeap) Less(i, j int) bool { return h[i].at < h[j].at }
func (h expiryHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *expiryHeap) Push(x any)        { *h = append(*h, x.(expiring)) }
func (h *expiryHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	*h = old[:len(old)-1]
	return e
}
