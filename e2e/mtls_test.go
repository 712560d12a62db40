package e2e

// Two sidecars over mutual TLS, as in a mesh without one: sidecar A
// authenticates to the real provider with private_key_jwt (its own RSA or
// EC key, the provider holding only the public JWKS), gets a JWT for B's
// resource and calls B's inbound over HTTPS presenting its client
// certificate; B checks the certificate's chain and SPIFFE ID, then the
// token, and tells app B about both.

import (
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/authsidecar/authsidecar/internal/certtest"
)

const (
	mtlsResource  = "http://payments.mtls.example"
	mtlsClient    = "svc-orders-pkjwt" // private_key_jwt, no secret at all
	ordersSPIFFE  = "spiffe://cluster.local/ns/orders/sa/orders"
	reportSPIFFE  = "spiffe://cluster.local/ns/reporting/sa/reporting"
	clientAssType = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
)

// mtlsPKI is the certificates of the scenario: B's server certificate from
// its own CA, A's client certificate from the mesh CA B trusts, a
// certificate from that CA with another SPIFFE ID, and one with A's
// SPIFFE ID from a CA B does not trust.
type mtlsPKI struct {
	serverCA, meshCA, rogueCA  *certtest.CA
	server, orders             *certtest.Leaf
	reporting, ordersFromRogue *certtest.Leaf
	dir                        string
}

func newMTLSPKI(t *testing.T) *mtlsPKI {
	t.Helper()
	p := &mtlsPKI{
		serverCA: certtest.NewCA(t, "payments server CA"),
		meshCA:   certtest.NewCA(t, "mesh client CA"),
		rogueCA:  certtest.NewCA(t, "rogue CA"),
		dir:      t.TempDir(),
	}
	p.server = p.serverCA.Issue(t, certtest.Options{CommonName: "payments"})
	p.orders = p.meshCA.Issue(t, certtest.Options{CommonName: "orders", URIs: []string{ordersSPIFFE}, Client: true})
	p.reporting = p.meshCA.Issue(t, certtest.Options{CommonName: "reporting", URIs: []string{reportSPIFFE}, Client: true})
	p.ordersFromRogue = p.rogueCA.Issue(t, certtest.Options{CommonName: "orders", URIs: []string{ordersSPIFFE}, Client: true})
	return p
}

// tlsClient is an HTTPS client trusting B's server CA, presenting cert
// when it is not nil; no connection is reused.
func (p *mtlsPKI) tlsClient(cert *certtest.Leaf) *http.Client {
	conf := &tls.Config{RootCAs: p.serverCA.Pool(), MinVersion: tls.VersionTLS12}
	if cert != nil {
		conf.Certificates = []tls.Certificate{cert.TLS}
	}
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		Proxy: nil, TLSClientConfig: conf, DisableKeepAlives: true, // HTTP/1.1: errors stay readable
	}}
}

// forcedCertClient is tlsClient presenting cert whatever CAs the server
// asks for.
func (p *mtlsPKI) forcedCertClient(cert *certtest.Leaf) *http.Client {
	c := p.tlsClient(nil)
	c.Transport.(*http.Transport).TLSClientConfig.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
		return &cert.TLS, nil
	}
	return c
}

func doWith(c *http.Client, method, url, token string) (reply, error) {
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		return reply{}, err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.Do(req)
	if err != nil {
		return reply{}, err
	}
	defer resp.Body.Close()
	b, err := readAllLimited(resp.Body)
	return reply{Status: resp.StatusCode, Header: resp.Header, Body: b}, err
}

