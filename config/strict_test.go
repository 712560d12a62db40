package config_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/authsidecar/authsidecar/config"
)

// problems returns every problem of Load(environ) as "VAR: message".
func problems(t *testing.T, environ map[string]string) []string {
	t.Helper()
	_, err := config.Load(environ)
	var cfgErr *config.Error
	if !errors.As(err, &cfgErr) {
		t.Fatalf("Load() error = %v, want *config.Error", err)
	}
	var out []string
	for _, p := range cfgErr.Problems {
		out = append(out, p.Var+": "+p.Msg)
	}
	return out
}

func TestUnknownVariablesAreRefusedWithTheClosestName(t *testing.T) {
	routes := outboundEnv(map[string]string{"AUTHSIDECAR_OUTBOUND_CLIENT_SECRET": "s",
		"AUTHSIDECAR_OUTBOUND_ROUTES": "payments,billing-api", "AUTHSIDECAR_ROUTE_BILLING_API_URL": "https://billing"})
	for _, tc := range []struct {
		name string
		env  map[string]string
		want string
	}{
		{"a singular for a plural", inboundEnv(map[string]string{"AUTHSIDECAR_INBOUND_REQUIRED_SCOPE": "admin"}),
			"AUTHSIDECAR_INBOUND_REQUIRED_SCOPE: is not a variable authsidecar reads; did you mean AUTHSIDECAR_INBOUND_REQUIRED_SCOPES?"},
		{"a letter left out of the section", inboundEnv(map[string]string{"AUTHSIDECAR_INBOUD_ISSUERS": "https://idp"}),
			"AUTHSIDECAR_INBOUD_ISSUERS: is not a variable authsidecar reads; did you mean AUTHSIDECAR_INBOUND_ISSUERS?"},
		{"a general setting put under a section", inboundEnv(map[string]string{"AUTHSIDECAR_INBOUND_LOG_LEVEL": "debug"}),
			"AUTHSIDECAR_INBOUND_LOG_LEVEL: is not a variable authsidecar reads; did you mean AUTHSIDECAR_LOG_LEVEL?"},
		{"nothing close", inboundEnv(map[string]string{"AUTHSIDECAR_FROBNICATE": "1"}),
			"AUTHSIDECAR_FROBNICATE: is not a variable authsidecar reads"},
		{"a variable of a route not declared", with(routes, "AUTHSIDECAR_ROUTE_INVENTORY_URL", "https://inventory"),
			`AUTHSIDECAR_ROUTE_INVENTORY_URL: is a variable of route "inventory", which AUTHSIDECAR_OUTBOUND_ROUTES does not list: add the route there, or remove the variable`},
		{"a misspelt route", with(routes, "AUTHSIDECAR_ROUTE_PAYMENT_AUDIENCE", "payments"),
			`AUTHSIDECAR_ROUTE_PAYMENT_AUDIENCE: is a variable of route "payment", which AUTHSIDECAR_OUTBOUND_ROUTES does not list: add the route there, or remove the variable; did you mean AUTHSIDECAR_ROUTE_PAYMENTS_AUDIENCE?`},
		{"a route with a dash, spelt with one", with(routes, "AUTHSIDECAR_ROUTE_BILLING-API_SCOPES", "read"),
			"AUTHSIDECAR_ROUTE_BILLING-API_SCOPES: is not a variable authsidecar reads; did you mean AUTHSIDECAR_ROUTE_BILLING_API_SCOPES?"},
		{"a misspelt route variable", with(routes, "AUTHSIDECAR_ROUTE_PAYMENTS_SCOPE", "read"),
			"AUTHSIDECAR_ROUTE_PAYMENTS_SCOPE: is not a variable authsidecar reads; did you mean AUTHSIDECAR_ROUTE_PAYMENTS_SCOPES?"},
	} {
		t.Run(tc.name+" is refused", func(t *testing.T) {
			got := problems(t, tc.env)
			if len(got) != 1 || got[0] != tc.want {
				t.Errorf("problems:\n%s\nwant exactly:\n%s", strings.Join(got, "\n"), tc.want)
			}
		})
	}
}

func TestVariablesOfOtherProgramsAreLeftAlone(t *testing.T) {
	if _, err := config.Load(inboundEnv(map[string]string{
		"AUTHSIDECARX": "1", "OTEL_SERVICE_NAME": "payments", "HOME": "/root", "authsidecar_inbound_x": "lower case",
	})); err != nil {
		t.Errorf("Load: %v", err)
	}
}

