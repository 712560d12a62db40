package config_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/authsidecar/authsidecar/config"
	"github.com/authsidecar/authsidecar/inbound"
	"github.com/authsidecar/authsidecar/internal/certtest"
)

func inboundEnv(extra map[string]string) map[string]string {
	m := map[string]string{
		"AUTHSIDECAR_INBOUND_ISSUERS":   "https://idp.example.com",
		"AUTHSIDECAR_INBOUND_AUDIENCES": "payments",
	}
	for k, v := range extra {
		m[k] = v
	}
	return m
}

func TestDefaultsMatchTheSpec(t *testing.T) {
	c, err := config.Load(inboundEnv(nil))
	if err != nil {
		t.Fatal(err)
	}
	if c.Inbound.Listen != ":8000" || c.Outbound.Listen != "127.0.0.1:4000" || c.General.AdminListen != ":9464" {
		t.Errorf("listeners = %q %q %q", c.Inbound.Listen, c.Outbound.Listen, c.General.AdminListen)
	}
	if c.Inbound.Upstream.String() != "http://127.0.0.1:8080" || c.Inbound.ClockSkew != 30*time.Second ||
		c.General.ShutdownGrace != 15*time.Second || c.General.LogLevel.String() != "info" || c.General.LogFormat != "json" {
		t.Errorf("defaults: %+v %+v", c.General, c.Inbound)
	}
	want := "RS256,RS384,RS512,PS256,PS384,PS512,ES256,ES384,ES512,EdDSA"
	if got := strings.Join(c.Inbound.Algorithms, ","); got != want {
		t.Errorf("algorithms = %s, want %s", got, want)
	}
	if c.Outbound.AuthMethod != config.SecretBasic {
		t.Errorf("auth method = %q", c.Outbound.AuthMethod)
	}
}

func TestListsAreTrimmed(t *testing.T) {
	c, err := config.Load(inboundEnv(map[string]string{
		"AUTHSIDECAR_INBOUND_AUDIENCES":       " a , b,,",
		"AUTHSIDECAR_INBOUND_REQUIRED_SCOPES": "read write,admin",
	}))
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(c.Inbound.Audiences, "|"); got != "a|b" {
		t.Errorf("audiences = %q", got)
	}
	if got := strings.Join(c.Inbound.RequiredScopes, "|"); got != "read|write|admin" {
		t.Errorf("scopes = %q", got)
	}
}

