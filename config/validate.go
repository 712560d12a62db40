package config

import (
	"net"
	"net/url"
	"regexp"
	"slices"
	"strings"

	"github.com/authsidecar/authsidecar/rules"
)

var routeName = regexp.MustCompile(`^[a-z0-9-]+$`)

func validRouteName(name string) bool { return routeName.MatchString(name) }

// SafeAlgorithms are the asymmetric JWS algorithms the inbound side can be
// told to accept. "none" and the HMAC family are absent on purpose: with a
// public key set, accepting them lets anyone mint tokens.
var SafeAlgorithms = map[string]bool{
	"RS256": true, "RS384": true, "RS512": true,
	"PS256": true, "PS384": true, "PS512": true,
	"ES256": true, "ES384": true, "ES512": true,
	"EdDSA": true,
}

// AuthMethods are the client authentication methods of the outbound token
// request. client_assertion_file is ours: it sends a JWT someone else
// signed (a projected service-account token) the way private_key_jwt sends
// one the sidecar signs.
var AuthMethods = []string{"client_secret_basic", "client_secret_post", "private_key_jwt", "tls_client_auth", "client_assertion_file"}

func (c *Config) validate(p *problems, environ map[string]string) {
	c.General.validate(p)
	if !c.Inbound.Enabled() && !c.Outbound.Enabled() {
		p.add(Prefix+"INBOUND_ISSUERS", "neither %sINBOUND_ISSUERS nor %sOUTBOUND_ROUTES is set: nothing to do", Prefix, Prefix)
	}
	if c.Inbound.Enabled() {
		c.Inbound.validate(p)
	} else {
		for _, v := range []string{"JWKS_URL", "AUDIENCES", "REQUIRED_SCOPES", "ALLOWED_CLIENTS", "PUBLIC_PATHS", "RULES_FILE"} {
			if environ[Prefix+"INBOUND_"+v] != "" {
				p.add(Prefix+"INBOUND_"+v, "is set but %sINBOUND_ISSUERS is not, so inbound does not run", Prefix)
			}
		}
	}
	if c.Outbound.Enabled() {
		implied := c.Outbound.chooseAuthMethod(environ)
		c.Outbound.validate(p, implied)
		c.validateRoutes(p)
	}
}

func (g General) validate(p *problems) {
	checkListen(p, Prefix+"ADMIN_LISTEN", g.AdminListen)
	switch g.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		p.add(Prefix+"LOG_LEVEL", "want debug, info, warn or error, got %q", g.LogLevel)
	}
	if g.LogFormat != "json" && g.LogFormat != "text" {
		p.add(Prefix+"LOG_FORMAT", "want json or text, got %q", g.LogFormat)
	}
	if g.ShutdownGrace < 0 {
		p.add(Prefix+"SHUTDOWN_GRACE", "must not be negative, got %s", g.ShutdownGrace)
	}
	if g.MaxHeaderBytes < 4096 {
		p.add(Prefix+"MAX_HEADER_BYTES", "must be at least 4096, got %d", g.MaxHeaderBytes)
	}
}

