// Package rules decides, per request path and method, what a caller's token
// must carry: loaded once from a YAML file and compiled at start.
//
// # File
//
//	rules:
//	  - paths: ["/healthz", "/docs/**"]
//	    public: true
//	  - paths: ["/admin/**"]
//	    scopes: [admin]          # all of these
//	    clients: [ops-console]   # any of these
//	  - paths: ["/orders/*"]
//	    methods: [POST, PUT, DELETE]
//	    scopes: [orders:write]
//	    when: 'claims.tenant == request.headers["x-tenant"]'
//
// Decoding is strict: an unknown key, a value of the wrong type, a bad glob,
// a bad method, a public rule that also asks for scopes, clients or a
// condition, and a condition that does not compile to a bool are all errors,
// each naming the rule (1-based) and its first path. Every problem in the
// file is reported at once.
//
// # Paths
//
// A glob starts with "/" and is split on "/" into segments:
//
//   - a literal segment matches the same segment exactly (case-sensitive);
//   - "*" matches exactly one non-empty segment;
//   - "**" matches zero or more segments; it must be a whole segment.
//
// "/" alone matches only the root. Empty segments (a trailing slash, "//")
// and "." or ".." segments are not allowed in a glob.
//
// A trailing slash on a request path is one last, empty segment. For a
// public rule it is significant: "/healthz" does not make "/healthz/"
// public. A protected rule also matches the path without it, since most
// frameworks route "/admin/" to "/admin": "/admin" protects both. "/docs/**"
// matches "/docs", "/docs/" and "/docs/a/b".
//
// # Unclean paths
//
// The app behind the sidecar may resolve "/docs/../admin" to "/admin",
// "/docs//x" to "/docs/x", treat "\" as "/", drop ";params" from segments
// (Java servers: "/docs/..;/admin" is "/admin" to Tomcat), or decode "%"
// a second time. A request path that holds a "." or ".." segment, an empty
// segment before the last, a backslash, a ";" or a "%" is therefore unclean,
// and:
//
//   - it never matches a public rule, so dot segments cannot reach a
//     protected resource through a public prefix;
//   - it matches any other rule whose glob matches either the path as sent
//     or the path as the app may resolve it (";params" dropped, "\" as "/",
//     then [path.Clean]), so "/x/../admin/users" still needs what
//     "/admin/**" asks for.
//
// Match expects the decoded path (http.Request.URL.Path), in which "%2e"
// and "%2f" are already "." and "/".
//
// # Methods
//
// A rule without methods applies to every method. Methods are the upper-case
// names of RFC 9110 and RFC 5789 (GET, HEAD, POST, PUT, PATCH, DELETE,
// OPTIONS, CONNECT, TRACE); a rule listing GET also applies to HEAD, as
// net/http serves HEAD with the GET handler. A request method is matched
// upper-cased ("delete" meets the rules for DELETE: some servers upper-case
// it before routing). A request with any other method matches only rules
// without methods.
//
// # Conditions
//
// "when" is a CEL expression that must evaluate to a bool. It sees two
// variables:
//
//   - claims: map(string, dyn), the token's JSON payload;
//   - request: map(string, dyn) with "method" and "path" (strings) and
//     "headers", a map(string, string) from lower-cased header names to the
//     first value.
//
// A condition that evaluates to false, fails (a missing claim or header, a
// type mismatch) or runs past its cost limit refuses the request with
// reason client_not_allowed: the caller's token is valid, but this caller
// may not make this request.
package rules