func TestEachBadVariableIsNamed(t *testing.T) {
	cases := []struct {
		name string
		env  map[string]string
		want string
	}{
		{"nothing to do", map[string]string{}, "AUTHSIDECAR_INBOUND_ISSUERS: neither AUTHSIDECAR_INBOUND_ISSUERS nor AUTHSIDECAR_OUTBOUND_ROUTES is set: nothing to do"},
		{"a bad duration", inboundEnv(map[string]string{"AUTHSIDECAR_SHUTDOWN_GRACE": "soon"}), `AUTHSIDECAR_SHUTDOWN_GRACE: cannot parse "soon"`},
		{"a bad bool", inboundEnv(map[string]string{"AUTHSIDECAR_ACCESS_LOG": "yes please"}), `AUTHSIDECAR_ACCESS_LOG: cannot parse "yes please"`},
		{"a bad log level", inboundEnv(map[string]string{"AUTHSIDECAR_LOG_LEVEL": "loud"}), `AUTHSIDECAR_LOG_LEVEL: want debug, info, warn or error, got "loud"`},
		{"a bad log format", inboundEnv(map[string]string{"AUTHSIDECAR_LOG_FORMAT": "xml"}), `AUTHSIDECAR_LOG_FORMAT: want json or text, got "xml"`},
		{"a bad listen address", inboundEnv(map[string]string{"AUTHSIDECAR_INBOUND_LISTEN": "8000"}), `AUTHSIDECAR_INBOUND_LISTEN: "8000" is not a host:port address`},
		{"a bad admin address", inboundEnv(map[string]string{"AUTHSIDECAR_ADMIN_LISTEN": "x"}), `AUTHSIDECAR_ADMIN_LISTEN: "x" is not a host:port address`},
		{"a non-http issuer", inboundEnv(map[string]string{"AUTHSIDECAR_INBOUND_ISSUERS": "idp.example.com"}), `AUTHSIDECAR_INBOUND_ISSUERS: "idp.example.com" is not an http(s) URL`},
		{"an issuer with a query", inboundEnv(map[string]string{"AUTHSIDECAR_INBOUND_ISSUERS": "https://idp.example.com/realms/a?tenant=x"}), `AUTHSIDECAR_INBOUND_ISSUERS: "https://idp.example.com/realms/a?tenant=[redacted]" has a query or fragment`},
		{"an outbound issuer with a fragment", outboundEnv(map[string]string{"AUTHSIDECAR_OUTBOUND_TOKEN_URL": "", "AUTHSIDECAR_OUTBOUND_ISSUER": "https://idp.example.com/#x"}), `AUTHSIDECAR_OUTBOUND_ISSUER: "https://idp.example.com/" has a query or fragment`},
		{"no audiences", map[string]string{"AUTHSIDECAR_INBOUND_ISSUERS": "https://a"}, "AUTHSIDECAR_INBOUND_AUDIENCES: is required when AUTHSIDECAR_INBOUND_ISSUERS is set"},
		{"HMAC allowed", inboundEnv(map[string]string{"AUTHSIDECAR_INBOUND_ALGORITHMS": "RS256,HS256"}), `AUTHSIDECAR_INBOUND_ALGORITHMS: "HS256" is not accepted`},
		{"none allowed", inboundEnv(map[string]string{"AUTHSIDECAR_INBOUND_ALGORITHMS": "none"}), `AUTHSIDECAR_INBOUND_ALGORITHMS: "none" is not accepted`},
		{"JWKS URL with two issuers", inboundEnv(map[string]string{"AUTHSIDECAR_INBOUND_ISSUERS": "https://a,https://b", "AUTHSIDECAR_INBOUND_JWKS_URL": "https://a/jwks"}), "AUTHSIDECAR_INBOUND_JWKS_URL: can only be used with one issuer, got 2"},
		{"a huge skew", inboundEnv(map[string]string{"AUTHSIDECAR_INBOUND_CLOCK_SKEW": "1h"}), "AUTHSIDECAR_INBOUND_CLOCK_SKEW: must be between 0s and 5m, got 1h0m0s"},
		{"a relative public path", inboundEnv(map[string]string{"AUTHSIDECAR_INBOUND_PUBLIC_PATHS": "healthz"}), `AUTHSIDECAR_INBOUND_PUBLIC_PATHS: "healthz" must start with /`},
		{"an unparsable upstream", inboundEnv(map[string]string{"AUTHSIDECAR_INBOUND_UPSTREAM": "127.0.0.1:8080"}), `AUTHSIDECAR_INBOUND_UPSTREAM: cannot parse "127.0.0.1:8080"`},
		{"a non-http upstream", inboundEnv(map[string]string{"AUTHSIDECAR_INBOUND_UPSTREAM": "unix:///app.sock"}), `AUTHSIDECAR_INBOUND_UPSTREAM: "unix:///app.sock" is not an http(s) URL`},
		{"a cert without key", inboundEnv(map[string]string{"AUTHSIDECAR_INBOUND_TLS_CERT_FILE": "/c.pem"}), "AUTHSIDECAR_INBOUND_TLS_KEY_FILE: AUTHSIDECAR_INBOUND_TLS_CERT_FILE and AUTHSIDECAR_INBOUND_TLS_KEY_FILE must be set together"},
		{"inbound settings without issuers", map[string]string{"AUTHSIDECAR_INBOUND_AUDIENCES": "a", "AUTHSIDECAR_OUTBOUND_ROUTES": "x"}, "AUTHSIDECAR_INBOUND_AUDIENCES: is set but AUTHSIDECAR_INBOUND_ISSUERS is not"},
		{"a tiny header cap", inboundEnv(map[string]string{"AUTHSIDECAR_MAX_HEADER_BYTES": "100"}), "AUTHSIDECAR_MAX_HEADER_BYTES: must be at least 4096, got 100"},
		{"a hasty JWKS refresh", inboundEnv(map[string]string{"AUTHSIDECAR_INBOUND_JWKS_REFRESH_INTERVAL": "5s"}), "AUTHSIDECAR_INBOUND_JWKS_REFRESH_INTERVAL: must be at least 1m, got 5s"},
		{"a negative cache size", inboundEnv(map[string]string{"AUTHSIDECAR_INBOUND_TOKEN_CACHE_SIZE": "-1"}), "AUTHSIDECAR_INBOUND_TOKEN_CACHE_SIZE: must not be negative, got -1"},
		{"no form bytes", inboundEnv(map[string]string{"AUTHSIDECAR_INBOUND_MAX_FORM_BYTES": "0"}), "AUTHSIDECAR_INBOUND_MAX_FORM_BYTES: must be from 1 to 1073741824 (1 GiB), got 0"},
		// 32 times it would overflow the budget of bodies held at once.
		{"form bytes past any budget", inboundEnv(map[string]string{"AUTHSIDECAR_INBOUND_MAX_FORM_BYTES": "999999999999999999"}), "AUTHSIDECAR_INBOUND_MAX_FORM_BYTES: must be from 1 to 1073741824 (1 GiB), got 999999999999999999"},
		{"form bytes not a number", inboundEnv(map[string]string{"AUTHSIDECAR_INBOUND_MAX_FORM_BYTES": "1MiB"}), "AUTHSIDECAR_INBOUND_MAX_FORM_BYTES"},
		{"an override body list of nothing", inboundEnv(map[string]string{"AUTHSIDECAR_INBOUND_METHOD_OVERRIDE_BODIES": " , "}), "AUTHSIDECAR_INBOUND_METHOD_OVERRIDE_BODIES: lists nothing: want form, json, form,json or none"},
		{"none with a kind", inboundEnv(map[string]string{"AUTHSIDECAR_INBOUND_METHOD_OVERRIDE_BODIES": "none,form"}), `AUTHSIDECAR_INBOUND_METHOD_OVERRIDE_BODIES: none cannot be listed with other kinds, got "none,form"`},
		{"an unknown override body", inboundEnv(map[string]string{"AUTHSIDECAR_INBOUND_METHOD_OVERRIDE_BODIES": "form,xml"}), `AUTHSIDECAR_INBOUND_METHOD_OVERRIDE_BODIES: want a list of form and json, or none; got "xml"`},
		{"a bad introspection mode", inboundEnv(map[string]string{"AUTHSIDECAR_INBOUND_INTROSPECT": "some"}), `AUTHSIDECAR_INBOUND_INTROSPECT: want opaque or all, got "some"`},
		{"introspection without a secret", inboundEnv(map[string]string{"AUTHSIDECAR_INBOUND_INTROSPECTION_CLIENT_ID": "rs"}), "AUTHSIDECAR_INBOUND_INTROSPECTION_CLIENT_SECRET: introspection needs"},
		{"an introspection URL without a client", inboundEnv(map[string]string{"AUTHSIDECAR_INBOUND_INTROSPECTION_URL": "https://idp/introspect"}), "AUTHSIDECAR_INBOUND_INTROSPECTION_URL: is set but AUTHSIDECAR_INBOUND_INTROSPECTION_CLIENT_ID is not"},
		{"allowed SANs without mTLS", inboundEnv(map[string]string{"AUTHSIDECAR_INBOUND_CLIENT_ALLOWED_SANS": "spiffe://x/y"}), "AUTHSIDECAR_INBOUND_CLIENT_ALLOWED_SANS: needs AUTHSIDECAR_INBOUND_CLIENT_CA_FILE"},
		{"bound tokens without mTLS", inboundEnv(map[string]string{"AUTHSIDECAR_INBOUND_REQUIRE_BOUND_TOKENS": "true"}), "AUTHSIDECAR_INBOUND_REQUIRE_BOUND_TOKENS: needs AUTHSIDECAR_INBOUND_CLIENT_CA_FILE"},
		{"a client CA without TLS", inboundEnv(map[string]string{"AUTHSIDECAR_INBOUND_CLIENT_CA_FILE": "/ca.pem"}), "AUTHSIDECAR_INBOUND_CLIENT_CA_FILE: needs AUTHSIDECAR_INBOUND_TLS_CERT_FILE"},
	}
	for _, tc := range cases {
		t.Run(tc.name+" is reported", func(t *testing.T) {
			_, err := config.Load(tc.env)
			var cfgErr *config.Error
			if !errors.As(err, &cfgErr) {
				t.Fatalf("Load() error = %v, want *config.Error", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error:\n%s\nwant it to contain:\n%s", err, tc.want)
			}
		})
	}
}

func TestEveryBadVariableIsReportedAtOnce(t *testing.T) {
	_, err := config.Load(map[string]string{
		"AUTHSIDECAR_INBOUND_ISSUERS":    "ftp://idp",
		"AUTHSIDECAR_LOG_LEVEL":          "loud",
		"AUTHSIDECAR_SHUTDOWN_GRACE":     "soon",
		"AUTHSIDECAR_INBOUND_ALGORITHMS": "HS256",
	})
	var cfgErr *config.Error
	if !errors.As(err, &cfgErr) {
		t.Fatalf("error = %v", err)
	}
	var got []string
	for _, p := range cfgErr.Problems {
		got = append(got, p.Var)
	}
	want := []string{
		"AUTHSIDECAR_INBOUND_ALGORITHMS", "AUTHSIDECAR_INBOUND_AUDIENCES", "AUTHSIDECAR_INBOUND_ISSUERS",
		"AUTHSIDECAR_LOG_LEVEL", "AUTHSIDECAR_SHUTDOWN_GRACE",
	}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("problems name %q, want %q", got, want)
	}
}