func (in *Inbound) validate(p *problems) {
	const v = Prefix + "INBOUND_"
	checkListen(p, v+"LISTEN", in.Listen)
	checkHTTPURL(p, v+"UPSTREAM", &in.Upstream)
	for _, iss := range in.Issuers {
		u, err := url.Parse(iss)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			p.add(v+"ISSUERS", "%q is not an http(s) URL", iss)
		}
	}
	if in.JWKSURL != "" {
		if len(in.Issuers) > 1 {
			p.add(v+"JWKS_URL", "can only be used with one issuer, got %d in %sISSUERS", len(in.Issuers), v)
		}
		u, err := url.Parse(in.JWKSURL)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			p.add(v+"JWKS_URL", "%q is not an http(s) URL", in.JWKSURL)
		}
	}
	if len(in.Audiences) == 0 {
		p.add(v+"AUDIENCES", "is required when %sISSUERS is set", v)
	}
	if len(in.Algorithms) == 0 {
		p.add(v+"ALGORITHMS", "must name at least one algorithm")
	}
	for _, alg := range in.Algorithms {
		if !SafeAlgorithms[alg] {
			p.add(v+"ALGORITHMS", "%q is not accepted: use asymmetric algorithms only (RS*, PS*, ES*, EdDSA)", alg)
		}
	}
	if in.ClockSkew < 0 || in.ClockSkew > 5*60e9 {
		p.add(v+"CLOCK_SKEW", "must be between 0s and 5m, got %s", in.ClockSkew)
	}
	if in.JWKSRefresh < 60e9 {
		p.add(v+"JWKS_REFRESH_INTERVAL", "must be at least 1m, got %s", in.JWKSRefresh)
	}
	for _, path := range in.PublicPaths {
		if !strings.HasPrefix(path, "/") {
			p.add(v+"PUBLIC_PATHS", "%q must start with /", path)
		}
	}
	if (in.TLSCertFile == "") != (in.TLSKeyFile == "") {
		p.add(v+"TLS_KEY_FILE", "%sTLS_CERT_FILE and %sTLS_KEY_FILE must be set together", v, v)
	}
	in.validateIntrospection(p)
	if in.RulesFile != "" {
		set, err := rules.Load(in.RulesFile)
		if err != nil {
			p.add(v+"RULES_FILE", "%v", err)
		}
		in.Rules = set
	}
	if in.TokenCacheSize < 0 {
		p.add(v+"TOKEN_CACHE_SIZE", "must not be negative, got %d", in.TokenCacheSize)
	}
	if len(in.ClientAllowedSANs) > 0 && in.ClientCAFile == "" {
		p.add(v+"CLIENT_ALLOWED_SANS", "needs %sCLIENT_CA_FILE: only verified certificates have trusted SANs", v)
	}
	if in.RequireBoundTokens && in.ClientCAFile == "" {
		p.add(v+"REQUIRE_BOUND_TOKENS", "needs %sCLIENT_CA_FILE: a bound token is checked against the client certificate", v)
	}
	if in.ClientCAFile != "" && in.TLSCertFile == "" {
		p.add(v+"CLIENT_CA_FILE", "needs %sTLS_CERT_FILE and %sTLS_KEY_FILE: mTLS is served over TLS", v, v)
	}
}

func (in Inbound) validateIntrospection(p *problems) {
	const v = Prefix + "INBOUND_"
	if in.Introspect != "opaque" && in.Introspect != "all" {
		p.add(v+"INTROSPECT", "want opaque or all, got %q", in.Introspect)
	}
	if in.IntrospectionClientID == "" {
		for name, set := range map[string]bool{
			"INTROSPECTION_CLIENT_SECRET":      in.IntrospectionClientSecret != "",
			"INTROSPECTION_CLIENT_SECRET_FILE": in.IntrospectionClientSecretFile != "",
			"INTROSPECTION_URL":                in.IntrospectionURL != "",
		} {
			if set {
				p.add(v+name, "is set but %sINTROSPECTION_CLIENT_ID is not, so introspection is off", v)
			}
		}
		return
	}
	switch {
	case in.IntrospectionClientSecret == "" && in.IntrospectionClientSecretFile == "":
		p.add(v+"INTROSPECTION_CLIENT_SECRET", "introspection needs %sINTROSPECTION_CLIENT_SECRET or …_SECRET_FILE", v)
	case in.IntrospectionClientSecret != "" && in.IntrospectionClientSecretFile != "":
		p.add(v+"INTROSPECTION_CLIENT_SECRET_FILE", "set %sINTROSPECTION_CLIENT_SECRET or …_SECRET_FILE, not both", v)
	}
	if in.IntrospectionURL != "" {
		checkHTTPString(p, v+"INTROSPECTION_URL", in.IntrospectionURL)
	}
	if in.IntrospectionCacheTTL < 0 {
		p.add(v+"INTROSPECTION_CACHE_TTL", "must not be negative, got %s", in.IntrospectionCacheTTL)
	}
}

