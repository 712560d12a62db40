package inbound

import (
	"net/http"
	"strings"
)

// stripIdentityHeaders removes every X-Auth-* header a caller sent, in any
// spelling an app might read as one: WSGI and PHP turn "X_Auth_Subject" and
// "X-Auth-Subject" into the same variable. It also drops identity headers
// from the caller's Connection list, where ReverseProxy would otherwise
// delete the sidecar's own copies as hop-by-hop.
func stripIdentityHeaders(h http.Header) {
	for k := range h {
		if isIdentityHeader(k) {
			delete(h, k)
		}
	}
	// Some frameworks route by these instead of the request line (Symfony,
	// IIS URL Rewrite), which would let a public path reach another one.
	delete(h, "X-Original-Url")
	delete(h, "X-Rewrite-Url")
	conn := h["Connection"]
	for i, v := range conn {
		if hasIdentityToken(v) {
			conn[i] = withoutIdentityTokens(v)
		}
	}
}

func hasIdentityToken(v string) bool {
	for v != "" {
		var t string
		t, v, _ = strings.Cut(v, ",")
		if isIdentityHeader(strings.TrimSpace(t)) {
			return true
		}
	}
	return false
}

// isIdentityHeader reports whether name is "x-auth-" followed by more,
// case-insensitively and with "_" read as "-".
func isIdentityHeader(name string) bool {
	const prefix = "x-auth-"
	if len(name) <= len(prefix) {
		return false
	}
	for i := range len(prefix) {
		c := name[i] | 0x20 // ASCII lower case; maps '-' to '-' and '_' to DEL
		if name[i] == '_' {
			c = '-'
		}
		if c != prefix[i] {
			return false
		}
	}
	return true
}

func withoutIdentityTokens(v string) string {
	tokens := strings.Split(v, ",")
	kept := tokens[:0]
	for _, t := range tokens {
		if !isIdentityHeader(strings.TrimSpace(t)) {
			kept = append(kept, t)
		}
	}
	return strings.Join(kept, ",")
}

// identityHeaders are the values of the X-Auth-* headers for one identity.
// They are shared by every request with the same cached token; that is
// safe because ReverseProxy copies the header values into the outgoing
// request and nothing writes into these slices.
type identityHeaders struct {
	built                             bool
	subject, issuer, clientID, scopes []string
}

// newIdentityHeaders leaves out what the identity lacks (an introspected
// client-credentials token often has no sub), rather than sending "".
func newIdentityHeaders(id *identity) identityHeaders {
	h := identityHeaders{built: true}
	if id.subject != "" {
		h.subject = []string{id.subject}
	}
	if id.issuer != "" {
		h.issuer = []string{id.issuer}
	}
	if id.clientID != "" {
		h.clientID = []string{id.clientID}
	}
	if len(id.scopes) > 0 {
		h.scopes = []string{strings.Join(id.scopes, " ")}
	}
	return h
}

func setIdentityHeaders(h http.Header, id *identity) {
	v := id.headers
	if !v.built {
		v = newIdentityHeaders(id)
	}
	if v.subject != nil {
		h[HeaderSubject] = v.subject
	}
	if v.issuer != nil {
		h[HeaderIssuer] = v.issuer
	}
	if v.clientID != nil {
		h[HeaderClientID] = v.clientID
	}
	if v.scopes != nil {
		h[HeaderScopes] = v.scopes
	}
}
