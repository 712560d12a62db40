// Package inbound verifies the bearer tokens of callers and proxies the
// requests it allows to the app, with the caller's identity in X-Auth-*
// headers. A refused request never reaches the app.
//
// Verification is local: keys come from each trusted issuer's JWKS through
// a key set that implements go-oidc's oidc.KeySet with a refresh cooldown,
// periodic refresh and last-good keys; go-oidc's verifier checks signature
// and issuer; audience and time with leeway are checked here, and what a
// request needs beyond a valid token (scopes, client, conditions) is
// decided by the rules.
package inbound
