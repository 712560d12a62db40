// Package outbound attaches a cached OAuth2 client-credentials token to the
// app's outbound calls and forwards them to the route's upstream.
package outbound
