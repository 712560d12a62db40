package outbound

import (
	"crypto/elliptic"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/authsidecar/authsidecar/internal/reload"
	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"golang.org/x/oauth2/clientcredentials"
)

// certIdentity is a tls_client_auth token endpoint's side (RFC 8705 2.1):
// the client is the subject of the certificate verified in the handshake,
// and the body names it with client_id alone.
type certIdentity struct {
	mu         sync.Mutex
	identified []string
}

func (c *certIdentity) authenticate(r *http.Request, form url.Values) error {
	if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 {
		return errors.New("no verified client certificate")
	}
	if _, _, ok := r.BasicAuth(); ok || form.Has("client_secret") || form.Has("client_assertion") {
		return errors.New("a secret or an assertion came with tls_client_auth")
	}
	subject := r.TLS.PeerCertificates[0].Subject.CommonName
	if id := form.Get("client_id"); id != testClientID || subject != testClientID {
		return fmt.Errorf("client_id %q with a certificate for %q: want %q for both", id, subject, testClientID)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.identified = append(c.identified, subject)
	return nil
}

func TestTLSClientAuthPresentsTheCertificateToTheTokenEndpoint(t *testing.T) {
	dir := t.TempDir()
	writeCert := func(name string, cert *x509.Certificate, key any) (certFile, keyFile string) {
		certFile, keyFile = filepath.Join(dir, name+".pem"), filepath.Join(dir, name+"-key.pem")
		writePEM(t, certFile, "CERTIFICATE", cert.Raw)
		der, err := x509.MarshalPKCS8PrivateKey(key)
		must(t, err)
		writePEM(t, keyFile, "PRIVATE KEY", der)
		return certFile, keyFile
	}
	registered, registeredKey := selfSigned(t, testClientID)
	other, otherKey := selfSigned(t, "billing-service")  // trusted, but another client
	intruder, intruderKey := selfSigned(t, testClientID) // the right name, not trusted
	trusted := x509.NewCertPool()
	trusted.AddCert(registered)
	trusted.AddCert(other)
	ts := newTokenServerTLS(t, &tls.Config{ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: trusted})
	ids := &certIdentity{}
	ts.set(func(ts *tokenServer) { ts.authenticate = ids.authenticate })
	caFile := filepath.Join(dir, "idp-ca.pem")
	writePEM(t, caFile, "CERTIFICATE", ts.Certificate().Raw)

	fetch := func(t *testing.T, extra map[string]string) error {
		extra["AUTHSIDECAR_OUTBOUND_TLS_CA_FILE"] = caFile
		h := build(t, env(ts, "http://upstream.test", extra), nil)
		_, err := h.route("payments").cache.Token(t.Context())
		return err
	}
	mtls := func(certFile, keyFile string) map[string]string {
		return map[string]string{
			"AUTHSIDECAR_OUTBOUND_AUTH_METHOD":   "tls_client_auth",
			"AUTHSIDECAR_OUTBOUND_CLIENT_SECRET": "",
			"AUTHSIDECAR_OUTBOUND_TLS_CERT_FILE": certFile,
			"AUTHSIDECAR_OUTBOUND_TLS_KEY_FILE":  keyFile,
		}
	}

	t.Run("the registered certificate identifies the client", func(t *testing.T) {
		if err := fetch(t, mtls(writeCert("registered", registered, registeredKey))); err != nil {
			t.Fatalf("Token: %v", err)
		}
		form := ts.lastForm()
		ids.mu.Lock()
		defer ids.mu.Unlock()
		if len(ids.identified) != 1 || form.Get("client_id") != testClientID || len(form) != 2 {
			t.Errorf("identified %q from a body of %v, want the client by its certificate and a body of grant_type and client_id", ids.identified, form)
		}
	})
	t.Run("another client's certificate is refused", func(t *testing.T) {
		err := fetch(t, mtls(writeCert("other", other, otherKey)))
		want := `outbound: no valid token for route "payments": outbound: token endpoint ` + ts.URL +
			`/token answered 401: error "invalid_client" ("client_id \"orders-service\" with a certificate for \"billing-service\": want \"orders-service\" for both")`
		if err == nil || err.Error() != want {
			t.Fatalf("error = %v\nwant %s", err, want)
		}
	})
	before := ts.calls.Load()
	t.Run("an untrusted certificate fails the handshake", func(t *testing.T) {
		if err := fetch(t, mtls(writeCert("intruder", intruder, intruderKey))); !errors.Is(err, errTokenUnavailable) {
			t.Fatalf("error = %v, want errTokenUnavailable", err)
		}
	})
	t.Run("without a certificate the handshake fails", func(t *testing.T) {
		err := fetch(t, map[string]string{"AUTHSIDECAR_OUTBOUND_AUTH_METHOD": "client_secret_post"})
		if !errors.Is(err, errTokenUnavailable) {
			t.Fatalf("error = %v, want errTokenUnavailable", err)
		}
	})
	if got := ts.calls.Load(); got != before {
		t.Errorf("%d token requests got past the handshake without a trusted certificate", got-before)
	}
}

func TestTLSClientAuthRefusesAPlainHTTPTokenEndpoint(t *testing.T) {
	// A discovered endpoint is only known at the fetch.
	err := tlsClientAuth{}.apply(&clientcredentials.Config{TokenURL: "http://idp.test/token"}, time.Now())
	want := "outbound: tls_client_auth needs an https token endpoint, got http://idp.test/token"
	if err == nil || err.Error() != want {
		t.Fatalf("error = %v, want %s", err, want)
	}
}

// Two JWTs of one length, so that only the content tells them apart.
const (
	assertionV1 = "eyJhbGciOiJSUzI1NiIsImtpZCI6ImsxIn0.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQ6c2hvcDpvcmRlcnMiLCJuIjoxfQ.c2lnbmF0dXJlLW9uZQ"
	assertionV2 = "eyJhbGciOiJSUzI1NiIsImtpZCI6ImsxIn0.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQ6c2hvcDpvcmRlcnMiLCJuIjoyfQ.c2lnbmF0dXJlLXR3bw"
)

func TestClientAssertionFileIsReadForEveryTokenRequest(t *testing.T) {
	for _, tc := range []struct {
		name   string
		method string
	}{
		{"with AUTH_METHOD unset", ""},
		{"with AUTH_METHOD=client_assertion_file", "client_assertion_file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "token")
			must(t, os.WriteFile(path, []byte(assertionV1+"\n"), 0o600))
			ts := newTokenServer(t)
			var (
				mu  sync.Mutex
				got []string
			)
			ts.set(func(ts *tokenServer) {
				ts.authenticate = func(r *http.Request, form url.Values) error {
					if _, _, ok := r.BasicAuth(); ok || form.Has("client_secret") {
						return errors.New("a client secret came with the assertion")
					}
					if form.Get("client_id") != testClientID || form.Get("client_assertion_type") != jwtBearer {
						return fmt.Errorf("client_id %q, client_assertion_type %q", form.Get("client_id"), form.Get("client_assertion_type"))
					}
					mu.Lock()
					defer mu.Unlock()
					got = append(got, form.Get("client_assertion"))
					return nil
				}
			})
			h := build(t, env(ts, "http://upstream.test", map[string]string{
				"AUTHSIDECAR_OUTBOUND_CLIENT_SECRET":         "",
				"AUTHSIDECAR_OUTBOUND_AUTH_METHOD":           tc.method,
				"AUTHSIDECAR_OUTBOUND_CLIENT_ASSERTION_FILE": path,
			}), nil)
			fetchFresh(t, h, 1)

			// The kubelet rewrites the token. Same length, same inode and,
			// put back, the same modification time: nothing but the
			// content changes.
			info, err := os.Stat(path)
			must(t, err)
			must(t, os.WriteFile(path, []byte(assertionV2+"\n"), 0o600))
			must(t, os.Chtimes(path, info.ModTime(), info.ModTime()))
			fetchFresh(t, h, 2)

			want := []string{assertionV1, assertionV2, assertionV2}
			mu.Lock()
			defer mu.Unlock()
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("the endpoint saw assertions\n%q\nwant\n%q", got, want)
			}
		})
	}
}

