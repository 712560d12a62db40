package config

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/authsidecar/authsidecar/inbound"
	"github.com/authsidecar/authsidecar/internal/redact"
	"github.com/authsidecar/authsidecar/internal/reload"
	"github.com/authsidecar/authsidecar/outbound"
	"github.com/authsidecar/authsidecar/proxy"
	"github.com/authsidecar/authsidecar/rules"
)

// build reads every file the configuration names and builds each part's
// options from the validated variables. A file that cannot be read or
// parsed is a problem named by its variable, as any bad value is.
func (c *Config) build(p *problems) {
	if c.Inbound.Enabled() {
		c.buildInbound(p)
	}
	if c.Outbound.Enabled() {
		c.buildOutbound(p)
	}
}

func (c *Config) buildInbound(p *problems) {
	in := c.Inbound
	const v = Prefix + "INBOUND_"
	upstream := in.Upstream
	opts := &inbound.Options{
		Issuers: in.Issuers, JWKSURL: in.JWKSURL, JWKSRefresh: in.JWKSRefresh,
		Audiences: in.Audiences, Algorithms: in.Algorithms, ClockSkew: in.ClockSkew,
		TokenCacheSize: in.TokenCacheSize, Upstream: &upstream, UpstreamProtocol: in.UpstreamProtocol.Protocol,
		UpstreamTimeout: in.UpstreamTimeout, MaxFormBytes: in.MaxFormBytes,
		ForwardToken: in.ForwardToken,
		AccessLog:    c.General.AccessLog, AllowInsecureHTTP: c.General.AllowInsecureHTTP,
		RequireATJWT: in.RequireATJWT, AllowEncodedSlashes: in.AllowEncodedSlash, BodyIdleTimeout: c.General.BodyIdleTimeout,
		RequireDPoP: in.RequireDPoP, TrustForwarded: in.TrustForwarded, Resource: in.Resource,
		ClientCerts: inbound.ClientCertPolicy{
			Required: in.ClientCAFile != "", AllowedSANs: in.ClientAllowedSANs, RequireBoundTokens: in.RequireBoundTokens,
		},
	}
	opts.Rules = c.rules(p)
	if kinds, err := overrideBodies(in.OverrideBodies); err == nil {
		opts.MethodOverrideBodies = &kinds
	}
	if in.introspection() {
		opts.Introspection = c.introspection(p)
	}
	c.InboundOptions = opts
	c.Listeners = append(c.Listeners, Listener{Name: "inbound", Addr: in.Listen, TLS: c.inboundTLS(p)})
}

// rules is the rules file, if any, followed by the global settings.
func (c *Config) rules(p *problems) *reload.File[*rules.Set] {
	in := c.Inbound
	defaults := rules.Defaults{PublicPaths: in.PublicPaths, RequiredScopes: in.RequiredScopes,
		AllowedClients: in.AllowedClients, CaseInsensitive: in.CaseInsensitive}
	if in.RulesFile == "" {
		set, err := (*rules.Set)(nil).WithDefaults(defaults)
		if err != nil {
			p.add(Prefix+"INBOUND_PUBLIC_PATHS", "%v", err)
		}
		return reload.Static(set)
	}
	f := loadFile(p, Prefix+"INBOUND_RULES_FILE", in.RulesFile, func(name, path string) (*reload.File[*rules.Set], error) {
		return reload.Load(name, func() (*rules.Set, error) {
			set, err := rules.Load(path)
			if err != nil {
				return nil, err
			}
			return set.WithDefaults(defaults)
		}, path)
	})
	if f != nil {
		c.Watched = append(c.Watched, f)
	}
	return f
}

// inboundTLS is the inbound listener's TLS, nil for plain HTTP.
func (c *Config) inboundTLS(p *problems) *tls.Config {
	in := c.Inbound
	const v = Prefix + "INBOUND_"
	if in.TLSCertFile == "" {
		return nil
	}
	cert := loadKeyPair(p, v+"TLS_", in.TLSCertFile, in.TLSKeyFile)
	clientCAs := loadFile(p, v+"CLIENT_CA_FILE", in.ClientCAFile, proxy.LoadCABundle)
	if cert == nil {
		return nil
	}
	c.Watched = append(c.Watched, cert)
	if clientCAs != nil {
		c.Watched = append(c.Watched, clientCAs)
		if c.InboundOptions != nil {
			c.InboundOptions.ClientCerts.Trusted = func(chains [][]*x509.Certificate) bool { return clientCAs.Current().Trusts(chains) }
		}
	}
	conf := proxy.ServerTLS(cert, clientCAs)
	if clientCAs != nil {
		// Chains are verified in the handshake; a missing certificate is
		// refused by the handler with 403, an answer callers can read.
		conf.ClientAuth = tls.VerifyClientCertIfGiven
	}
	return conf
}

