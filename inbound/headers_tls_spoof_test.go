package inbound_test

import (
	"testing"
)

// TestJettysSecureSchemeHeadersAreRemoved: Jetty's
// ForwardedRequestCustomizer, which Spring Boot installs on Kubernetes
// without configuration (CloudPlatform.isUsingForwardHeaders, strategy
// NATIVE), reads X-Proxied-Https ("on" makes the request secure and
// https), Proxy-auth-cert and Proxy-ssl-id (either one makes it secure,
// and sets the servlet's cipher_suite / ssl_session_id attributes) by
// default. Each sets isSecure() independently of the X-Forwarded-Proto the
// sidecar writes, so a caller over plain HTTP is taken for one over TLS.
func TestJettysSecureSchemeHeadersAreRemoved(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	h := bearer(f.token(t, nil))
	for _, k := range []string{"X-Proxied-Https", "Proxy-Auth-Cert", "Proxy-Ssl-Id"} {
		h.Set(k, "spoofed")
	}
	if resp, _ := f.do(t, "/", h); resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	noneSpoofed(t, f.app.requests()[0].Header)
}