func TestIdentityProviderURLsMustBeHTTPSButOnLoopback(t *testing.T) {
	const insecure = `is plain HTTP to a host that is not loopback: use https, or set AUTHSIDECAR_ALLOW_INSECURE_HTTP=true on a trusted network`
	out := outboundEnv(map[string]string{"AUTHSIDECAR_OUTBOUND_CLIENT_SECRET": "s"})
	for _, tc := range []struct {
		name string
		env  map[string]string
		want string // "" for no problem
	}{
		{"an http issuer", inboundEnv(map[string]string{"AUTHSIDECAR_INBOUND_ISSUERS": "http://idp.example.com"}),
			`AUTHSIDECAR_INBOUND_ISSUERS: "http://idp.example.com" ` + insecure},
		{"an http JWKS URL", inboundEnv(map[string]string{"AUTHSIDECAR_INBOUND_JWKS_URL": "http://idp.example.com/jwks"}),
			`AUTHSIDECAR_INBOUND_JWKS_URL: "http://idp.example.com/jwks" ` + insecure},
		{"an http introspection URL", inboundEnv(map[string]string{"AUTHSIDECAR_INBOUND_INTROSPECTION_URL": "http://hydra:4445/admin/oauth2/introspect",
			"AUTHSIDECAR_INBOUND_INTROSPECTION_AUTH_METHOD": "none"}),
			`AUTHSIDECAR_INBOUND_INTROSPECTION_URL: "http://hydra:4445/admin/oauth2/introspect" ` + insecure},
		{"an http token URL", with(out, "AUTHSIDECAR_OUTBOUND_TOKEN_URL", "http://idp.example.com/token"),
			`AUTHSIDECAR_OUTBOUND_TOKEN_URL: "http://idp.example.com/token" ` + insecure},
		{"an http outbound issuer", with(with(out, "AUTHSIDECAR_OUTBOUND_TOKEN_URL", ""), "AUTHSIDECAR_OUTBOUND_ISSUER", "http://idp.example.com"),
			`AUTHSIDECAR_OUTBOUND_ISSUER: "http://idp.example.com" ` + insecure},
		{"credentials in an http URL stay hidden", with(out, "AUTHSIDECAR_OUTBOUND_TOKEN_URL", "http://orders:pw@idp.example.com/token?key=k"),
			`AUTHSIDECAR_OUTBOUND_TOKEN_URL: "http://orders:[redacted]@idp.example.com/token?key=[redacted]" ` + insecure},
		{"loopback by address", inboundEnv(map[string]string{"AUTHSIDECAR_INBOUND_ISSUERS": "http://127.0.0.1:9000"}), ""},
		{"loopback by name", inboundEnv(map[string]string{"AUTHSIDECAR_INBOUND_ISSUERS": "http://localhost:9000"}), ""},
		{"IPv6 loopback", inboundEnv(map[string]string{"AUTHSIDECAR_INBOUND_ISSUERS": "http://[::1]:9000"}), ""},
		{"allowed by ALLOW_INSECURE_HTTP", inboundEnv(map[string]string{"AUTHSIDECAR_INBOUND_ISSUERS": "http://keycloak:8080/realms/x",
			"AUTHSIDECAR_ALLOW_INSECURE_HTTP": "true"}), ""},
		{"an app upstream is no identity provider", inboundEnv(map[string]string{"AUTHSIDECAR_INBOUND_UPSTREAM": "http://app.internal:8080"}), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := config.Load(tc.env)
			if tc.want == "" {
				if err != nil {
					t.Errorf("Load: %v, want no error", err)
				}
				return
			}
			if got := problems(t, tc.env); len(got) != 1 || got[0] != tc.want {
				t.Errorf("problems:\n%s\nwant exactly:\n%s", strings.Join(got, "\n"), tc.want)
			}
		})
	}
}

