package main

import (
	"bytes"
	"context"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/authsidecar/authsidecar/internal/certtest"
)

// TestEveryMissingFileStopsCheckAndStartAlikeBeforeAnyPort holds start-up
// to what check says: for every variable that names a file, a missing file
// is exit 2 from both, naming the variable. The ports are held by the test
// while the sidecar starts: had it tried to bind one, it would fail with
// "address already in use" (exit 1) instead.
func TestEveryMissingFileStopsCheckAndStartAlikeBeforeAnyPort(t *testing.T) {
	dir := t.TempDir()
	ca := certtest.NewCA(t, "ca")
	cert, key := ca.Issue(t, certtest.Options{CommonName: "sidecar"}).WriteFiles(t, dir, "tls")
	missing := filepath.Join(dir, "missing")
	const in, out = "AUTHSIDECAR_INBOUND_", "AUTHSIDECAR_OUTBOUND_"
	tlsIn := map[string]string{in + "TLS_CERT_FILE": cert, in + "TLS_KEY_FILE": key}
	noSecret := map[string]string{out + "CLIENT_SECRET": ""}
	for _, tc := range []struct {
		variable string
		extra    map[string]string
	}{
		{in + "TLS_CERT_FILE", merge(tlsIn, map[string]string{in + "TLS_CERT_FILE": missing})},
		{in + "TLS_KEY_FILE", merge(tlsIn, map[string]string{in + "TLS_KEY_FILE": missing})},
		{in + "CLIENT_CA_FILE", merge(tlsIn, map[string]string{in + "CLIENT_CA_FILE": missing})},
		{in + "RULES_FILE", map[string]string{in + "RULES_FILE": missing}},
		{in + "INTROSPECTION_CLIENT_SECRET_FILE", map[string]string{in + "INTROSPECTION_CLIENT_ID": "rs", in + "INTROSPECTION_CLIENT_SECRET_FILE": missing}},
		{out + "CLIENT_SECRET_FILE", merge(noSecret, map[string]string{out + "CLIENT_SECRET_FILE": missing})},
		{out + "PRIVATE_KEY_FILE", merge(noSecret, map[string]string{out + "AUTH_METHOD": "private_key_jwt", out + "PRIVATE_KEY_FILE": missing})},
		{out + "CLIENT_ASSERTION_FILE", merge(noSecret, map[string]string{out + "CLIENT_ASSERTION_FILE": missing})},
		{out + "TLS_CA_FILE", map[string]string{out + "TLS_CA_FILE": missing}},
		{out + "TLS_CERT_FILE", map[string]string{out + "TLS_CERT_FILE": missing, out + "TLS_KEY_FILE": key}},
		{out + "TLS_KEY_FILE", map[string]string{out + "TLS_CERT_FILE": cert, out + "TLS_KEY_FILE": missing}},
	} {
		t.Run("a missing "+tc.variable, func(t *testing.T) {
			hold := func() string {
				ln, err := net.Listen("tcp", "127.0.0.1:0")
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { ln.Close() })
				return ln.Addr().String()
			}
			env := merge(map[string]string{
				in + "ISSUERS": "https://idp.example.com", in + "AUDIENCES": "payments", in + "LISTEN": hold(),
				out + "ROUTES": "payments", out + "TOKEN_URL": "https://idp.example.com/token", out + "CLIENT_ID": "orders",
				out + "CLIENT_SECRET": "s", out + "LISTEN": hold(), "AUTHSIDECAR_ROUTE_PAYMENTS_URL": "https://payments.internal",
				"AUTHSIDECAR_ADMIN_LISTEN": hold(),
			}, tc.extra)
			unset(env)
			want := tc.variable + ": stat " + missing + ": no such file or directory"
			for _, args := range [][]string{{"check"}, nil} {
				var stdout, stderr bytes.Buffer
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				code := exitCode(run(ctx, args, env, &stdout, &stderr), &stderr)
				cancel()
				if code != 2 || !strings.Contains(stderr.String(), want) || stdout.Len() != 0 {
					t.Errorf("%q: exit %d, stdout %q, stderr %q; want exit 2 naming %s", args, code, stdout.String(), stderr.String(), want)
				}
			}
		})
	}
}

// merge returns the union of ms, later maps winning.
func merge(ms ...map[string]string) map[string]string {
	out := map[string]string{}
	for _, m := range ms {
		for k, v := range m {
			out[k] = v
		}
	}
	return out
}

// unset drops the variables set to "", as if never set.
func unset(env map[string]string) map[string]string {
	for k, v := range env {
		if v == "" {
			delete(env, k)
		}
	}
	return env
}