func (c *Config) introspection(p *problems) *inbound.IntrospectionOptions {
	in := c.Inbound
	io := &inbound.IntrospectionOptions{
		URL: in.IntrospectionURL, ClientID: in.IntrospectionClientID,
		SecretInBody: in.IntrospectionAuth == IntrospectionPost,
		All:          in.Introspect == IntrospectAll, CacheTTL: in.IntrospectionCacheTTL,
	}
	if in.IntrospectionAuth != IntrospectionNone {
		io.Secret = secret(p, Prefix+"INBOUND_INTROSPECTION_CLIENT_SECRET", in.IntrospectionClientSecret, in.IntrospectionClientSecretFile)
	}
	return io
}

func (c *Config) buildOutbound(p *problems) {
	out := c.Outbound
	const v = Prefix + "OUTBOUND_"
	opts := &outbound.Options{
		ClientID: out.ClientID, TokenURL: out.TokenURL, Issuer: out.Issuer,
		TokenTimeout: out.TokenTimeout, AllowInsecureHTTP: c.General.AllowInsecureHTTP,
		BodyIdleTimeout: c.General.BodyIdleTimeout, ReadyRequiresTokens: out.ReadyRequiresTokens,
		AccessLog: c.General.AccessLog,
	}
	opts.ClientAuth = c.clientAuth(p)
	if out.DPoP {
		opts.DPoP = c.dpopKey(p)
	}
	opts.TLS, opts.RootCAs = c.outboundTLS(p)
	c.Listeners = append(c.Listeners, Listener{Name: "outbound", Addr: out.Listen})
	for _, r := range c.Routes {
		u := r.URL
		opts.Routes = append(opts.Routes, outbound.RouteOptions{
			Name: r.Name, URL: &u, Audience: r.Audience, Resource: r.Resource, Scopes: r.Scopes, Listen: r.Listen,
			Protocol: r.Protocol.Protocol, Timeout: r.Timeout, Grant: r.Grant.Grant, Actor: r.Actor,
		})
		if r.Listen != "" {
			c.Listeners = append(c.Listeners, Listener{Name: "route " + r.Name, Addr: r.Listen, Route: r.Name})
		}
	}
	c.OutboundOptions = opts
}

// dpopKey is the outbound DPoP key: the key file's, or one made now. The
// file is read once: a new key would leave every token bound to the old
// one useless, so it takes effect at the next start.
func (c *Config) dpopKey(p *problems) *outbound.DPoPKey {
	const v = Prefix + "OUTBOUND_DPOP_KEY_FILE"
	if c.Outbound.DPoPKeyFile == "" {
		k, err := outbound.NewDPoPKey()
		if err != nil {
			p.add(Prefix+"OUTBOUND_DPOP", "making a key: %v", err)
		}
		return k
	}
	b, err := os.ReadFile(c.Outbound.DPoPKeyFile)
	if err != nil {
		p.add(v, "%v", err)
		return nil
	}
	key, alg, err := parsePrivateKey(b)
	if err != nil {
		p.add(v, "%s: %v", c.Outbound.DPoPKeyFile, err)
		return nil
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		p.add(v, "%s: the key cannot sign", c.Outbound.DPoPKeyFile)
		return nil
	}
	return &outbound.DPoPKey{Key: signer, Alg: alg}
}

