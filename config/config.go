package config

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net/url"
	"reflect"
	"sort"
	"strings"
	"time"

	"github.com/caarlos0/env/v11"

	"github.com/authsidecar/authsidecar/inbound"
	"github.com/authsidecar/authsidecar/internal/reload"
	"github.com/authsidecar/authsidecar/internal/tracing"
	"github.com/authsidecar/authsidecar/outbound"
)

// Prefix starts every variable authsidecar reads.
const Prefix = "AUTHSIDECAR_"

// Config is the whole configuration: the variables, one section per part
// of the program (what `check` prints), and, built from them by Load, what
// each part is made of.
type Config struct {
	General  General
	Inbound  Inbound
	Outbound Outbound
	// Routes holds one entry per name in AUTHSIDECAR_OUTBOUND_ROUTES, in order.
	Routes []Route

	// InboundOptions are the inbound direction's, nil when it is off; the
	// program adds metrics, logger and clock.
	InboundOptions *inbound.Options
	// OutboundOptions likewise, nil when outbound is off.
	OutboundOptions *outbound.Options
	// Listeners are the ports to serve, the admin port aside.
	Listeners []Listener
	// Watched are the files to re-read when they change.
	Watched []reload.Checker
	// Tracing is what the OTEL_* variables ask for.
	Tracing tracing.Settings
}

// Listener is one port to serve.
type Listener struct {
	// Name is "inbound", "outbound" or "route <name>".
	Name string
	Addr string
	// TLS is nil for plain HTTP.
	TLS *tls.Config
	// Route names the route of a dedicated route listener.
	Route string
}

// General holds the settings shared by every part.
type General struct {
	AdminListen       string        `env:"ADMIN_LISTEN" envDefault:":9464"`
	LogLevel          LogLevel      `env:"LOG_LEVEL" envDefault:"info"`
	LogFormat         LogFormat     `env:"LOG_FORMAT" envDefault:"json"`
	AccessLog         bool          `env:"ACCESS_LOG" envDefault:"false"`
	ShutdownGrace     time.Duration `env:"SHUTDOWN_GRACE" envDefault:"15s"`
	ShutdownDelay     time.Duration `env:"SHUTDOWN_DELAY" envDefault:"0s"`
	MaxHeaderBytes    int           `env:"MAX_HEADER_BYTES" envDefault:"32768"`
	AllowInsecureHTTP bool          `env:"ALLOW_INSECURE_HTTP" envDefault:"false"`
	BodyIdleTimeout   time.Duration `env:"BODY_IDLE_TIMEOUT" envDefault:"30s"`
}

// Inbound configures token verification in front of the app.
type Inbound struct {
	Listen             string         `env:"LISTEN" envDefault:":8000"`
	Upstream           url.URL        `env:"UPSTREAM" envDefault:"http://127.0.0.1:8080"`
	UpstreamProtocol   Protocol       `env:"UPSTREAM_PROTOCOL" envDefault:"auto"`
	UpstreamTimeout    time.Duration  `env:"UPSTREAM_TIMEOUT" envDefault:"60s"`
	Issuers            List           `env:"ISSUERS"`
	JWKSURL            string         `env:"JWKS_URL"`
	JWKSRefresh        time.Duration  `env:"JWKS_REFRESH_INTERVAL" envDefault:"10m"`
	Audiences          List           `env:"AUDIENCES"`
	Algorithms         List           `env:"ALGORITHMS" envDefault:"RS256,RS384,RS512,PS256,PS384,PS512,ES256,ES384,ES512,EdDSA"`
	ClockSkew          time.Duration  `env:"CLOCK_SKEW" envDefault:"30s"`
	RequiredScopes     Set            `env:"REQUIRED_SCOPES"`
	AllowedClients     List           `env:"ALLOWED_CLIENTS"`
	PublicPaths        List           `env:"PUBLIC_PATHS"`
	ForwardToken       bool           `env:"FORWARD_TOKEN" envDefault:"false"`
	TLSCertFile        string         `env:"TLS_CERT_FILE"`
	TLSKeyFile         string         `env:"TLS_KEY_FILE"`
	ClientCAFile       string         `env:"CLIENT_CA_FILE"`
	ClientAllowedSANs  List           `env:"CLIENT_ALLOWED_SANS"`
	RequireBoundTokens bool           `env:"REQUIRE_BOUND_TOKENS" envDefault:"false"`
	RequireATJWT       bool           `env:"REQUIRE_AT_JWT" envDefault:"false"`
	AllowEncodedSlash  bool           `env:"ALLOW_ENCODED_SLASHES" envDefault:"false"`
	CaseInsensitive    bool           `env:"CASE_INSENSITIVE_PATHS" envDefault:"false"`
	RequireDPoP        bool           `env:"REQUIRE_DPOP" envDefault:"false"`
	TrustForwarded     bool           `env:"TRUST_FORWARDED" envDefault:"false"`
	Resource           string         `env:"RESOURCE"`
	RulesFile          string         `env:"RULES_FILE"`
	TokenCacheSize     int            `env:"TOKEN_CACHE_SIZE" envDefault:"10000"`
	MaxFormBytes       int64          `env:"MAX_FORM_BYTES" envDefault:"1048576"`
	OverrideBodies     List           `env:"METHOD_OVERRIDE_BODIES" envDefault:"form"`
	Introspect         IntrospectMode `env:"INTROSPECT" envDefault:"opaque"`
	// Introspection (RFC 7662) is on when IntrospectionClientID is set, or
	// with IntrospectionAuth none when IntrospectionURL is.
	IntrospectionClientID         string            `env:"INTROSPECTION_CLIENT_ID"`
	IntrospectionClientSecret     Secret            `env:"INTROSPECTION_CLIENT_SECRET"`
	IntrospectionClientSecretFile string            `env:"INTROSPECTION_CLIENT_SECRET_FILE"`
	IntrospectionAuth             IntrospectionAuth `env:"INTROSPECTION_AUTH_METHOD" envDefault:"client_secret_basic"`
	IntrospectionURL              string            `env:"INTROSPECTION_URL"`
	IntrospectionCacheTTL         time.Duration     `env:"INTROSPECTION_CACHE_TTL" envDefault:"30s"`
}

