package config_test

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/authsidecar/authsidecar/config"
	"github.com/authsidecar/authsidecar/discovery"
	"github.com/authsidecar/authsidecar/inbound"
	"github.com/authsidecar/authsidecar/internal/certtest"
	"github.com/authsidecar/authsidecar/internal/handoff"
	"github.com/authsidecar/authsidecar/outbound"
)

// FuzzLoad runs config.Load over fuzzed environments, "KEY=value" lines.
// A variable ending in _FILE names a file in a directory of the test's
// own: "@N" the N-th part of files (parts split by a "--8<--" line);
// "@ca", "@cert" and "@key" a CA, a certificate and its key made at
// start, which mutated bytes would only make unreadable; anything else a
// file that does not exist. So no input reads the machine's files. Load
// must end in one of two ways:
//   - a Config with options for each enabled direction and none for the
//     other, which inbound.New and outbound.New accept, whose identity
//     provider URLs and algorithms pass the rules they are held to;
//   - an *config.Error whose every problem names an AUTHSIDECAR_ variable,
//     sorted, and names every variable the sidecar does not read.
//
// Loading twice gives the same; the secrets never show, in the error or
// in what `authsidecar check` prints.
func FuzzLoad(f *testing.F) {
	fixed := fixedFiles(f)
	for _, env := range configSeeds {
		f.Add(env, []byte(configParts))
	}
	f.Fuzz(func(t *testing.T, envText string, files []byte) {
		environ := fuzzEnviron(t, fixed, envText, files)
		cfg, err := config.Load(environ)
		out := describeLoad(t, environ, cfg, err)
		cfg2, err2 := config.Load(environ)
		if again := describeLoad(t, environ, cfg2, err2); again != out {
			t.Fatalf("%q: loaded twice, got\n%s\nthen\n%s", envText, out, again)
		}
		if !strings.Contains(envText, secretCanary) && strings.Contains(out, secretCanary) {
			t.Fatalf("%q: a secret shows:\n%s", envText, out)
		}
	})
}

// secretCanary ends every secret the fuzzer sets, so that it can be
// looked for in what Load says.
const secretCanary = "-canary-Zq7k"

// fuzzEnviron turns "KEY=value" lines into an environment, with file
// variables pointed into a directory of the test's own.
func fuzzEnviron(t *testing.T, fixed map[string]string, envText string, files []byte) map[string]string {
	dir := t.TempDir()
	parts := bytes.Split(files, []byte("\n--8<--\n"))
	environ := map[string]string{}
	for line := range strings.SplitSeq(envText, "\n") {
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			continue
		}
		switch {
		case strings.HasSuffix(k, "_FILE") && v != "":
			v = fuzzFile(t, dir, fixed, parts, v)
		case strings.HasSuffix(k, "CLIENT_SECRET") && v != "":
			v += secretCanary
		}
		environ[k] = v
	}
	return environ
}