// clientAuth is the token requests' client authentication, its files read.
func (c *Config) clientAuth(p *problems) outbound.ClientAuth {
	out := c.Outbound
	const v = Prefix + "OUTBOUND_"
	switch out.AuthMethod {
	case SecretBasic:
		return outbound.SecretBasic(secret(p, v+"CLIENT_SECRET", out.ClientSecret, out.ClientSecretFile))
	case SecretPost:
		return outbound.SecretPost(secret(p, v+"CLIENT_SECRET", out.ClientSecret, out.ClientSecretFile))
	case PrivateKeyJWT:
		key := loadFile(p, v+"PRIVATE_KEY_FILE", out.PrivateKeyFile, func(name, path string) (*reload.File[jose.Signer], error) {
			return reload.Load(name, func() (jose.Signer, error) { return loadSigner(path, out.PrivateKeyID) }, path)
		})
		return outbound.PrivateKeyJWT(key)
	case TLSClientAuth:
		return outbound.TLSClientAuth()
	case AssertionFile:
		path := out.ClientAssertionFile
		if loadFile(p, v+"CLIENT_ASSERTION_FILE", path, loadAssertion) != nil {
			return outbound.AssertionFile(func() (string, error) { return readAssertion(path) })
		}
	}
	return nil
}

// outboundTLS is the TLS for upstreams and the token endpoint, nil for
// Go's defaults, and the CA bundle to trust, nil for the system roots.
func (c *Config) outboundTLS(p *problems) (conf *tls.Config, roots *reload.File[*x509.CertPool]) {
	out := c.Outbound
	const v = Prefix + "OUTBOUND_"
	if out.TLSCAFile == "" && out.TLSCertFile == "" {
		return nil, nil
	}
	roots = loadFile(p, v+"TLS_CA_FILE", out.TLSCAFile, proxy.LoadCertPool)
	if roots != nil {
		c.Watched = append(c.Watched, roots)
	}
	cert := loadKeyPair(p, v+"TLS_", out.TLSCertFile, out.TLSKeyFile)
	if cert != nil {
		c.Watched = append(c.Watched, cert)
	}
	return proxy.ClientTLS(nil, cert), roots
}

// loadFile loads path with load when it is set, recording a failure
// under variable; it returns nil when path is "" or on failure.
func loadFile[T any](p *problems, variable, path string, load func(name, path string) (*reload.File[T], error)) *reload.File[T] {
	if path == "" {
		return nil
	}
	name := strings.TrimPrefix(variable, Prefix)
	f, err := load(name, path)
	if err != nil {
		p.add(variable, "%s", strings.TrimPrefix(err.Error(), name+": "))
		return nil
	}
	return f
}

// loadKeyPair loads a certificate and its key, the variables
// prefix+CERT_FILE and prefix+KEY_FILE; a file that is missing is named
// by its own variable.
func loadKeyPair(p *problems, prefix, certFile, keyFile string) *reload.File[*tls.Certificate] {
	if certFile == "" {
		return nil
	}
	for _, f := range [][2]string{{prefix + "CERT_FILE", certFile}, {prefix + "KEY_FILE", keyFile}} {
		if _, err := os.Stat(f[1]); err != nil {
			p.add(f[0], "%v", err)
			return nil
		}
	}
	return loadFile(p, prefix+"CERT_FILE", certFile, func(name, path string) (*reload.File[*tls.Certificate], error) {
		return proxy.LoadKeyPair(name, path, keyFile)
	})
}

// secret is the value of variable, or of variable_FILE, read now and
// again when the file changes.
func secret(p *problems, variable string, value Secret, file string) *reload.File[string] {
	if file == "" {
		return reload.Static(value.Reveal())
	}
	return loadFile(p, variable+"_FILE", file, func(name, path string) (*reload.File[string], error) {
		return reload.Load(name, func() (string, error) { return readSecret(path) }, path)
	})
}

// readSecret reads a secret file without surrounding white space: editors
// and `echo` end files with a newline that is no part of the secret.
func readSecret(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	v := strings.TrimSpace(string(b))
	if v == "" {
		return "", fmt.Errorf("%s is empty", path)
	}
	return v, nil
}

// maxAssertionBytes bounds the read: a projected token is about 1 KiB.
const maxAssertionBytes = 64 << 10

func loadAssertion(name, path string) (*reload.File[string], error) {
	return reload.Load(name, func() (string, error) { return readAssertion(path) }, path)
}

func readAssertion(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	if len(b) > maxAssertionBytes {
		return "", fmt.Errorf("%s holds %d bytes, more than the %d a client assertion may have", path, len(b), maxAssertionBytes)
	}
	// A trailing newline is no part of the token.
	v := strings.TrimSpace(string(b))
	if v == "" {
		return "", fmt.Errorf("%s is empty", path)
	}
	if !isCompactJWS(v) {
		return "", fmt.Errorf("%s does not hold a JWT (three base64url parts separated by dots)", path)
	}
	return v, nil
}

