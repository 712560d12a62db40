package config_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/authsidecar/authsidecar/config"
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
		c.General.ShutdownGrace != 15*time.Second || c.General.LogLevel != "info" || c.General.LogFormat != "json" {
		t.Errorf("defaults: %+v %+v", c.General, c.Inbound)
	}
	want := "RS256,RS384,RS512,PS256,PS384,PS512,ES256,ES384,ES512,EdDSA"
	if got := strings.Join(c.Inbound.Algorithms, ","); got != want {
		t.Errorf("algorithms = %s, want %s", got, want)
	}
	if c.Outbound.AuthMethod != "client_secret_basic" {
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