func TestAssertionsAreSignedOnTheInjectedClock(t *testing.T) {
	clock := newFakeClock()
	key := newECKey(t, elliptic.P256())
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: key}, nil)
	must(t, err)
	a := PrivateKeyJWT(reload.Static(signer))
	cfg := &clientcredentials.Config{ClientID: testClientID, TokenURL: "https://idp.test/token", EndpointParams: url.Values{"audience": {"payments"}}}
	must(t, a.apply(cfg, clock.Now()))
	tok, err := jwt.ParseSigned(cfg.EndpointParams.Get("client_assertion"), []jose.SignatureAlgorithm{jose.ES256})
	must(t, err)
	var c jwt.Claims
	must(t, tok.Claims(key.Public(), &c))
	if !c.IssuedAt.Time().Equal(clock.Now()) || !c.Expiry.Time().Equal(clock.Now().Add(time.Minute)) {
		t.Errorf("iat %s exp %s, want %s and a minute later", c.IssuedAt.Time(), c.Expiry.Time(), clock.Now())
	}
	if cfg.EndpointParams.Get("audience") != "payments" || cfg.ClientSecret != "" {
		t.Errorf("params %v, secret %q: want the route's audience kept and no secret", cfg.EndpointParams, cfg.ClientSecret)
	}
}