// Enabled reports whether the inbound direction runs.
func (in Inbound) Enabled() bool { return len(in.Issuers) > 0 }

// introspection reports whether introspection is on.
func (in Inbound) introspection() bool {
	if in.IntrospectionAuth == IntrospectionNone {
		return in.IntrospectionURL != ""
	}
	return in.IntrospectionClientID != ""
}

// Outbound configures the token source behind the app's outbound calls.
type Outbound struct {
	Listen              string        `env:"LISTEN" envDefault:"127.0.0.1:4000"`
	AllowRemote         bool          `env:"ALLOW_REMOTE" envDefault:"false"`
	Routes              List          `env:"ROUTES"`
	Issuer              string        `env:"ISSUER"`
	TokenURL            string        `env:"TOKEN_URL"`
	ClientID            string        `env:"CLIENT_ID"`
	ClientSecret        Secret        `env:"CLIENT_SECRET"`
	ClientSecretFile    string        `env:"CLIENT_SECRET_FILE"`
	AuthMethod          AuthMethod    `env:"AUTH_METHOD" envDefault:"client_secret_basic"`
	PrivateKeyFile      string        `env:"PRIVATE_KEY_FILE"`
	PrivateKeyID        string        `env:"PRIVATE_KEY_ID"`
	ClientAssertionFile string        `env:"CLIENT_ASSERTION_FILE"`
	TLSCAFile           string        `env:"TLS_CA_FILE"`
	TLSCertFile         string        `env:"TLS_CERT_FILE"`
	TLSKeyFile          string        `env:"TLS_KEY_FILE"`
	TokenTimeout        time.Duration `env:"TOKEN_TIMEOUT" envDefault:"10s"`
	ReadyRequiresTokens bool          `env:"READY_REQUIRES_TOKENS" envDefault:"false"`
	DPoP                bool          `env:"DPOP" envDefault:"false"`
	DPoPKeyFile         string        `env:"DPOP_KEY_FILE"`
}

// Enabled reports whether the outbound direction runs.
func (out Outbound) Enabled() bool { return len(out.Routes) > 0 }

// Route is one upstream the app reaches through the outbound listener.
type Route struct {
	// Name is the route's name from AUTHSIDECAR_OUTBOUND_ROUTES.
	Name     string        `env:"-"`
	URL      url.URL       `env:"URL"`
	Audience string        `env:"AUDIENCE"`
	Resource string        `env:"RESOURCE"`
	Scopes   Set           `env:"SCOPES"`
	Listen   string        `env:"LISTEN"`
	Protocol Protocol      `env:"PROTOCOL" envDefault:"auto"`
	Timeout  time.Duration `env:"TIMEOUT" envDefault:"60s"`
	Grant    Grant         `env:"GRANT" envDefault:"client_credentials"`
	Actor    bool          `env:"ACTOR" envDefault:"false"`
}