func (out Outbound) validate(p *problems, impliedAuth bool) {
	const v = Prefix + "OUTBOUND_"
	checkListen(p, v+"LISTEN", out.Listen)
	if !out.AllowRemote && !isLoopback(out.Listen) {
		p.add(v+"LISTEN", "%q is not a loopback address: the outbound port attaches this service's identity to any call it gets; set %sALLOW_REMOTE=true if that is intended", out.Listen, v)
	}
	seen := map[string]bool{}
	for _, name := range out.Routes {
		if !validRouteName(name) {
			p.add(v+"ROUTES", "route name %q must match [a-z0-9-]+", name)
		}
		if seen[name] {
			p.add(v+"ROUTES", "route %q is listed twice", name)
		}
		seen[name] = true
	}
	switch {
	case out.Issuer == "" && out.TokenURL == "":
		p.add(v+"TOKEN_URL", "one of %sISSUER or %sTOKEN_URL is required", v, v)
	case out.Issuer != "" && out.TokenURL != "":
		p.add(v+"TOKEN_URL", "set %sISSUER or %sTOKEN_URL, not both", v, v)
	case out.Issuer != "":
		checkHTTPString(p, v+"ISSUER", out.Issuer)
	default:
		checkHTTPString(p, v+"TOKEN_URL", out.TokenURL)
	}
	if out.ClientID == "" {
		p.add(v+"CLIENT_ID", "is required when %sROUTES is set", v)
	}
	out.validateAuth(p, impliedAuth)
	if (out.TLSCertFile == "") != (out.TLSKeyFile == "") {
		p.add(v+"TLS_KEY_FILE", "%sTLS_CERT_FILE and %sTLS_KEY_FILE must be set together", v, v)
	}
	if out.TokenTimeout <= 0 {
		p.add(v+"TOKEN_TIMEOUT", "must be positive, got %s", out.TokenTimeout)
	}
}

// chooseAuthMethod makes AUTHSIDECAR_OUTBOUND_CLIENT_ASSERTION_FILE select
// client_assertion_file when AUTH_METHOD is unset, so that the loaded
// configuration, and `authsidecar check`, show the method in use. It
// reports whether it did.
func (out *Outbound) chooseAuthMethod(environ map[string]string) bool {
	if out.ClientAssertionFile == "" || environ[Prefix+"OUTBOUND_AUTH_METHOD"] != "" {
		return false
	}
	out.AuthMethod = "client_assertion_file"
	return true
}

// validateAuth checks that the method has its credential and, through
// checkUnusedCredentials, that no other credential is set: one left over
// means the operator expects a method other than the one configured.
func (out Outbound) validateAuth(p *problems, implied bool) {
	const v = Prefix + "OUTBOUND_"
	switch out.AuthMethod {
	case "client_secret_basic", "client_secret_post":
		switch {
		case out.ClientSecret == "" && out.ClientSecretFile == "":
			p.add(v+"CLIENT_SECRET", "%s needs %sCLIENT_SECRET or %sCLIENT_SECRET_FILE", out.AuthMethod, v, v)
		case out.ClientSecret != "" && out.ClientSecretFile != "":
			p.add(v+"CLIENT_SECRET_FILE", "set %sCLIENT_SECRET or %sCLIENT_SECRET_FILE, not both", v, v)
		}
	case "private_key_jwt":
		if out.PrivateKeyFile == "" {
			p.add(v+"PRIVATE_KEY_FILE", "is required when %sAUTH_METHOD is private_key_jwt", v)
		}
	case "tls_client_auth":
		if out.TLSCertFile == "" {
			p.add(v+"TLS_CERT_FILE", "is required when %sAUTH_METHOD is tls_client_auth: the token endpoint identifies the client by its certificate", v)
		}
		for _, e := range [][2]string{{"ISSUER", out.Issuer}, {"TOKEN_URL", out.TokenURL}} {
			if u, err := url.Parse(e[1]); err == nil && u.Scheme == "http" {
				p.add(v+e[0], "must be https when %sAUTH_METHOD is tls_client_auth: the client certificate is presented only over TLS; got %q", v, e[1])
			}
		}
	case "client_assertion_file":
		if out.ClientAssertionFile == "" {
			p.add(v+"CLIENT_ASSERTION_FILE", "is required when %sAUTH_METHOD is client_assertion_file", v)
		}
	default:
		p.add(v+"AUTH_METHOD", "want one of %s, got %q", strings.Join(AuthMethods, ", "), out.AuthMethod)
		return
	}
	out.checkUnusedCredentials(p, implied)
}