// isCompactJWS reports whether s looks like a signed JWT, without
// decoding it: the identity provider judges it, but a file holding
// something else is better named at start than answered with 401.
func isCompactJWS(s string) bool {
	parts := strings.Split(s, ".")
	if len(parts) != 3 || parts[0] == "" || parts[1] == "" || parts[2] == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// loadSigner reads a private key file and returns a signer for its
// algorithm, the JWS header's kid set to kid.
func loadSigner(path, kid string) (jose.Signer, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	key, alg, err := parsePrivateKey(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	opts := (&jose.SignerOptions{}).WithType("JWT")
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: jose.JSONWebKey{Key: key, KeyID: kid}}, opts)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return s, nil
}

// parsePrivateKey reads the first private key in a PEM file (PKCS#8,
// PKCS#1 RSA or SEC1 EC; other blocks such as EC PARAMETERS or a
// certificate are skipped) and picks its algorithm: RS256 for RSA, ES256,
// ES384 or ES512 for P-256, P-384 or P-521. Errors never quote the key.
func parsePrivateKey(data []byte) (any, jose.SignatureAlgorithm, error) {
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			return nil, "", errors.New("no PEM private key (PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY)")
		}
		var (
			key any
			err error
		)
		if block.Headers["Proc-Type"] != "" { // RFC 1421 encryption
			block.Type = "ENCRYPTED PRIVATE KEY"
		}
		switch block.Type {
		case "PRIVATE KEY":
			key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
		case "RSA PRIVATE KEY":
			key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
		case "EC PRIVATE KEY":
			key, err = x509.ParseECPrivateKey(block.Bytes)
		case "ENCRYPTED PRIVATE KEY":
			return nil, "", errors.New("the private key is encrypted: give it unencrypted, protected by the file's permissions")
		default:
			continue
		}
		if err != nil {
			return nil, "", fmt.Errorf("%s: %w", block.Type, err)
		}
		alg, err := algorithmOf(key)
		return key, alg, err
	}
}

func algorithmOf(key any) (jose.SignatureAlgorithm, error) {
	switch k := key.(type) {
	case *rsa.PrivateKey:
		if bits := k.N.BitLen(); bits < 2048 {
			return "", fmt.Errorf("an RSA key of %d bits is too short: RS256 needs at least 2048 (RFC 7518 3.3)", bits)
		}
		return jose.RS256, nil
	case *ecdsa.PrivateKey:
		switch k.Curve {
		case elliptic.P256():
			return jose.ES256, nil
		case elliptic.P384():
			return jose.ES384, nil
		case elliptic.P521():
			return jose.ES512, nil
		}
		return "", fmt.Errorf("an EC key on curve %s: want P-256, P-384 or P-521", k.Curve.Params().Name)
	default:
		return "", fmt.Errorf("a key of type %T: want an RSA or EC (P-256) key", key)
	}
}

// rulesCheckPublicPath checks one AUTHSIDECAR_INBOUND_PUBLIC_PATHS entry.
func rulesCheckPublicPath(path string) error {
	_, err := (*rules.Set)(nil).WithDefaults(rules.Defaults{PublicPaths: []string{path}})
	return err
}

func redactURL(s string) string      { return redact.URL(s) }
func redactParsed(u *url.URL) string { return redact.ParsedURL(u) }

// overrideBodies reads AUTHSIDECAR_INBOUND_METHOD_OVERRIDE_BODIES: "form",
// "json", both, or "none". A list of nothing (",") is refused, not taken
// for none: turning the check off takes the word.
func overrideBodies(l List) (inbound.OverrideBodies, error) {
	var kinds inbound.OverrideBodies
	if len(l) == 0 {
		return kinds, errors.New("lists nothing: want form, json, form,json or none")
	}
	for _, k := range l {
		switch strings.ToLower(k) {
		case "form":
			kinds.Forms = true
		case "json":
			kinds.JSON = true
		case "none":
			if len(l) > 1 {
				return kinds, fmt.Errorf("none cannot be listed with other kinds, got %q", strings.Join(l, ","))
			}
		default:
			return kinds, fmt.Errorf("want a list of form and json, or none; got %q", k)
		}
	}
	return kinds, nil
}
