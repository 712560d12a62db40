package inbound

import (
	"net/http"
	"strings"
)

// stripCallerHeaders removes, before anything judges the request, every
// header a caller sent that the app might take for the sidecar's word:
// every X-Auth-* header, and the headers frameworks read as where the
// request came from or where it is going. Each is removed in any spelling
// an app might read as it: WSGI and PHP turn "X_Auth_Subject" and
// "X-Auth-Subject" into the same variable. (What the caller's Connection
// header names is gone before this: proxy.DropConnectionNamed.)
func stripCallerHeaders(h http.Header) {
	for k := range h {
		if isIdentityHeader(k) || spoofable(k) {
			delete(h, k)
		}
	}
}

// spoofable reports whether a header, by a name as a WSGI or PHP app reads
// it, is one the sidecar removes:
//   - X-Forwarded-For, -Host, -Proto: the sidecar sets its own;
//   - Forwarded (RFC 7239), X-Real-IP, X-Forwarded-Port, -Prefix, -Uri,
//     -Ssl, -Scheme, X-Url-Scheme, Front-End-Https: read by Spring, Rails
//     (Rack takes X-Forwarded-Scheme for the scheme), ASP.NET and many
//     proxies' configurations as the caller's address, scheme or original
//     path;
//   - X-Original-URL, X-Original-URI, X-Rewrite-URL: some frameworks route
//     by these instead of the request line (Symfony, IIS URL Rewrite),
//     which would let a public path reach another one;
//   - X-HTTP-Method-Override, X-HTTP-Method, X-Method-Override: Express's
//     method-override, ASP.NET and others serve the method they name, not
//     the one the rules judged;
//   - X-Client-IP, Client-IP, True-Client-IP, CF-Connecting-IP,
//     Fastly-Client-IP, X-Cluster-Client-IP, X-Forwarded, Forwarded-For:
//     the caller's address as CDNs and load balancers pass it on, read
//     before X-Forwarded-For by Node's request-ip (common behind Express),
//     and Client-IP by Rails's RemoteIp and many PHP apps. Behind the
//     sidecar no CDN sets them: only the caller can;
//   - X-Proxied-Https, Proxy-Auth-Cert, Proxy-Ssl-Id: Jetty's
//     ForwardedRequestCustomizer (on by default for Spring Boot on
//     Kubernetes) takes any of them for a request that came over TLS;
//     X-Forwarded-Protocol, Gunicorn's spelling of the scheme.
func spoofable(name string) bool {
	names := [...]string{
		"x-forwarded-for", "x-forwarded-host", "x-forwarded-proto", "forwarded", "x-real-ip",
		"x-forwarded-port", "x-forwarded-prefix", "x-forwarded-uri", "x-forwarded-ssl", "x-forwarded-scheme", "x-url-scheme", "front-end-https",
		"x-original-url", "x-original-uri", "x-rewrite-url",
		"x-http-method-override", "x-http-method", "x-method-override",
		"x-client-ip", "client-ip", "true-client-ip", "cf-connecting-ip", "fastly-client-ip", "x-cluster-client-ip",
		"x-forwarded", "forwarded-for",
		"x-proxied-https", "proxy-auth-cert", "proxy-ssl-id", "x-forwarded-protocol",
	}
	for _, n := range names {
		if len(n) == len(name) && headerNameIs(name, n) {
			return true
		}
	}
	return false
}

// headerNameIs reports whether name is lower, a lower-case name, in any
// case and with "_" for "-", without allocating: it runs for every header
// of every request.
func headerNameIs(name, lower string) bool {
	for i := range len(lower) {
		c := name[i]
		switch {
		case c == '_':
			c = '-'
		case 'A' <= c && c <= 'Z':
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
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

// identityHeaders are the values of the X-Auth-* headers for one identity.
// They are shared by every request with the same cached token; that is
// safe because the forwarding copies the header values into the outgoing
// request (proxy.forwardHeader) and nothing writes into these slices.
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
