package inbound_test

import (
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/authsidecar/authsidecar/inbound"
	"github.com/authsidecar/authsidecar/internal/certtest"
)

type mtlsFixture struct {
	*fixture
	serverCA, clientCA *certtest.CA
	url                string
}

func newMTLSFixture(t *testing.T, policy inbound.ClientCertPolicy) *mtlsFixture {
	t.Helper()
	fx := newFixture(t, fixtureOptions{cacheSize: 10, clientCerts: policy, publicPaths: []string{"/public"}})
	f := &mtlsFixture{fixture: fx, serverCA: certtest.NewCA(t, "server-ca"), clientCA: certtest.NewCA(t, "client-ca")}
	srv := httptest.NewUnstartedServer(fx.in.Handler())
	srv.TLS = &tls.Config{
		Certificates: []tls.Certificate{f.serverCA.Issue(t, certtest.Options{CommonName: "sidecar"}).TLS},
		ClientCAs:    f.clientCA.Pool(),
		ClientAuth:   tls.VerifyClientCertIfGiven,
	}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	f.url = srv.URL
	return f
}

func (f *mtlsFixture) call(t *testing.T, cert *certtest.Leaf, path string, h http.Header) (int, error) {
	t.Helper()
	conf := &tls.Config{RootCAs: f.serverCA.Pool()}
	if cert != nil {
		// Present the certificate whatever CAs the server names, as an
		// attacker would; crypto/tls would otherwise withhold it.
		conf.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &cert.TLS, nil }
	}
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: conf}}
	req, _ := http.NewRequest(http.MethodGet, f.url+path, nil)
	for k, v := range h {
		req.Header[k] = v
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}

func x5t(l *certtest.Leaf) string {
	sum := sha256.Sum256(l.Cert.Raw)
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

func TestMutualTLSRefusesCallersWithoutATrustedCertificate(t *testing.T) {
	f := newMTLSFixture(t, inbound.ClientCertPolicy{Required: true})
	orders := f.clientCA.Issue(t, certtest.Options{CommonName: "orders", Client: true, URIs: []string{"spiffe://cluster.local/ns/shop/sa/orders"}})
	stranger := certtest.NewCA(t, "stranger").Issue(t, certtest.Options{CommonName: "intruder", Client: true})
	tok := bearer(f.token(t, nil))

	if code, err := f.call(t, orders, "/", tok); code != 200 {
		t.Errorf("trusted certificate: %d %v, want 200", code, err)
	}
	if code, _ := f.call(t, nil, "/", tok); code != 403 {
		t.Errorf("no certificate: %d, want 403", code)
	}
	if code, _ := f.call(t, nil, "/public/x", nil); code != 403 {
		t.Errorf("no certificate on a public path: %d, want 403", code)
	}
	if _, err := f.call(t, stranger, "/", tok); err == nil {
		t.Error("an untrusted certificate completed the handshake")
	}
	seen := f.app.requests()
	if len(seen) != 1 {
		t.Fatalf("app saw %d requests, want 1", len(seen))
	}
	for k, want := range map[string]string{
		"X-Auth-Cert-Uri":     "spiffe://cluster.local/ns/shop/sa/orders",
		"X-Auth-Cert-Subject": "CN=orders",
		"X-Auth-Cert-Sha256":  x5t(orders),
	} {
		if got := seen[0].Header.Get(k); got != want {
			t.Errorf("app saw %s = %q, want %q", k, got, want)
		}
	}
}

func TestCertificateHeadersCannotBeSpoofed(t *testing.T) {
	f := newMTLSFixture(t, inbound.ClientCertPolicy{})
	h := bearer(f.token(t, nil))
	h.Set("X-Auth-Cert-Uri", "spiffe://cluster.local/ns/kube-system/sa/admin")
	if code, _ := f.call(t, nil, "/", h); code != 200 {
		t.Fatalf("status %d", code)
	}
	if got := f.app.requests()[0].Header.Get("X-Auth-Cert-Uri"); got != "" {
		t.Errorf("app saw a spoofed X-Auth-Cert-Uri %q", got)
	}
}

func TestAllowedSANs(t *testing.T) {
	f := newMTLSFixture(t, inbound.ClientCertPolicy{Required: true,
		AllowedSANs: []string{"spiffe://cluster.local/ns/shop/sa/orders", "billing.shop.svc"}})
	tok := bearer(f.token(t, nil))
	cases := []struct {
		name string
		opts certtest.Options
		want int
	}{
		{"an allowed SPIFFE ID", certtest.Options{Client: true, URIs: []string{"spiffe://cluster.local/ns/shop/sa/orders"}}, 200},
		{"an allowed DNS name", certtest.Options{Client: true, DNSNames: []string{"billing.shop.svc"}}, 200},
		{"another SPIFFE ID", certtest.Options{Client: true, URIs: []string{"spiffe://cluster.local/ns/shop/sa/reports"}}, 403},
		{"a common name alone", certtest.Options{Client: true, CommonName: "spiffe://cluster.local/ns/shop/sa/orders"}, 403},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if code, err := f.call(t, f.clientCA.Issue(t, tc.opts), "/", tok); code != tc.want {
				t.Errorf("status %d (%v), want %d", code, err, tc.want)
			}
		})
	}
}