func (out Outbound) checkUnusedCredentials(p *problems, implied bool) {
	const v = Prefix + "OUTBOUND_"
	secret := []string{"client_secret_basic", "client_secret_post"}
	for _, c := range []struct {
		name    string
		set     bool
		methods []string // those that send it
	}{
		{"CLIENT_SECRET", out.ClientSecret != "", secret},
		{"CLIENT_SECRET_FILE", out.ClientSecretFile != "", secret},
		{"PRIVATE_KEY_FILE", out.PrivateKeyFile != "", []string{"private_key_jwt"}},
		{"PRIVATE_KEY_ID", out.PrivateKeyID != "", []string{"private_key_jwt"}},
		{"CLIENT_ASSERTION_FILE", out.ClientAssertionFile != "", []string{"client_assertion_file"}},
	} {
		switch {
		case !c.set || slices.Contains(c.methods, out.AuthMethod):
		case implied:
			p.add(v+c.name, "is set, but so is %sCLIENT_ASSERTION_FILE, with which the client authenticates alone: remove one of them", v)
		case c.name == "CLIENT_ASSERTION_FILE":
			p.add(v+c.name, "is set, but %sAUTH_METHOD=%s does not send it: leave %sAUTH_METHOD unset to authenticate with the file, or remove it", v, out.AuthMethod, v)
		default:
			p.add(v+c.name, "is set, but %sAUTH_METHOD=%s does not use it: remove it, or set %sAUTH_METHOD to %s", v, out.AuthMethod, v, strings.Join(c.methods, " or "))
		}
	}
}

func (c *Config) validateRoutes(p *problems) {
	for _, r := range c.Routes {
		if !validRouteName(r.Name) {
			continue // reported under OUTBOUND_ROUTES
		}
		v := RoutePrefix(r.Name)
		if r.URL.String() == "" {
			p.add(v+"URL", "is required for route %q", r.Name)
		} else {
			checkHTTPURL(p, v+"URL", &r.URL)
		}
		if r.Listen != "" {
			checkListen(p, v+"LISTEN", r.Listen)
			if !c.Outbound.AllowRemote && !isLoopback(r.Listen) {
				p.add(v+"LISTEN", "%q is not a loopback address; set %sOUTBOUND_ALLOW_REMOTE=true if that is intended", r.Listen, Prefix)
			}
		}
	}
}

func checkListen(p *problems, variable, addr string) {
	if _, _, err := net.SplitHostPort(addr); err != nil {
		p.add(variable, "%q is not a host:port address", addr)
	}
}

func checkHTTPURL(p *problems, variable string, u *url.URL) {
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		p.add(variable, "%q is not an http(s) URL", u.Redacted())
	}
}

func checkHTTPString(p *problems, variable, s string) {
	u, err := url.Parse(s)
	if err != nil {
		p.add(variable, "%q is not a URL", s)
		return
	}
	checkHTTPURL(p, variable, u)
}

// isLoopback reports whether a listen address binds to loopback only. An
// empty host binds every interface, so it is not loopback.
func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