func TestWriteRedactsSecrets(t *testing.T) {
	c, err := config.Load(map[string]string{
		"AUTHSIDECAR_OUTBOUND_ROUTES":         "payments",
		"AUTHSIDECAR_OUTBOUND_TOKEN_URL":      "https://idp/token",
		"AUTHSIDECAR_OUTBOUND_CLIENT_ID":      "orders",
		"AUTHSIDECAR_OUTBOUND_CLIENT_SECRET":  "s3cr3t-value",
		"AUTHSIDECAR_ROUTE_PAYMENTS_URL":      "https://user:pw@payments.internal",
		"AUTHSIDECAR_ROUTE_PAYMENTS_AUDIENCE": "payments",
	})
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	if err := c.Write(&b); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, leak := range []string{"s3cr3t-value", ":pw@"} {
		if strings.Contains(out, leak) {
			t.Errorf("output leaks %q:\n%s", leak, out)
		}
	}
	for _, line := range []string{
		"AUTHSIDECAR_OUTBOUND_CLIENT_SECRET=[redacted]\n",
		"AUTHSIDECAR_ROUTE_PAYMENTS_AUDIENCE=payments\n",
		"AUTHSIDECAR_INBOUND_LISTEN=:8000\n",
		"AUTHSIDECAR_SHUTDOWN_GRACE=15s\n",
	} {
		if !strings.Contains(out, line) {
			t.Errorf("output lacks %q:\n%s", line, out)
		}
	}
	if s := config.Secret("x"); s.String() != "[redacted]" || s.GoString() != `"[redacted]"` {
		t.Errorf("Secret prints %v / %#v", s, s)
	}
}

