package config

import (
	"net"
	"net/url"
	"regexp"
	"slices"
	"strings"

	"github.com/authsidecar/authsidecar/discovery"
	"github.com/authsidecar/authsidecar/outbound"
)

var routeName = regexp.MustCompile(`^[a-z0-9-]+$`)

func validRouteName(name string) bool { return routeName.MatchString(name) }

// safeAlgorithm reports whether alg is one of the asymmetric JWS
// algorithms the inbound side can be told to accept. "none" and the HMAC
// family are absent on purpose: with a public key set, accepting them lets
// anyone mint tokens.
func safeAlgorithm(alg string) bool {
	switch alg {
	case "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA":
		return true
	}
	return false
}

func (c *Config) validate(p *problems, environ map[string]string) {
	c.General.validate(p)
	if !c.Inbound.Enabled() && !c.Outbound.Enabled() {
		p.add(Prefix+"INBOUND_ISSUERS", "neither %sINBOUND_ISSUERS nor %sOUTBOUND_ROUTES is set: nothing to do", Prefix, Prefix)
	}
	insecure := c.General.AllowInsecureHTTP
	if c.Inbound.Enabled() {
		c.Inbound.validate(p, insecure)
	} else {
		for _, v := range []string{"JWKS_URL", "AUDIENCES", "REQUIRED_SCOPES", "ALLOWED_CLIENTS", "PUBLIC_PATHS", "RULES_FILE"} {
			if environ[Prefix+"INBOUND_"+v] != "" {
				p.add(Prefix+"INBOUND_"+v, "is set but %sINBOUND_ISSUERS is not, so inbound does not run", Prefix)
			}
		}
	}
	if c.Outbound.Enabled() {
		implied := c.Outbound.chooseAuthMethod(environ)
		c.Outbound.validate(p, implied, insecure)
		c.validateRoutes(p)
		c.validateDPoP(p)
	}
}

func (g General) validate(p *problems) {
	checkListen(p, Prefix+"ADMIN_LISTEN", g.AdminListen)
	if g.ShutdownGrace < 0 {
		p.add(Prefix+"SHUTDOWN_GRACE", "must not be negative, got %s", g.ShutdownGrace)
	}
	if g.BodyIdleTimeout < 0 {
		p.add(Prefix+"BODY_IDLE_TIMEOUT", "must not be negative, got %s", g.BodyIdleTimeout)
	}
	if g.ShutdownDelay < 0 {
		p.add(Prefix+"SHUTDOWN_DELAY", "must not be negative, got %s", g.ShutdownDelay)
	}
	if g.MaxHeaderBytes < 4096 {
		p.add(Prefix+"MAX_HEADER_BYTES", "must be at least 4096, got %d", g.MaxHeaderBytes)
	}
}

