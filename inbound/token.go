package inbound

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
)

// errNoToken means the request has no Authorization header at all.
var errNoToken = errors.New("inbound: no bearer token")

// errMalformedHeader means an Authorization header that is not one bearer token.
var errMalformedHeader = errors.New("inbound: authorization header is not a bearer token")

// The Authorization schemes of access tokens.
const (
	schemeBearer = "Bearer" // RFC 6750
	schemeDPoP   = "DPoP"   // RFC 9449 7.1: a DPoP-bound token, with a proof
)

// accessToken returns the token of the request's one Authorization header
// and its scheme, Bearer or DPoP. It returns errNoToken when there is no
// header, and an error for anything else that is not exactly one
// well-formed token of either scheme.
func accessToken(h http.Header) (token, scheme string, err error) {
	values := h.Values("Authorization")
	switch len(values) {
	case 0:
		return "", "", errNoToken
	case 1:
		if tok, err := parseScheme(values[0], "dpop "); err == nil {
			return tok, schemeDPoP, nil
		}
		tok, err := parseBearer(values[0])
		return tok, schemeBearer, err
	default:
		return "", "", errMalformedHeader
	}
}

// parseBearer parses an Authorization header value "Bearer <token68>".
// The scheme is case-insensitive; the token must be non-empty token68.
func parseBearer(v string) (string, error) { return parseScheme(v, "bearer ") }

// parseScheme parses "<scheme> <token68>", scheme given lower case with
// its space.
func parseScheme(v, scheme string) (string, error) {
	if len(v) <= len(scheme) || !strings.EqualFold(v[:len(scheme)], scheme) {
		return "", errMalformedHeader
	}
	tok := strings.TrimLeft(v[len(scheme):], " ")
	if tok == "" || !isToken68(tok) {
		return "", errMalformedHeader
	}
	return tok, nil
}

// isToken68 reports whether s is token68: 1*( ALPHA / DIGIT / "-" / "." /
// "_" / "~" / "+" / "/" ) *"=" (RFC 7235 section 2.1).
func isToken68(s string) bool {
	end := len(s)
	for end > 0 && s[end-1] == '=' {
		end--
	}
	if end == 0 {
		return false
	}
	for i := range end {
		if !token68Chars[s[i]] {
			return false
		}
	}
	return true
}

// token68Chars marks the bytes of token68 other than its trailing "=":
// a table, because a token is checked byte by byte on every request, and
// a JWT is a kilobyte.
var token68Chars = func() (t [256]bool) {
	for c := range 256 {
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case c == '-', c == '.', c == '_', c == '~', c == '+', c == '/':
		default:
			continue
		}
		t[c] = true
	}
	return t
}()

// header is the part of a JWS protected header read before verification.
type header struct {
	Alg string `json:"alg"`
	Kid string `json:"kid"`
	Typ string `json:"typ"`
}

// errMalformed means the token is not a compact JWS with JSON header and
// payload.
var errMalformed = errors.New("inbound: token is not a well-formed JWT")

// parseUnverified splits a compact JWS and decodes its header and claims
// without checking the signature: enough to choose the issuer's keys and
// refuse what can be refused cheaply. Nothing read here is trusted until
// the signature is verified.
func parseUnverified(raw string) (h header, c *claims, payload []byte, err error) {
	first := strings.IndexByte(raw, '.')
	last := strings.LastIndexByte(raw, '.')
	// An empty signature is left for the algorithm check to refuse, so
	// that "alg":"none" tokens are counted as what they are.
	if first <= 0 || last == first || strings.Count(raw, ".") != 2 {
		return h, nil, nil, errMalformed
	}
	if _, err := decodeSegment(raw[:first], &h); err != nil || h.Alg == "" {
		return h, nil, nil, errMalformed
	}
	c = new(claims)
	payload, err = decodeSegment(raw[first+1:last], c)
	if err != nil {
		return h, nil, nil, errMalformed
	}
	return h, c, payload, nil
}

func decodeSegment(seg string, v any) ([]byte, error) {
	b, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil {
		return nil, err
	}
	return b, json.Unmarshal(b, v)
}
