package outbound

import (
	"crypto/elliptic"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/authsidecar/authsidecar/config"
)

// fakeIDP is a token server that is never asked, for configurations that
// are built but not used.
func fakeIDP() *tokenServer { return &tokenServer{Server: &httptest.Server{URL: "https://idp.test"}} }

func loadValid(t *testing.T, environ map[string]string) *config.Config {
	t.Helper()
	cfg, err := config.Load(environ)
	if err != nil {
		t.Fatalf("config.Load: %v", err)
	}
	return cfg
}

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
		if err := fetch(t, mtls(writeCert("intruder", intruder, intruderKey))); !errors.Is(err, ErrTokenUnavailable) {
			t.Fatalf("error = %v, want ErrTokenUnavailable", err)
		}
	})
	t.Run("without a certificate the handshake fails", func(t *testing.T) {
		err := fetch(t, map[string]string{"AUTHSIDECAR_OUTBOUND_AUTH_METHOD": "client_secret_post"})
		if !errors.Is(err, ErrTokenUnavailable) {
			t.Fatalf("error = %v, want ErrTokenUnavailable", err)
		}
	})
	if got := ts.calls.Load(); got != before {
		t.Errorf("%d token requests got past the handshake without a trusted certificate", got-before)
	}
}

func TestTLSClientAuthRefusesAPlainHTTPTokenEndpoint(t *testing.T) {
	// A discovered endpoint is only known at the fetch.
	err := tlsClientAuth{}.apply(&clientcredentials.Config{TokenURL: "http://idp.test/token"})
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

func TestBuildRefusesMissingOrMismatchedCredentials(t *testing.T) {
	dir := t.TempDir()
	file := func(name, content string) string {
		p := filepath.Join(dir, name)
		must(t, os.WriteFile(p, []byte(content), 0o600))
		return p
	}
	const v = "AUTHSIDECAR_OUTBOUND_"
	for _, tc := range []struct {
		name   string
		mutate func(o *config.Outbound)
		want   string
	}{
		{"private_key_jwt without a key file", func(o *config.Outbound) { o.AuthMethod = "private_key_jwt" },
			"outbound: " + v + "AUTH_METHOD=private_key_jwt needs " + v + "PRIVATE_KEY_FILE"},
		{"tls_client_auth without a certificate", func(o *config.Outbound) { o.AuthMethod = "tls_client_auth" },
			"outbound: " + v + "AUTH_METHOD=tls_client_auth needs " + v + "TLS_CERT_FILE and " + v + "TLS_KEY_FILE"},
		{"client_assertion_file without a file", func(o *config.Outbound) { o.AuthMethod = "client_assertion_file" },
			"outbound: " + v + "AUTH_METHOD=client_assertion_file needs " + v + "CLIENT_ASSERTION_FILE"},
		{"an assertion file with a method that does not send it", func(o *config.Outbound) {
			o.ClientAssertionFile = file("unused", assertionV1)
		}, "outbound: " + v + "CLIENT_ASSERTION_FILE is set but " + v + "AUTH_METHOD is client_secret_basic, which does not send it"},
		{"a missing assertion file", func(o *config.Outbound) {
			o.AuthMethod, o.ClientAssertionFile = "", filepath.Join(dir, "missing")
		}, "outbound: " + v + "CLIENT_ASSERTION_FILE: open " + filepath.Join(dir, "missing") + ": no such file or directory"},
		{"an empty assertion file", func(o *config.Outbound) {
			o.AuthMethod, o.ClientAssertionFile = "client_assertion_file", file("empty", "\n")
		}, "outbound: " + v + "CLIENT_ASSERTION_FILE: " + filepath.Join(dir, "empty") + " is empty"},
		{"an assertion file that holds no JWT", func(o *config.Outbound) {
			o.AuthMethod, o.ClientAssertionFile = "client_assertion_file", file("secret", "a client secret")
		}, "outbound: " + v + "CLIENT_ASSERTION_FILE: " + filepath.Join(dir, "secret") + " does not hold a JWT (three base64url parts separated by dots)"},
		{"an unknown method", func(o *config.Outbound) { o.AuthMethod = "client_secret_jwt" },
			"outbound: " + v + `AUTH_METHOD: unknown method "client_secret_jwt"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := loadValid(t, env(fakeIDP(), "http://upstream.test", nil))
			tc.mutate(&cfg.Outbound)
			_, err := Build(t.Context(), cfg, nil, nil)
			if err == nil || err.Error() != tc.want {
				t.Fatalf("Build error = %v\nwant %s", err, tc.want)
			}
		})
	}
}

func TestAssertionsAreSignedOnTheInjectedClock(t *testing.T) {
	clock := newFakeClock()
	key := newECKey(t, elliptic.P256())
	path := filepath.Join(t.TempDir(), "key.pem")
	must(t, os.WriteFile(path, keyPEM(t, key, "PRIVATE KEY"), 0o600))
	a, err := newPrivateKeyJWT(config.Outbound{ClientID: testClientID, PrivateKeyFile: path}, clock.Now)
	must(t, err)
	cfg := &clientcredentials.Config{TokenURL: "https://idp.test/token", EndpointParams: url.Values{"audience": {"payments"}}}
	must(t, a.apply(cfg))
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