func (in *Inbound) validate(p *problems, insecure bool) {
	const v = Prefix + "INBOUND_"
	checkListen(p, v+"LISTEN", in.Listen)
	checkHTTPURL(p, v+"UPSTREAM", &in.Upstream)
	for _, iss := range in.Issuers {
		checkIdentityURL(p, v+"ISSUERS", iss, insecure)
		checkIssuer(p, v+"ISSUERS", iss)
	}
	if in.JWKSURL != "" {
		if len(in.Issuers) > 1 {
			p.add(v+"JWKS_URL", "can only be used with one issuer, got %d in %sISSUERS", len(in.Issuers), v)
		}
		checkIdentityURL(p, v+"JWKS_URL", in.JWKSURL, insecure)
	}
	if len(in.Audiences) == 0 {
		p.add(v+"AUDIENCES", "is required when %sISSUERS is set", v)
	}
	if len(in.Algorithms) == 0 {
		p.add(v+"ALGORITHMS", "must name at least one algorithm")
	}
	for _, alg := range in.Algorithms {
		if !safeAlgorithm(alg) {
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
		if err := rulesCheckPublicPath(path); err != nil {
			p.add(v+"PUBLIC_PATHS", "%v", err)
		}
	}
	if (in.TLSCertFile == "") != (in.TLSKeyFile == "") {
		p.add(v+"TLS_KEY_FILE", "%sTLS_CERT_FILE and %sTLS_KEY_FILE must be set together", v, v)
	}
	in.validateIntrospection(p, insecure)
	if in.Resource != "" {
		checkResource(p, v+"RESOURCE", in.Resource, insecure)
	}
	if in.UpstreamTimeout < 0 {
		p.add(v+"UPSTREAM_TIMEOUT", "must not be negative (0: no bound), got %s", in.UpstreamTimeout)
	}
	if _, err := overrideBodies(in.OverrideBodies); err != nil {
		p.add(v+"METHOD_OVERRIDE_BODIES", "%v", err)
	}
	if in.MaxFormBytes < 1 || in.MaxFormBytes > maxFormBytes {
		// Bounded above too: bodies held at once take 32 times it, a
		// budget that must not overflow, nor promise memory no pod has.
		p.add(v+"MAX_FORM_BYTES", "must be from 1 to %d (1 GiB), got %d", maxFormBytes, in.MaxFormBytes)
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

func (in Inbound) validateIntrospection(p *problems, insecure bool) {
	const v = Prefix + "INBOUND_"
	secretSet := map[string]bool{
		"INTROSPECTION_CLIENT_SECRET":      in.IntrospectionClientSecret != "",
		"INTROSPECTION_CLIENT_SECRET_FILE": in.IntrospectionClientSecretFile != "",
	}
	if !in.introspection() {
		trigger := "INTROSPECTION_CLIENT_ID"
		if in.IntrospectionAuth == IntrospectionNone {
			trigger = "INTROSPECTION_URL"
			p.add(v+"INTROSPECTION_AUTH_METHOD", "is none, which needs %sINTROSPECTION_URL: with no client credentials there is no discovery of the endpoint to rely on", v)
		}
		for _, name := range []string{"INTROSPECTION_CLIENT_ID", "INTROSPECTION_CLIENT_SECRET", "INTROSPECTION_CLIENT_SECRET_FILE", "INTROSPECTION_URL"} {
			set := secretSet[name] || name == "INTROSPECTION_URL" && in.IntrospectionURL != "" ||
				name == "INTROSPECTION_CLIENT_ID" && in.IntrospectionClientID != ""
			if set && name != trigger {
				p.add(v+name, "is set but %s%s is not, so introspection is off", v, trigger)
			}
		}
		return
	}
	switch {
	case in.IntrospectionAuth == IntrospectionNone:
		for _, name := range []string{"INTROSPECTION_CLIENT_ID", "INTROSPECTION_CLIENT_SECRET", "INTROSPECTION_CLIENT_SECRET_FILE"} {
			if secretSet[name] || name == "INTROSPECTION_CLIENT_ID" && in.IntrospectionClientID != "" {
				p.add(v+name, "is set, but %sINTROSPECTION_AUTH_METHOD=none sends no client credentials: remove it, or choose client_secret_basic or client_secret_post", v)
			}
		}
	case !secretSet["INTROSPECTION_CLIENT_SECRET"] && !secretSet["INTROSPECTION_CLIENT_SECRET_FILE"]:
		p.add(v+"INTROSPECTION_CLIENT_SECRET", "introspection needs %sINTROSPECTION_CLIENT_SECRET or …_SECRET_FILE (or %sINTROSPECTION_AUTH_METHOD=none for an endpoint that asks for no client credentials)", v, v)
	case secretSet["INTROSPECTION_CLIENT_SECRET"] && secretSet["INTROSPECTION_CLIENT_SECRET_FILE"]:
		p.add(v+"INTROSPECTION_CLIENT_SECRET_FILE", "set %sINTROSPECTION_CLIENT_SECRET or …_SECRET_FILE, not both", v)
	}
	if in.IntrospectionURL != "" {
		checkIdentityURL(p, v+"INTROSPECTION_URL", in.IntrospectionURL, insecure)
	}
	if in.IntrospectionCacheTTL < 0 {
		p.add(v+"INTROSPECTION_CACHE_TTL", "must not be negative, got %s", in.IntrospectionCacheTTL)
	}
}

func (out Outbound) validate(p *problems, impliedAuth, insecure bool) {
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
	case out.AuthMethod == TLSClientAuth:
		// validateAuth says why these must be https.
	case out.Issuer != "":
		checkIdentityURL(p, v+"ISSUER", out.Issuer, insecure)
	default:
		checkIdentityURL(p, v+"TOKEN_URL", out.TokenURL, insecure)
	}
	if out.Issuer != "" {
		checkIssuer(p, v+"ISSUER", out.Issuer)
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
	out.AuthMethod = AssertionFile
	return true
}

// validateAuth checks that the method has its credential and, through
// checkUnusedCredentials, that no other credential is set: one left over
// means the operator expects a method other than the one configured.
func (out Outbound) validateAuth(p *problems, implied bool) {
	const v = Prefix + "OUTBOUND_"
	switch out.AuthMethod {
	case SecretBasic, SecretPost:
		switch {
		case out.ClientSecret == "" && out.ClientSecretFile == "":
			p.add(v+"CLIENT_SECRET", "%s needs %sCLIENT_SECRET or %sCLIENT_SECRET_FILE", out.AuthMethod, v, v)
		case out.ClientSecret != "" && out.ClientSecretFile != "":
			p.add(v+"CLIENT_SECRET_FILE", "set %sCLIENT_SECRET or %sCLIENT_SECRET_FILE, not both", v, v)
		}
	case PrivateKeyJWT:
		if out.PrivateKeyFile == "" {
			p.add(v+"PRIVATE_KEY_FILE", "is required when %sAUTH_METHOD is private_key_jwt", v)
		}
	case TLSClientAuth:
		if out.TLSCertFile == "" {
			p.add(v+"TLS_CERT_FILE", "is required when %sAUTH_METHOD is tls_client_auth: the token endpoint identifies the client by its certificate", v)
		}
		for _, e := range [][2]string{{"ISSUER", out.Issuer}, {"TOKEN_URL", out.TokenURL}} {
			switch u, err := url.Parse(e[1]); {
			case e[1] == "":
			case err == nil && u.Scheme == "http":
				p.add(v+e[0], "must be https when %sAUTH_METHOD is tls_client_auth: the client certificate is presented only over TLS; got %q", v, e[1])
			default:
				checkIdentityURL(p, v+e[0], e[1], false)
			}
		}
	case AssertionFile:
		if out.ClientAssertionFile == "" {
			p.add(v+"CLIENT_ASSERTION_FILE", "is required when %sAUTH_METHOD is client_assertion_file", v)
		}
	}
	out.checkUnusedCredentials(p, implied)
}

func (out Outbound) checkUnusedCredentials(p *problems, implied bool) {
	const v = Prefix + "OUTBOUND_"
	secret := []AuthMethod{SecretBasic, SecretPost}
	for _, c := range []struct {
		name    string
		set     bool
		methods []AuthMethod // those that send it
	}{
		{"CLIENT_SECRET", out.ClientSecret != "", secret},
		{"CLIENT_SECRET_FILE", out.ClientSecretFile != "", secret},
		{"PRIVATE_KEY_FILE", out.PrivateKeyFile != "", []AuthMethod{PrivateKeyJWT}},
		{"PRIVATE_KEY_ID", out.PrivateKeyID != "", []AuthMethod{PrivateKeyJWT}},
		{"CLIENT_ASSERTION_FILE", out.ClientAssertionFile != "", []AuthMethod{AssertionFile}},
	} {
		switch {
		case !c.set || slices.Contains(c.methods, out.AuthMethod):
		case implied:
			p.add(v+c.name, "is set, but so is %sCLIENT_ASSERTION_FILE, with which the client authenticates alone: remove one of them", v)
		case c.name == "CLIENT_ASSERTION_FILE":
			p.add(v+c.name, "is set, but %sAUTH_METHOD=%s does not send it: leave %sAUTH_METHOD unset to authenticate with the file, or remove it", v, out.AuthMethod, v)
		default:
			names := make([]string, len(c.methods))
			for i, m := range c.methods {
				names[i] = string(m)
			}
			p.add(v+c.name, "is set, but %sAUTH_METHOD=%s does not use it: remove it, or set %sAUTH_METHOD to %s", v, out.AuthMethod, v, strings.Join(names, " or "))
		}
	}
}

// validateDPoP checks the outbound DPoP settings.
func (c *Config) validateDPoP(p *problems) {
	if c.Outbound.DPoPKeyFile != "" && !c.Outbound.DPoP {
		p.add(Prefix+"OUTBOUND_DPOP_KEY_FILE", "is the key of outbound DPoP, which is off: set %sOUTBOUND_DPOP=true", Prefix)
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
		if r.Grant.Grant == outbound.GrantTokenExchange && !c.Inbound.Enabled() {
			p.add(v+"GRANT", "token-exchange exchanges the token of the caller inbound verified: it needs inbound in the same process (%sINBOUND_ISSUERS)", Prefix)
		}
		if r.Actor && r.Grant.Grant != outbound.GrantTokenExchange {
			p.add(v+"ACTOR", "is for token-exchange routes only; route %q's grant is %s", r.Name, r.Grant)
		}
		if r.Timeout < 0 {
			p.add(v+"TIMEOUT", "must not be negative (0: no bound), got %s", r.Timeout)
		}
		if r.Listen != "" {
			checkListen(p, v+"LISTEN", r.Listen)
			if !c.Outbound.AllowRemote && !isLoopback(r.Listen) {
				p.add(v+"LISTEN", "%q is not a loopback address; set %sOUTBOUND_ALLOW_REMOTE=true if that is intended", r.Listen, Prefix)
			}
		}
	}
}

// checkResource checks a resource identifier (RFC 9728 1.2): an https URL
// without a fragment (http on loopback, or with ALLOW_INSECURE_HTTP).
func checkResource(p *problems, variable, s string, insecure bool) {
	u, err := url.Parse(s)
	if err != nil || !u.IsAbs() || u.Host == "" || u.Fragment != "" || u.User != nil {
		p.add(variable, "%q is not a resource identifier: want an absolute https URL without a fragment", redactURL(s))
		return
	}
	if strings.ContainsAny(s, "\"\\") || strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		// It is quoted in every challenge's resource_metadata.
		p.add(variable, "%q has a quote, a backslash or a control character", redactURL(s))
		return
	}
	if err := discovery.SecureURL(s, insecure); err != nil {
		p.add(variable, "%q %v", redactURL(s), err)
	}
}

func checkListen(p *problems, variable, addr string) {
	if _, _, err := net.SplitHostPort(addr); err != nil {
		p.add(variable, "%q is not a host:port address", addr)
	}
}

func checkHTTPURL(p *problems, variable string, u *url.URL) {
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		p.add(variable, "%q is not an http(s) URL", redactParsed(u))
	}
}

// checkIdentityURL holds an identity-provider URL to discovery.SecureURL:
// https, or http on loopback, unless insecure.
func checkIdentityURL(p *problems, variable, s string, insecure bool) {
	if err := discovery.SecureURL(s, insecure); err != nil {
		p.add(variable, "%q %v", redactURL(s), err)
	}
}

// checkIssuer holds an issuer to discovery.CheckIssuer.
func checkIssuer(p *problems, variable, issuer string) {
	if err := discovery.CheckIssuer(issuer); err != nil {
		p.add(variable, "%q %v", redactURL(issuer), err)
	}
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

// maxFormBytes bounds AUTHSIDECAR_INBOUND_MAX_FORM_BYTES.
const maxFormBytes = 1 << 30