func outboundEnv(extra map[string]string) map[string]string {
	m := map[string]string{
		"AUTHSIDECAR_OUTBOUND_ROUTES":    "payments",
		"AUTHSIDECAR_OUTBOUND_TOKEN_URL": "https://idp.example.com/token",
		"AUTHSIDECAR_OUTBOUND_CLIENT_ID": "orders",
		"AUTHSIDECAR_ROUTE_PAYMENTS_URL": "http://payments.internal",
	}
	for k, v := range extra {
		if v == "" {
			delete(m, k)
		} else {
			m[k] = v
		}
	}
	return m
}

func TestOutboundClientAuthenticationProblemsAreNamed(t *testing.T) {
	const v = "AUTHSIDECAR_OUTBOUND_"
	mtls := map[string]string{v + "AUTH_METHOD": "tls_client_auth", v + "TLS_CERT_FILE": "/tls/tls.crt", v + "TLS_KEY_FILE": "/tls/tls.key"}
	with := func(base map[string]string, kv ...string) map[string]string {
		m := map[string]string{}
		for k, val := range base {
			m[k] = val
		}
		for i := 0; i < len(kv); i += 2 {
			m[v+kv[i]] = kv[i+1]
		}
		return outboundEnv(m)
	}
	cases := []struct {
		name string
		env  map[string]string
		want []string // every problem, exactly
	}{
		{"a secret method without a secret", with(nil),
			[]string{v + "CLIENT_SECRET: client_secret_basic needs " + v + "CLIENT_SECRET or " + v + "CLIENT_SECRET_FILE"}},
		{"private_key_jwt without a key file", with(nil, "AUTH_METHOD", "private_key_jwt"),
			[]string{v + "PRIVATE_KEY_FILE: is required when " + v + "AUTH_METHOD is private_key_jwt"}},
		{"private_key_jwt with a client secret left over", with(nil, "AUTH_METHOD", "private_key_jwt", "PRIVATE_KEY_FILE", "/k.pem", "CLIENT_SECRET", "s"),
			[]string{v + "CLIENT_SECRET: is set, but " + v + "AUTH_METHOD=private_key_jwt does not use it: remove it, or set " + v + "AUTH_METHOD to client_secret_basic or client_secret_post"}},
		{"tls_client_auth without a certificate", with(nil, "AUTH_METHOD", "tls_client_auth"),
			[]string{v + "TLS_CERT_FILE: is required when " + v + "AUTH_METHOD is tls_client_auth: the token endpoint identifies the client by its certificate"}},
		{"tls_client_auth with a certificate but no key", with(nil, "AUTH_METHOD", "tls_client_auth", "TLS_CERT_FILE", "/tls/tls.crt"),
			[]string{v + "TLS_KEY_FILE: " + v + "TLS_CERT_FILE and " + v + "TLS_KEY_FILE must be set together"}},
		{"tls_client_auth with a plain HTTP token URL", with(mtls, "TOKEN_URL", "http://idp.example.com/token"),
			[]string{v + `TOKEN_URL: must be https when ` + v + `AUTH_METHOD is tls_client_auth: the client certificate is presented only over TLS; got "http://idp.example.com/token"`}},
		{"tls_client_auth with a plain HTTP issuer", with(mtls, "TOKEN_URL", "", "ISSUER", "http://idp.example.com"),
			[]string{v + `ISSUER: must be https when ` + v + `AUTH_METHOD is tls_client_auth: the client certificate is presented only over TLS; got "http://idp.example.com"`}},
		{"tls_client_auth with a secret file and a key id left over", with(mtls, "CLIENT_SECRET_FILE", "/s", "PRIVATE_KEY_ID", "k1"), []string{
			v + "CLIENT_SECRET_FILE: is set, but " + v + "AUTH_METHOD=tls_client_auth does not use it: remove it, or set " + v + "AUTH_METHOD to client_secret_basic or client_secret_post",
			v + "PRIVATE_KEY_ID: is set, but " + v + "AUTH_METHOD=tls_client_auth does not use it: remove it, or set " + v + "AUTH_METHOD to private_key_jwt",
		}},
		{"client_assertion_file without the file", with(nil, "AUTH_METHOD", "client_assertion_file"),
			[]string{v + "CLIENT_ASSERTION_FILE: is required when " + v + "AUTH_METHOD is client_assertion_file"}},
		{"an assertion file with another method set", with(nil, "AUTH_METHOD", "client_secret_post", "CLIENT_SECRET", "s", "CLIENT_ASSERTION_FILE", "/token"),
			[]string{v + "CLIENT_ASSERTION_FILE: is set, but " + v + "AUTH_METHOD=client_secret_post does not send it: leave " + v + "AUTH_METHOD unset to authenticate with the file, or remove it"}},
		{"an assertion file and a secret, AUTH_METHOD unset", with(nil, "CLIENT_ASSERTION_FILE", "/token", "CLIENT_SECRET", "s"),
			[]string{v + "CLIENT_SECRET: is set, but so is " + v + "CLIENT_ASSERTION_FILE, with which the client authenticates alone: remove one of them"}},
		{"an assertion file and a private key, AUTH_METHOD unset", with(nil, "CLIENT_ASSERTION_FILE", "/token", "PRIVATE_KEY_FILE", "/k.pem"),
			[]string{v + "PRIVATE_KEY_FILE: is set, but so is " + v + "CLIENT_ASSERTION_FILE, with which the client authenticates alone: remove one of them"}},
		{"a private key with a secret method", with(nil, "CLIENT_SECRET", "s", "PRIVATE_KEY_FILE", "/k.pem"),
			[]string{v + "PRIVATE_KEY_FILE: is set, but " + v + "AUTH_METHOD=client_secret_basic does not use it: remove it, or set " + v + "AUTH_METHOD to private_key_jwt"}},
		{"an unknown method", with(nil, "AUTH_METHOD", "client_secret_jwt", "CLIENT_SECRET", "s"),
			[]string{v + `AUTH_METHOD: want one of client_secret_basic, client_secret_post, private_key_jwt, tls_client_auth, client_assertion_file, got "client_secret_jwt"`}},
	}
	for _, tc := range cases {
		t.Run(tc.name+" is reported", func(t *testing.T) {
			_, err := config.Load(tc.env)
			var cfgErr *config.Error
			if !errors.As(err, &cfgErr) {
				t.Fatalf("Load() error = %v, want *config.Error", err)
			}
			var got []string
			for _, p := range cfgErr.Problems {
				got = append(got, p.Var+": "+p.Msg)
			}
			if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Errorf("problems:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
		})
	}
}

func TestOutboundClientAuthenticationMethodsLoad(t *testing.T) {
	const v = "AUTHSIDECAR_OUTBOUND_"
	f := writeFiles(t)
	for _, tc := range []struct {
		name, wantMethod string
		env              map[string]string
	}{
		{"a client secret", "client_secret_basic", outboundEnv(map[string]string{v + "CLIENT_SECRET": "s"})},
		{"a private key", "private_key_jwt", outboundEnv(map[string]string{
			v + "AUTH_METHOD": "private_key_jwt", v + "PRIVATE_KEY_FILE": f.key, v + "PRIVATE_KEY_ID": "k1"})},
		{"a client certificate over https", "tls_client_auth", outboundEnv(map[string]string{
			v + "AUTH_METHOD": "tls_client_auth", v + "TLS_CERT_FILE": f.cert, v + "TLS_KEY_FILE": f.key})},
		{"an assertion file alone", "client_assertion_file", outboundEnv(map[string]string{v + "CLIENT_ASSERTION_FILE": f.assertion})},
		{"an assertion file named by its method", "client_assertion_file", outboundEnv(map[string]string{
			v + "AUTH_METHOD": "client_assertion_file", v + "CLIENT_ASSERTION_FILE": f.assertion})},
	} {
		t.Run(tc.name+" loads", func(t *testing.T) {
			c, err := config.Load(tc.env)
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			if string(c.Outbound.AuthMethod) != tc.wantMethod {
				t.Errorf("AuthMethod = %q, want %q", c.Outbound.AuthMethod, tc.wantMethod)
			}
			var b strings.Builder
			if err := c.Write(&b); err != nil {
				t.Fatal(err)
			}
			if line := v + "AUTH_METHOD=" + tc.wantMethod + "\n"; !strings.Contains(b.String(), line) {
				t.Errorf("check output lacks %q:\n%s", line, b.String())
			}
		})
	}
}

// files are real files of every kind the configuration reads.
type files struct {
	dir                                     string
	cert, key, ca, assertion, secret, rules string
}

func writeFiles(t *testing.T) files {
	t.Helper()
	dir := t.TempDir()
	ca := certtest.NewCA(t, "test-ca")
	f := files{dir: dir, ca: ca.WriteFile(t, dir, "ca")}
	f.cert, f.key = ca.Issue(t, certtest.Options{CommonName: "sidecar"}).WriteFiles(t, dir, "tls")
	write := func(name, content string) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	f.assertion = write("token", "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJvcmRlcnMifQ.c2lnbmF0dXJl\n")
	f.secret = write("secret", "s3cret\n")
	f.rules = write("rules.yaml", "rules:\n  - paths: [\"/admin/**\"]\n    scopes: [admin]\n")
	return f
}

func TestBadRulesFileIsNamedWithItsRule(t *testing.T) {
	dir := t.TempDir()
	bad := dir + "/rules.yaml"
	if err := os.WriteFile(bad, []byte("rules:\n  - paths: [\"/admin/**\"]\n    scope: [admin]\n  - paths: [\"admin\"]\n    public: true\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := config.Load(inboundEnv(map[string]string{"AUTHSIDECAR_INBOUND_RULES_FILE": bad}))
	for _, want := range []string{
		`AUTHSIDECAR_INBOUND_RULES_FILE: rules: rule 1 (/admin/**): unknown key "scope"`,
		`rule 2 (admin)`,
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error:\n%v\nwant it to contain %q", err, want)
		}
	}
	_, err = config.Load(inboundEnv(map[string]string{"AUTHSIDECAR_INBOUND_RULES_FILE": dir + "/missing.yaml"}))
	if err == nil || !strings.Contains(err.Error(), "AUTHSIDECAR_INBOUND_RULES_FILE: ") {
		t.Errorf("missing rules file: error %v, want it named", err)
	}
}

func TestOutboundListenerStaysOnLoopbackUnlessAllowed(t *testing.T) {
	base := map[string]string{
		"AUTHSIDECAR_OUTBOUND_ROUTES": "payments", "AUTHSIDECAR_OUTBOUND_TOKEN_URL": "https://idp/token",
		"AUTHSIDECAR_OUTBOUND_CLIENT_ID": "orders", "AUTHSIDECAR_OUTBOUND_CLIENT_SECRET": "s",
		"AUTHSIDECAR_ROUTE_PAYMENTS_URL": "https://payments",
	}
	with := func(extra map[string]string) map[string]string {
		m := map[string]string{}
		for k, v := range base {
			m[k] = v
		}
		for k, v := range extra {
			m[k] = v
		}
		return m
	}
	for _, tc := range []struct {
		name string
		env  map[string]string
		want string // "" for no error
	}{
		{"the default is loopback", with(nil), ""},
		{"localhost is loopback", with(map[string]string{"AUTHSIDECAR_OUTBOUND_LISTEN": "localhost:4000"}), ""},
		{"every interface is refused", with(map[string]string{"AUTHSIDECAR_OUTBOUND_LISTEN": ":4000"}),
			`AUTHSIDECAR_OUTBOUND_LISTEN: ":4000" is not a loopback address`},
		{"a pod address is refused", with(map[string]string{"AUTHSIDECAR_OUTBOUND_LISTEN": "10.0.0.7:4000"}),
			`AUTHSIDECAR_OUTBOUND_LISTEN: "10.0.0.7:4000" is not a loopback address`},
		{"ALLOW_REMOTE allows it", with(map[string]string{"AUTHSIDECAR_OUTBOUND_LISTEN": ":4000", "AUTHSIDECAR_OUTBOUND_ALLOW_REMOTE": "true"}), ""},
		{"a bad route name is named", with(map[string]string{"AUTHSIDECAR_OUTBOUND_ROUTES": "Payments_API"}),
			`AUTHSIDECAR_OUTBOUND_ROUTES: route name "Payments_API" must match [a-z0-9-]+`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := config.Load(tc.env)
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("error %v, want none", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("error %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

func TestMethodOverrideBodiesAreRead(t *testing.T) {
	for v, want := range map[string]inbound.OverrideBodies{
		"":          {Forms: true},
		"none":      {},
		"json,FORM": {Forms: true, JSON: true},
		"json":      {JSON: true},
	} {
		c, err := config.Load(inboundEnv(map[string]string{"AUTHSIDECAR_INBOUND_METHOD_OVERRIDE_BODIES": v}))
		if err != nil {
			t.Fatalf("%q: %v", v, err)
		}
		if got := *c.InboundOptions.MethodOverrideBodies; got != want {
			t.Errorf("%q: %+v, want %+v", v, got, want)
		}
	}
}