// RoutePrefix returns the variable prefix of route name, e.g.
// AUTHSIDECAR_ROUTE_PAYMENTS_API_ for "payments-api".
func RoutePrefix(name string) string {
	return Prefix + "ROUTE_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_")) + "_"
}

// Error lists every problem found in a configuration. Each problem names
// its variable, so the message alone is enough to fix the environment.
type Error struct {
	Problems []Problem
}

// Problem is one bad variable.
type Problem struct {
	Var string
	Msg string
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("config: invalid configuration:")
	for _, p := range e.Problems {
		fmt.Fprintf(&b, "\n  %s: %s", p.Var, p.Msg)
	}
	return b.String()
}

// Load reads the configuration from environ, the process environment as a
// map, validates it, reads every file it names and builds each part's
// options. The error, if any, is an *Error naming every bad variable:
// `authsidecar check` and start-up run exactly this.
func Load(environ map[string]string) (*Config, error) {
	var (
		c    Config
		errs problems
	)
	errs.parse(&c.General, Prefix, environ)
	errs.parse(&c.Inbound, Prefix+"INBOUND_", environ)
	errs.parse(&c.Outbound, Prefix+"OUTBOUND_", environ)
	for _, name := range c.Outbound.Routes {
		r := Route{Name: name}
		if validRouteName(name) {
			errs.parse(&r, RoutePrefix(name), environ)
		}
		c.Routes = append(c.Routes, r)
	}
	errs.unknown(environ, c.Outbound.Routes)
	var terrs []error
	c.Tracing, terrs = tracing.Parse(environ)
	for _, err := range terrs {
		var ve *tracing.VarError
		if errors.As(err, &ve) {
			errs.add(ve.Var, "%v", ve.Err)
		}
	}
	// Validate even after parse errors, so that every problem is reported
	// at once; a variable that failed to parse is not judged again.
	parsed := len(errs)
	c.validate(&errs, environ)
	if len(errs) == 0 {
		// Files are read only for a configuration that is otherwise
		// sound: a credential the method does not use, say, is reported
		// as such, not also as a file to read.
		c.build(&errs)
	}
	errs = errs.dropRepeats(parsed)
	if len(errs) > 0 {
		sort.SliceStable(errs, func(i, j int) bool { return errs[i].Var < errs[j].Var })
		return nil, &Error{Problems: errs}
	}
	return &c, nil
}

type problems []Problem

func (p *problems) add(variable, format string, args ...any) {
	*p = append(*p, Problem{Var: variable, Msg: fmt.Sprintf(format, args...)})
}

// dropRepeats drops the problems after the first n whose variable is
// already among the first n.
func (p problems) dropRepeats(n int) problems {
	seen := map[string]bool{}
	for _, pr := range p[:n] {
		seen[pr.Var] = true
	}
	out := p[:n]
	for _, pr := range p[n:] {
		if !seen[pr.Var] {
			out = append(out, pr)
		}
	}
	return out
}

// parse fills dst from the variables under prefix and records each parse
// failure under the name of the variable that caused it; caarlos0/env
// itself names only the Go field.
func (p *problems) parse(dst any, prefix string, environ map[string]string) {
	err := env.ParseWithOptions(dst, env.Options{Prefix: prefix, Environment: environ})
	if err == nil {
		return
	}
	var agg env.AggregateError
	if !errors.As(err, &agg) {
		p.add(prefix+"*", "%v", err)
		return
	}
	t := reflect.TypeOf(dst).Elem()
	for _, e := range agg.Errors {
		var pe env.ParseError
		if !errors.As(e, &pe) {
			p.add(prefix+"*", "%v", e)
			continue
		}
		key := pe.Name
		if f, ok := t.FieldByName(pe.Name); ok {
			key = strings.Split(f.Tag.Get("env"), ",")[0]
		}
		var choice *choiceError
		if errors.As(pe.Err, &choice) {
			p.add(prefix+key, "%s", choice.msg)
			continue
		}
		p.add(prefix+key, "cannot parse %q: %v", environ[prefix+key], unwrapParse(pe.Err))
	}
}

// unwrapParse drops strconv's and time's repetition of the input, which
// the caller already quotes.
func unwrapParse(err error) error {
	var ne interface{ Unwrap() error }
	if errors.As(err, &ne) && ne.Unwrap() != nil {
		return ne.Unwrap()
	}
	return err
}