func certThumbprint(l *certtest.Leaf) string {
	sum := sha256.Sum256(l.Cert.Raw)
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

func TestMTLSChainWithPrivateKeyJWT(t *testing.T) {
	t.Parallel()
	rsaKey, ecKey := newRSAKey(t, "orders-rsa-"+randomID(t)), newECKey(t, "orders-ec-"+randomID(t))
	idp := startIDP(t, IDPConfig{
		// One client with two registered keys: each A below signs with
		// one of them and names it by kid.
		Clients: []IDPClient{{ID: mtlsClient, AuthMethod: "private_key_jwt",
			Scopes: []string{"payments:read", "payments:write"}, JWKS: []*IDPKey{rsaKey, ecKey}}},
		Resources: map[string]IDPResource{mtlsResource: {Scopes: []string{"payments:read", "payments:write"}}},
	})
	pki := newMTLSPKI(t)
	serverCert, serverKey := pki.server.WriteFiles(t, pki.dir, "payments-server")
	appB := startApp(t)
	b := startInbound(t, idp, mtlsResource, "payments:write", appB, map[string]string{
		"AUTHSIDECAR_INBOUND_TLS_CERT_FILE":       serverCert,
		"AUTHSIDECAR_INBOUND_TLS_KEY_FILE":        serverKey,
		"AUTHSIDECAR_INBOUND_CLIENT_CA_FILE":      pki.meshCA.WriteFile(t, pki.dir, "mesh-ca"),
		"AUTHSIDECAR_INBOUND_CLIENT_ALLOWED_SANS": "spiffe://cluster.local/ns/billing/sa/billing," + ordersSPIFFE,
	})
	bURL := "https://" + b.Addrs.Inbound
	b.WaitReady(t, b.Addrs.AdminURL())

	for _, key := range []*IDPKey{rsaKey, ecKey} {
		t.Run("A signs with "+string(key.Alg()), func(t *testing.T) {
			appB.Reset()
			testMTLSCallThroughA(t, idp, pki, b, bURL, appB, key)
		})
	}
	appB.Reset()

	t.Run("callers without the right certificate never reach the app", func(t *testing.T) {
		tok := idp.ClientCredentialsToken(t, mtlsClient, "", mtlsResource, "payments:write").AccessToken
		before := metric(t, b.Addrs.AdminURL(), "authsidecar_inbound_requests_total", "result", "forbidden")

		// The control: A's certificate and the token pass, so what is
		// refused below is refused for the certificate.
		if r, err := doWith(pki.tlsClient(pki.orders), http.MethodGet, bURL+"/charges/1", tok); err != nil || r.Status != http.StatusOK {
			t.Fatalf("A's certificate with a good token: %v %v, want 200", r, err)
		}
		// A's certificate without a token: the certificate alone is not
		// enough.
		if r, err := doWith(pki.tlsClient(pki.orders), http.MethodGet, bURL+"/charges/1", ""); err != nil ||
			r.Status != http.StatusUnauthorized || r.Header.Get("WWW-Authenticate") != `Bearer realm="authsidecar"` {
			t.Errorf("A's certificate, no token: %v %v; want 401", r, err)
		}
		appB.Reset()

		r, err := doWith(pki.tlsClient(nil), http.MethodGet, bURL+"/charges/1", tok)
		if err != nil || r.Status != http.StatusForbidden || r.errorCode() != "access_denied" {
			t.Errorf("no client certificate, good token: %v %v; want 403 access_denied", r, err)
		}
		r, err = doWith(pki.tlsClient(pki.reporting), http.MethodGet, bURL+"/charges/1", tok)
		if err != nil || r.Status != http.StatusForbidden || r.errorCode() != "access_denied" {
			t.Errorf("certificate for %s, good token: %v %v; want 403 access_denied", reportSPIFFE, r, err)
		}
		// A certificate with A's SPIFFE ID from a CA B does not trust,
		// presented whatever B asks for, as a hostile client would: the
		// handshake fails.
		r, err = doWith(pki.forcedCertClient(pki.ordersFromRogue), http.MethodGet, bURL+"/charges/1", tok)
		if err == nil {
			t.Errorf("certificate with A's SPIFFE ID from an untrusted CA: %v; want a failed handshake", r)
		} else if !strings.Contains(err.Error(), "certificate") {
			t.Errorf("certificate from an untrusted CA: error %v, want a TLS certificate error", err)
		} else {
			t.Logf("untrusted CA, certificate presented: %v", err)
		}
		// A Go client configured with Certificates sends only one issued
		// by a CA in the server's certificate request, so with this one
		// it sends none and gets the 403 of a caller without one.
		r, err = doWith(pki.tlsClient(pki.ordersFromRogue), http.MethodGet, bURL+"/charges/1", tok)
		if err != nil || r.Status != http.StatusForbidden || r.errorCode() != "access_denied" {
			t.Errorf("untrusted certificate a Go client does not send: %v %v; want 403 access_denied", r, err)
		}
		// Plain HTTP to the TLS port.
		if r, err := tryCall(http.MethodGet, "http://"+b.Addrs.Inbound+"/charges/1", nil, bearer(tok)); err == nil && r.Status < 400 {
			t.Errorf("plain HTTP to B's TLS port: %s", r)
		}
		checkAppSawNothing(t, appB, "after calls without the right certificate")
		// The handshake failure and plain HTTP never become requests.
		expectMetric(t, b.Addrs.AdminURL(), "B's forbidden requests", before+3, "authsidecar_inbound_requests_total", "result", "forbidden")
	})
}

// testMTLSCallThroughA starts an A that signs its assertions with key and
// calls B over mTLS, and checks what the provider and app B saw.
func testMTLSCallThroughA(t *testing.T, idp *IDP, pki *mtlsPKI, b *inboundSidecar, bURL string, appB *App, key *IDPKey) {
	dir := t.TempDir()
	certFile, keyFile := pki.orders.WriteFiles(t, dir, "orders")
	tap := startTokenTap(t, idp, 0)
	addrs := freeSidecarAddrs(t)
	a := startSidecar(t, mergeEnv(addrs.Env(), map[string]string{
		"AUTHSIDECAR_LOG_LEVEL":                 "debug",
		"AUTHSIDECAR_OUTBOUND_CLIENT_ID":        mtlsClient,
		"AUTHSIDECAR_OUTBOUND_AUTH_METHOD":      "private_key_jwt",
		"AUTHSIDECAR_OUTBOUND_PRIVATE_KEY_FILE": key.WritePEM(t, dir),
		"AUTHSIDECAR_OUTBOUND_PRIVATE_KEY_ID":   key.KID,
		"AUTHSIDECAR_OUTBOUND_TOKEN_URL":        tap.TokenURL(),
		"AUTHSIDECAR_OUTBOUND_TLS_CA_FILE":      pki.serverCA.WriteFile(t, dir, "payments-server-ca"),
		"AUTHSIDECAR_OUTBOUND_TLS_CERT_FILE":    certFile,
		"AUTHSIDECAR_OUTBOUND_TLS_KEY_FILE":     keyFile,
		"AUTHSIDECAR_OUTBOUND_ROUTES":           "payments",
		"AUTHSIDECAR_ROUTE_PAYMENTS_URL":        bURL,
		"AUTHSIDECAR_ROUTE_PAYMENTS_RESOURCE":   mtlsResource,
		"AUTHSIDECAR_ROUTE_PAYMENTS_SCOPES":     "payments:read payments:write",
	}))
	a.WaitReady(t, addrs.AdminURL())
	allowedBefore := metric(t, b.Addrs.AdminURL(), "authsidecar_inbound_requests_total", "result", "allowed")

	for i := range 3 {
		r := call(t, http.MethodPost, addrs.OutboundURL()+"/payments/charges?n="+strconv.Itoa(i), []byte(`{"amount":5}`), map[string]string{
			// Spoofed certificate headers: B must replace them.
			"X-Auth-Cert-Uri":    "spiffe://cluster.local/ns/kube-system/sa/admin",
			"X-Auth-Cert-Sha256": "AAAA",
			"X-Auth-Cert-Dns":    "admin.example",
		})
		if r.Status != http.StatusOK {
			t.Fatalf("call %d through A over mTLS: %s", i, r)
		}
	}
	reqs := appB.Requests()
	if len(reqs) != 3 {
		t.Fatalf("app B saw %d requests, want 3", len(reqs))
	}
	for _, seen := range reqs {
		checkIdentity(t, seen, idp.Issuer, mtlsClient, "payments:read payments:write")
		for name, want := range map[string]string{
			"X-Auth-Cert-Uri":     ordersSPIFFE,
			"X-Auth-Cert-Sha256":  certThumbprint(pki.orders),
			"X-Auth-Cert-Subject": "CN=orders",
			"X-Forwarded-Proto":   "https",
		} {
			if v := seen.Header.Values(name); len(v) != 1 || v[0] != want {
				t.Errorf("app B saw %s %q, want [%q]", name, v, want)
			}
		}
		if v := seen.Header.Values("X-Auth-Cert-Dns"); len(v) != 0 {
			t.Errorf("app B saw X-Auth-Cert-Dns %q; A's certificate has no DNS SAN", v)
		}
		if seen.Method != http.MethodPost || seen.Path != "/charges" || string(seen.Body) != `{"amount":5}` {
			t.Errorf("app B saw %s %s with body %q", seen.Method, seen.RequestURI, seen.Body)
		}
	}

	// The provider got one token request, authenticated by an assertion
	// signed with key: no secret anywhere.
	treqs := tap.Requests()
	if len(treqs) != 1 {
		t.Fatalf("the provider got %d token requests for 3 calls, want 1", len(treqs))
	}
	f := treqs[0].Form
	if treqs[0].BasicUser != "" || f.Has("client_secret") {
		t.Errorf("token request carries a secret: basic user %q, form %v", treqs[0].BasicUser, f)
	}
	if f.Get("grant_type") != "client_credentials" || f.Get("client_id") != mtlsClient || f.Get("client_assertion_type") != clientAssType ||
		f.Get("resource") != mtlsResource || scopeSet(f.Get("scope")) != "payments:read payments:write" {
		t.Errorf("token request form %v", f)
	}
	checkClientAssertion(t, f.Get("client_assertion"), key, tap.TokenURL())

	expectMetric(t, b.Addrs.AdminURL(), "B's allowed requests", allowedBefore+3, "authsidecar_inbound_requests_total", "result", "allowed")
	expectMetric(t, addrs.AdminURL(), "A's token fetches", 1, "authsidecar_token_fetches_total", "route", "payments", "result", "success")
	if out := a.Output(); strings.Contains(out, "PRIVATE KEY") {
		t.Errorf("A logged its private key")
	}
}

// checkClientAssertion checks an RFC 7523 client assertion as A sent it:
// signed by key (and naming its kid), for mtlsClient, audience the token
// endpoint it was sent to, valid for 60 s.
func checkClientAssertion(t *testing.T, raw string, key *IDPKey, tokenURL string) {
	t.Helper()
	jws, err := jose.ParseSignedCompact(raw, []jose.SignatureAlgorithm{key.Alg()})
	if err != nil {
		t.Fatalf("client assertion: %v", err)
	}
	hdr := jws.Signatures[0].Header
	if hdr.KeyID != key.KID || hdr.Algorithm != string(key.Alg()) {
		t.Errorf("client assertion header kid %q alg %q, want %q %q", hdr.KeyID, hdr.Algorithm, key.KID, key.Alg())
	}
	payload, err := jws.Verify(key.Private.Public())
	if err != nil {
		t.Fatalf("client assertion does not verify with the client's public key: %v", err)
	}
	var c struct {
		Iss, Sub, Aud, Jti string
		Iat, Exp           int64
	}
	if err := json.Unmarshal(payload, &c); err != nil {
		t.Fatalf("client assertion claims %s: %v", payload, err)
	}
	if c.Iss != mtlsClient || c.Sub != mtlsClient || c.Aud != tokenURL || c.Jti == "" || c.Exp-c.Iat != 60 {
		t.Errorf("client assertion claims %s; want iss=sub=%s, aud %s, a jti, 60 s", payload, mtlsClient, tokenURL)
	}
	if now := time.Now().Unix(); c.Iat < now-30 || c.Iat > now+5 {
		t.Errorf("client assertion iat %d, now %d", c.Iat, now)
	}
}