func TestCheckRedactsEveryURL(t *testing.T) {
	c, err := config.Load(map[string]string{
		"AUTHSIDECAR_INBOUND_ISSUERS":         "https://realm:s3cret@idp.example.com/realms/prod",
		"AUTHSIDECAR_INBOUND_AUDIENCES":       "payments",
		"AUTHSIDECAR_INBOUND_JWKS_URL":        "https://idp.example.com/jwks?api_key=k3y",
		"AUTHSIDECAR_INBOUND_UPSTREAM":        "http://app:pa55@127.0.0.1:8080/?token=t0k",
		"AUTHSIDECAR_OUTBOUND_ROUTES":         "payments",
		"AUTHSIDECAR_OUTBOUND_TOKEN_URL":      "https://idp.example.com/token?client_secret=cs",
		"AUTHSIDECAR_OUTBOUND_CLIENT_ID":      "orders",
		"AUTHSIDECAR_OUTBOUND_CLIENT_SECRET":  "s",
		"AUTHSIDECAR_ROUTE_PAYMENTS_URL":      "https://svc:rpw@payments.internal/?sig=abc",
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
	for _, leak := range []string{"s3cret", "k3y", "pa55", "t0k", "=cs", "rpw", "abc"} {
		if strings.Contains(out, leak) {
			t.Errorf("check output shows %q:\n%s", leak, out)
		}
	}
	for _, line := range []string{
		"AUTHSIDECAR_INBOUND_ISSUERS=https://realm:[redacted]@idp.example.com/realms/prod\n",
		"AUTHSIDECAR_INBOUND_JWKS_URL=https://idp.example.com/jwks?api_key=[redacted]\n",
		"AUTHSIDECAR_INBOUND_UPSTREAM=http://app:[redacted]@127.0.0.1:8080/?token=[redacted]\n",
		"AUTHSIDECAR_OUTBOUND_TOKEN_URL=https://idp.example.com/token?client_secret=[redacted]\n",
		"AUTHSIDECAR_ROUTE_PAYMENTS_URL=https://svc:[redacted]@payments.internal/?sig=[redacted]\n",
	} {
		if !strings.Contains(out, line) {
			t.Errorf("check output lacks %q:\n%s", line, out)
		}
	}
}

func TestIntrospectionWithoutClientCredentials(t *testing.T) {
	const v = "AUTHSIDECAR_INBOUND_"
	hydra := map[string]string{v + "INTROSPECTION_AUTH_METHOD": "none", v + "INTROSPECTION_URL": "https://hydra-admin:4445/admin/oauth2/introspect"}
	c, err := config.Load(inboundEnv(hydra))
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if io := c.InboundOptions.Introspection; io == nil || io.Secret != nil || io.URL != hydra[v+"INTROSPECTION_URL"] {
		t.Errorf("introspection = %+v, want on, at the URL, without a secret", io)
	}
	for _, tc := range []struct {
		name string
		env  map[string]string
		want string
	}{
		{"none with a secret", inboundEnv(with(hydra, v+"INTROSPECTION_CLIENT_SECRET", "s")),
			v + "INTROSPECTION_CLIENT_SECRET: is set, but " + v + "INTROSPECTION_AUTH_METHOD=none sends no client credentials: remove it, or choose client_secret_basic or client_secret_post"},
		{"none with a client id", inboundEnv(with(hydra, v+"INTROSPECTION_CLIENT_ID", "payments")),
			v + "INTROSPECTION_CLIENT_ID: is set, but " + v + "INTROSPECTION_AUTH_METHOD=none sends no client credentials: remove it, or choose client_secret_basic or client_secret_post"},
		{"none without a URL", inboundEnv(map[string]string{v + "INTROSPECTION_AUTH_METHOD": "none"}),
			v + "INTROSPECTION_AUTH_METHOD: is none, which needs " + v + "INTROSPECTION_URL: with no client credentials there is no discovery of the endpoint to rely on"},
		{"an unknown method", inboundEnv(map[string]string{v + "INTROSPECTION_AUTH_METHOD": "private_key_jwt"}),
			v + `INTROSPECTION_AUTH_METHOD: want client_secret_basic, client_secret_post or none, got "private_key_jwt"`},
	} {
		t.Run(tc.name+" is refused", func(t *testing.T) {
			if got := problems(t, tc.env); len(got) != 1 || got[0] != tc.want {
				t.Errorf("problems:\n%s\nwant exactly:\n%s", strings.Join(got, "\n"), tc.want)
			}
		})
	}
	post, err := config.Load(inboundEnv(map[string]string{v + "INTROSPECTION_CLIENT_ID": "rs", v + "INTROSPECTION_CLIENT_SECRET": "s",
		v + "INTROSPECTION_AUTH_METHOD": "client_secret_post"}))
	if err != nil || !post.InboundOptions.Introspection.SecretInBody {
		t.Errorf("client_secret_post: %v, want the secret in the body", err)
	}
}

// problemsOrNone is problems, or none when Load succeeds.
func problemsOrNone(t *testing.T, environ map[string]string) []string {
	t.Helper()
	if _, err := config.Load(environ); err == nil {
		return nil
	}
	return problems(t, environ)
}

// with returns a copy of m with k set to v, or removed when v is "".
func with(m map[string]string, k, v string) map[string]string {
	out := map[string]string{}
	for key, val := range m {
		out[key] = val
	}
	if v == "" {
		delete(out, k)
	} else {
		out[k] = v
	}
	return out
}

func TestABadOTELVariableStopsTheStart(t *testing.T) {
	got := problems(t, inboundEnv(map[string]string{"OTEL_TRACES_SAMPLER": "parentbased_alwayson"}))
	if len(got) != 1 || !strings.HasPrefix(got[0], "OTEL_TRACES_SAMPLER: ") {
		t.Errorf("problems %q, want one naming OTEL_TRACES_SAMPLER", got)
	}
	cfg, err := config.Load(inboundEnv(map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}))
	if err != nil || !cfg.Tracing.Enabled || cfg.Tracing.Protocol != "grpc" {
		t.Fatalf("Load: %v %+v, want tracing on over grpc", err, cfg.Tracing)
	}
	var out strings.Builder
	if err := cfg.Write(&out); err != nil || !strings.Contains(out.String(), "# tracing: on, OTLP over grpc, sampler parentbased_always_on\n") {
		t.Errorf("check prints %q", out.String())
	}
}

func TestTheResourceIdentifierIsAnHTTPSURL(t *testing.T) {
	for value, want := range map[string]string{
		"http://payments.example":       "AUTHSIDECAR_INBOUND_RESOURCE: \"http://payments.example\" ",
		"https://payments.example/#top": "AUTHSIDECAR_INBOUND_RESOURCE: \"https://payments.example/\" is not a resource identifier",
		"payments":                      "AUTHSIDECAR_INBOUND_RESOURCE: \"payments\" is not a resource identifier",
	} {
		got := problems(t, inboundEnv(map[string]string{"AUTHSIDECAR_INBOUND_RESOURCE": value}))
		if len(got) != 1 || !strings.HasPrefix(got[0], want) {
			t.Errorf("%s: %q, want %s…", value, got, want)
		}
	}
	if _, err := config.Load(inboundEnv(map[string]string{"AUTHSIDECAR_INBOUND_RESOURCE": "https://payments.example"})); err != nil {
		t.Errorf("an https resource: %v", err)
	}
}

func TestATokenExchangeRouteNeedsInbound(t *testing.T) {
	got := problems(t, outboundEnv(map[string]string{"AUTHSIDECAR_OUTBOUND_CLIENT_SECRET": "s",
		"AUTHSIDECAR_ROUTE_PAYMENTS_GRANT": "token-exchange"}))
	if len(got) != 1 || !strings.HasPrefix(got[0], "AUTHSIDECAR_ROUTE_PAYMENTS_GRANT: token-exchange exchanges the token of the caller inbound verified") {
		t.Errorf("problems %q", got)
	}
	got = problems(t, outboundEnv(map[string]string{"AUTHSIDECAR_OUTBOUND_CLIENT_SECRET": "s", "AUTHSIDECAR_ROUTE_PAYMENTS_ACTOR": "true"}))
	if len(got) != 1 || !strings.HasPrefix(got[0], "AUTHSIDECAR_ROUTE_PAYMENTS_ACTOR: is for token-exchange routes only") {
		t.Errorf("problems %q", got)
	}
	got = problems(t, outboundEnv(map[string]string{"AUTHSIDECAR_OUTBOUND_CLIENT_SECRET": "s", "AUTHSIDECAR_ROUTE_PAYMENTS_GRANT": "token_exchange"}))
	if len(got) != 1 || !strings.HasPrefix(got[0], `AUTHSIDECAR_ROUTE_PAYMENTS_GRANT: want client_credentials or token-exchange, got "token_exchange"`) {
		t.Errorf("problems %q", got)
	}
	got = problems(t, outboundEnv(map[string]string{"AUTHSIDECAR_OUTBOUND_CLIENT_SECRET": "s", "AUTHSIDECAR_OUTBOUND_DPOP_KEY_FILE": "/dev/null"}))
	if len(got) != 1 || !strings.HasPrefix(got[0], "AUTHSIDECAR_OUTBOUND_DPOP_KEY_FILE: is the key of outbound DPoP, which is off") {
		t.Errorf("problems %q", got)
	}
}

func TestAResourceIdentifierCannotBreakTheChallengeQuoting(t *testing.T) {
	got := problems(t, inboundEnv(map[string]string{"AUTHSIDECAR_INBOUND_RESOURCE": `https://payments.example/?x="y"`}))
	if len(got) != 1 || !strings.Contains(got[0], "has a quote, a backslash or a control character") {
		t.Errorf("problems %q", got)
	}
}