func TestBoundTokenIsAcceptedOnlyWithItsCertificate(t *testing.T) {
	f := newMTLSFixture(t, inbound.ClientCertPolicy{Required: true})
	mine := f.clientCA.Issue(t, certtest.Options{CommonName: "orders", Client: true})
	other := f.clientCA.Issue(t, certtest.Options{CommonName: "thief", Client: true})
	bound := bearer(f.token(t, map[string]any{"cnf": map[string]string{"x5t#S256": x5t(mine)}}))

	if code, _ := f.call(t, mine, "/", bound); code != 200 {
		t.Errorf("bound token with its certificate: %d, want 200", code)
	}
	if code, _ := f.call(t, other, "/", bound); code != 401 {
		t.Errorf("bound token with another certificate: %d, want 401", code)
	}
	// A second time, so that the verified-token cache answers.
	if code, _ := f.call(t, other, "/", bound); code != 401 {
		t.Errorf("bound token with another certificate, cached: %d, want 401", code)
	}
}

func TestRequireBoundTokensRefusesBearerTokens(t *testing.T) {
	f := newMTLSFixture(t, inbound.ClientCertPolicy{Required: true, RequireBoundTokens: true})
	cert := f.clientCA.Issue(t, certtest.Options{CommonName: "orders", Client: true})
	if code, _ := f.call(t, cert, "/", bearer(f.token(t, nil))); code != 401 {
		t.Errorf("unbound token: %d, want 401", code)
	}
	if code, _ := f.call(t, cert, "/", bearer(f.token(t, map[string]any{"cnf": map[string]string{"x5t#S256": x5t(cert)}}))); code != 200 {
		t.Errorf("bound token: %d, want 200", code)
	}
}

func TestACommaInASANCannotReadAsTwoIdentities(t *testing.T) {
	f := newMTLSFixture(t, inbound.ClientCertPolicy{Required: true})
	cert := f.clientCA.Issue(t, certtest.Options{CommonName: "orders", Client: true,
		URIs:     []string{"spiffe://cluster.local/ns/shop/sa/orders,spiffe://cluster.local/ns/kube-system/sa/admin", "urn:x:100%"},
		DNSNames: []string{"orders.shop.svc"}})
	if code, err := f.call(t, cert, "/", bearer(f.token(t, nil))); code != 200 {
		t.Fatalf("status %d (%v)", code, err)
	}
	h := f.app.requests()[0].Header
	if got, want := h.Get("X-Auth-Cert-Uri"), "spiffe://cluster.local/ns/shop/sa/orders%2Cspiffe://cluster.local/ns/kube-system/sa/admin,urn:x:100%25"; got != want {
		t.Errorf("X-Auth-Cert-Uri = %q, want %q", got, want)
	}
	if got := h.Get("X-Auth-Cert-Dns"); got != "orders.shop.svc" {
		t.Errorf("X-Auth-Cert-Dns = %q", got)
	}
}