func fuzzFile(t *testing.T, dir string, fixed map[string]string, parts [][]byte, v string) string {
	if p, ok := fixed[v]; ok {
		return p
	}
	n, err := strconv.Atoi(strings.TrimPrefix(v, "@"))
	if !strings.HasPrefix(v, "@") || err != nil || n < 0 {
		return filepath.Join(dir, "missing")
	}
	p := filepath.Join(dir, "part-"+strconv.Itoa(n%len(parts)))
	if err := os.WriteFile(p, parts[n%len(parts)], 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// describeLoad checks Load's result and returns what it says: the
// error, or the printed configuration.
func describeLoad(t *testing.T, environ map[string]string, cfg *config.Config, err error) string {
	t.Helper()
	var cerr *config.Error
	switch {
	case err == nil && cfg == nil:
		t.Fatalf("%q: Load returned neither a config nor an error", environ)
	case err != nil && cfg != nil:
		t.Fatalf("%q: Load returned a config and %v", environ, err)
	case err != nil && !errors.As(err, &cerr):
		t.Fatalf("%q: Load's error %v is not a *config.Error", environ, err)
	case err != nil:
		checkProblems(t, environ, cerr)
		return err.Error()
	}
	checkConfig(t, environ, cfg)
	var b strings.Builder
	if err := cfg.Write(&b); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func checkProblems(t *testing.T, environ map[string]string, e *config.Error) {
	t.Helper()
	if len(e.Problems) == 0 {
		t.Fatalf("%q: a *config.Error without problems", environ)
	}
	if !sort.SliceIsSorted(e.Problems, func(i, j int) bool { return e.Problems[i].Var < e.Problems[j].Var }) {
		t.Fatalf("%q: problems not sorted by variable: %v", environ, e)
	}
	for _, p := range e.Problems {
		if !strings.HasPrefix(p.Var, config.Prefix) || p.Msg == "" {
			t.Fatalf("%q: problem %q: %q names no AUTHSIDECAR_ variable", environ, p.Var, p.Msg)
		}
	}
	for _, name := range unknownVariables(environ) {
		if !slices.ContainsFunc(e.Problems, func(p config.Problem) bool { return p.Var == name }) {
			t.Fatalf("%q: %s is no variable the sidecar reads, and the error does not name it: %v", environ, name, e)
		}
	}
}

// unknownVariables lists the AUTHSIDECAR_ variables of environ that are
// none the sidecar reads, route variables counted for listed routes.
func unknownVariables(environ map[string]string) []string {
	known := map[string]bool{}
	var routeKeys []string
	for _, v := range config.Variables() {
		if key, ok := strings.CutPrefix(v, config.Prefix+"ROUTE_<NAME>_"); ok {
			routeKeys = append(routeKeys, key)
			continue
		}
		known[v] = true
	}
	for _, r := range strings.Split(environ[config.Prefix+"OUTBOUND_ROUTES"], ",") {
		r = strings.TrimSpace(r)
		if r == "" || strings.Trim(r, "abcdefghijklmnopqrstuvwxyz0123456789-") != "" {
			continue
		}
		for _, key := range routeKeys {
			known[config.RoutePrefix(r)+key] = true
		}
	}
	var out []string
	for k := range environ {
		if strings.HasPrefix(k, config.Prefix) && !known[k] {
			out = append(out, k)
		}
	}
	return out
}

func checkConfig(t *testing.T, environ map[string]string, cfg *config.Config) {
	t.Helper()
	if len(unknownVariables(environ)) > 0 {
		t.Fatalf("%q: loaded, though %q are no variables the sidecar reads", environ, unknownVariables(environ))
	}
	in, out := cfg.Inbound.Enabled(), cfg.Outbound.Enabled()
	switch {
	case !in && !out:
		t.Fatalf("%q: loaded with neither direction on", environ)
	case in != (cfg.InboundOptions != nil), out != (cfg.OutboundOptions != nil):
		t.Fatalf("%q: inbound on %v with options %v, outbound on %v with options %v",
			environ, in, cfg.InboundOptions != nil, out, cfg.OutboundOptions != nil)
	}
	insecure := cfg.General.AllowInsecureHTTP
	// What the program adds, as internal/sidecar does: the callers' tokens
	// for token exchange, which needs inbound on too.
	var callers *handoff.Store
	if in && out && slices.ContainsFunc(cfg.OutboundOptions.Routes, func(r outbound.RouteOptions) bool { return r.Grant == outbound.GrantTokenExchange }) {
		callers = handoff.New(16)
	}
	if in {
		checkInbound(t, environ, *cfg.InboundOptions, insecure, callers)
	}
	if out {
		opts := *cfg.OutboundOptions
		if opts.Issuer != "" {
			checkIdentityURL(t, environ, opts.Issuer, insecure, true)
		}
		opts.Handoff = callers
		if _, err := outbound.New(opts); err != nil {
			t.Fatalf("%q: loaded, but outbound.New refuses the options: %v", environ, err)
		}
	}
}

func checkInbound(t *testing.T, environ map[string]string, opts inbound.Options, insecure bool, callers *handoff.Store) {
	t.Helper()
	if opts.Rules == nil || opts.Upstream == nil || len(opts.Audiences) == 0 {
		t.Fatalf("%q: inbound options without rules, upstream or audiences: %+v", environ, opts)
	}
	for _, iss := range opts.Issuers {
		checkIdentityURL(t, environ, iss, insecure, true)
	}
	if opts.JWKSURL != "" {
		checkIdentityURL(t, environ, opts.JWKSURL, insecure, false)
	}
	for _, alg := range opts.Algorithms {
		if alg == "none" || strings.HasPrefix(strings.ToUpper(alg), "HS") {
			t.Fatalf("%q: loaded with algorithm %q", environ, alg)
		}
	}
	opts.Handoff = callers
	if _, err := inbound.New(opts); err != nil {
		t.Fatalf("%q: loaded, but inbound.New refuses the options: %v", environ, err)
	}
}

func checkIdentityURL(t *testing.T, environ map[string]string, u string, insecure, issuer bool) {
	t.Helper()
	err := discovery.SecureURL(u, insecure)
	if err == nil && issuer {
		err = discovery.CheckIssuer(u)
	}
	if err != nil {
		t.Fatalf("%q: loaded with identity provider URL %q, which %v", environ, u, err)
	}
}

// fixedFiles writes a CA, a certificate and its key, named "@ca",
// "@cert" and "@key" in the environments.
func fixedFiles(f *testing.F) map[string]string {
	dir := f.TempDir()
	ca := certtest.NewCA(f, "fuzz-ca")
	cert, key := ca.Issue(f, certtest.Options{CommonName: "payments"}).WriteFiles(f, dir, "payments")
	return map[string]string{"@ca": ca.WriteFile(f, dir, "ca"), "@cert": cert, "@key": key}
}

// configParts are the files the seeds name by number: @0 a rules file,
// @1 a secret, @2 a client assertion.
const configParts = "rules:\n  - paths: [\"/healthz\"]\n    public: true\n  - paths: [\"/admin/**\"]\n    scopes: [admin]\n" +
	"    when: 'claims.tenant == request.headers[\"x-tenant\"]'\n" +
	"\n--8<--\ns3cret-from-a-file\n" +
	"\n--8<--\neyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQ6c2hvcDpvcmRlcnMifQ.c2lnbmF0dXJl\n"

// configSeeds are environments as the README, the chart and the examples
// set them, and as they go wrong.
var configSeeds = []string{
	envLines("INBOUND_ISSUERS=https://idp.example.com/realms/prod", "INBOUND_AUDIENCES=payments"),
	envLines("INBOUND_ISSUERS=https://idp.example.com/realms/prod,https://login.example.org/tenant/v2.0", "INBOUND_AUDIENCES=payments, api://payments",
		"INBOUND_REQUIRED_SCOPES=payments:read payments:write", "INBOUND_ALLOWED_CLIENTS=orders,billing", "INBOUND_PUBLIC_PATHS=/healthz,/docs/",
		"INBOUND_UPSTREAM=http://127.0.0.1:8080", "INBOUND_LISTEN=:8000", "ADMIN_LISTEN=:9464", "LOG_LEVEL=debug", "LOG_FORMAT=text",
		"ACCESS_LOG=true", "SHUTDOWN_GRACE=20s", "SHUTDOWN_DELAY=5s", "INBOUND_CLOCK_SKEW=1m", "INBOUND_ALGORITHMS=RS256,ES256"),
	envLines("INBOUND_ISSUERS=https://idp.example.com", "INBOUND_AUDIENCES=payments", "INBOUND_JWKS_URL=https://idp.example.com/keys",
		"INBOUND_RULES_FILE=@0", "INBOUND_TLS_CERT_FILE=@cert", "INBOUND_TLS_KEY_FILE=@key", "INBOUND_CLIENT_CA_FILE=@ca",
		"INBOUND_CLIENT_ALLOWED_SANS=spiffe://cluster.local/ns/shop/sa/orders", "INBOUND_REQUIRE_BOUND_TOKENS=true"),
	envLines("INBOUND_ISSUERS=https://idp.example.com", "INBOUND_AUDIENCES=payments", "INBOUND_INTROSPECTION_CLIENT_ID=payments-rs",
		"INBOUND_INTROSPECTION_CLIENT_SECRET=rs-secret", "INBOUND_INTROSPECT=all", "INBOUND_INTROSPECTION_CACHE_TTL=10s"),
	envLines("INBOUND_ISSUERS=http://127.0.0.1:4444/", "INBOUND_AUDIENCES=payments", "INBOUND_INTROSPECTION_AUTH_METHOD=none",
		"INBOUND_INTROSPECTION_URL=http://127.0.0.1:4445/admin/oauth2/introspect"),
	envLines("OUTBOUND_ROUTES=payments,billing-api", "OUTBOUND_TOKEN_URL=https://idp.example.com/realms/prod/protocol/openid-connect/token",
		"OUTBOUND_CLIENT_ID=orders", "OUTBOUND_CLIENT_SECRET=orders-secret", "ROUTE_PAYMENTS_URL=https://payments.example.com",
		"ROUTE_PAYMENTS_AUDIENCE=payments", "ROUTE_PAYMENTS_SCOPES=payments:read,payments:write", "ROUTE_BILLING_API_URL=http://billing:8080",
		"ROUTE_BILLING_API_RESOURCE=https://billing.example.com/", "ROUTE_BILLING_API_LISTEN=127.0.0.1:4001"),
	envLines("OUTBOUND_ROUTES=payments", "OUTBOUND_ISSUER=https://idp.example.com", "OUTBOUND_CLIENT_ID=orders",
		"OUTBOUND_AUTH_METHOD=private_key_jwt", "OUTBOUND_PRIVATE_KEY_FILE=@key", "OUTBOUND_PRIVATE_KEY_ID=orders-2026",
		"OUTBOUND_TLS_CA_FILE=@ca", "ROUTE_PAYMENTS_URL=https://payments.example.com"),
	envLines("OUTBOUND_ROUTES=payments", "OUTBOUND_TOKEN_URL=https://idp.example.com/token", "OUTBOUND_CLIENT_ID=orders",
		"OUTBOUND_CLIENT_ASSERTION_FILE=@2", "ROUTE_PAYMENTS_URL=https://payments.example.com"),
	envLines("OUTBOUND_ROUTES=payments", "OUTBOUND_TOKEN_URL=https://idp.example.com/token", "OUTBOUND_CLIENT_ID=orders",
		"OUTBOUND_AUTH_METHOD=tls_client_auth", "OUTBOUND_TLS_CERT_FILE=@cert", "OUTBOUND_TLS_KEY_FILE=@key", "ROUTE_PAYMENTS_URL=https://payments.example.com"),
	envLines("OUTBOUND_ROUTES=payments", "OUTBOUND_TOKEN_URL=https://idp.example.com/token", "OUTBOUND_CLIENT_ID=orders",
		"OUTBOUND_CLIENT_SECRET_FILE=@1", "ROUTE_PAYMENTS_URL=http://payments:8080", "INBOUND_ISSUERS=https://idp.example.com",
		"INBOUND_AUDIENCES=orders", "OUTBOUND_LISTEN=0.0.0.0:4000", "OUTBOUND_ALLOW_REMOTE=true"),
	envLines("INBOUND_ISSUERS=https://idp.example.com", "INBOUND_AUDIENCES=orders", "OUTBOUND_ROUTES=payments",
		"OUTBOUND_TOKEN_URL=https://idp.example.com/token", "OUTBOUND_CLIENT_ID=orders", "OUTBOUND_CLIENT_SECRET=s",
		"ROUTE_PAYMENTS_URL=https://payments.example.com", "ROUTE_PAYMENTS_GRANT=token-exchange", "ROUTE_PAYMENTS_ACTOR=true"),
	envLines("OUTBOUND_ROUTES=payments", "OUTBOUND_TOKEN_URL=https://idp.example.com/token", "OUTBOUND_CLIENT_ID=orders",
		"OUTBOUND_CLIENT_SECRET=s", "ROUTE_PAYMENTS_URL=https://payments.example.com", "ROUTE_PAYMENTS_GRANT=token-exchange"),
	// What must be refused: typos, unlisted routes, insecure URLs, HMAC,
	// bad values, files missing or not what they should be.
	envLines("INBOUND_ISSUERS=https://idp.example.com", "INBOUND_AUDIENCES=payments", "INBOUND_REQUIRED_SCOPE=admin", "ROUTE_PAYMENTS_URL=https://p"),
	envLines("INBOUND_ISSUERS=http://idp.example.com", "INBOUND_AUDIENCES=payments", "INBOUND_ALGORITHMS=RS256,HS256,none", "INBOUND_CLOCK_SKEW=1h"),
	envLines("INBOUND_ISSUERS=https://user:pa55@idp.example.com/?tenant=x", "INBOUND_AUDIENCES=payments", "INBOUND_JWKS_URL=ftp://x"),
	envLines("OUTBOUND_ROUTES=Payments,payments,payments", "OUTBOUND_CLIENT_ID=orders", "OUTBOUND_CLIENT_SECRET=s", "OUTBOUND_CLIENT_SECRET_FILE=@1",
		"OUTBOUND_ISSUER=https://idp.example.com", "OUTBOUND_TOKEN_URL=https://idp.example.com/token", "OUTBOUND_LISTEN=:4000"),
	envLines("OUTBOUND_ROUTES=payments", "OUTBOUND_TOKEN_URL=https://idp.example.com/token", "OUTBOUND_CLIENT_ID=orders",
		"OUTBOUND_AUTH_METHOD=private_key_jwt", "OUTBOUND_PRIVATE_KEY_FILE=@0", "OUTBOUND_CLIENT_SECRET=left-over", "ROUTE_PAYMENTS_URL=payments"),
	envLines("INBOUND_ISSUERS=https://idp.example.com", "INBOUND_AUDIENCES=payments", "INBOUND_RULES_FILE=@1", "INBOUND_TLS_CERT_FILE=@key",
		"INBOUND_TLS_KEY_FILE=missing", "INBOUND_CLIENT_CA_FILE=@0", "LOG_LEVEL=loud", "MAX_HEADER_BYTES=12", "SHUTDOWN_GRACE=-1s"),
	envLines("INBOUND_ISSUERS=https://idp.example.com", "INBOUND_AUDIENCES=payments", "INBOUND_INTROSPECTION_CLIENT_SECRET=orphan",
		"INBOUND_INTROSPECTION_AUTH_METHOD=none", "INBOUND_TOKEN_CACHE_SIZE=-1", "INBOUND_JWKS_REFRESH_INTERVAL=1s"),
	envLines("LOG_LEVEL=info"),
	"",
	"PATH=/usr/bin\nHOME=/root\nAUTHSIDECAR_=x\nAUTHSIDECAR_INBOUND_ISSUERS=\n",
}

// envLines writes variables, each given without the prefix, as lines.
func envLines(vars ...string) string {
	var b strings.Builder
	for _, v := range vars {
		fmt.Fprintf(&b, "%s%s\n", config.Prefix, v)
	}
	return b.String()
}
