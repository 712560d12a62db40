// Package discovery fetches an issuer's metadata: OpenID Connect discovery
// first, then OAuth 2.0 Authorization Server Metadata (RFC 8414), as both
// directions need the endpoints it lists. It also holds the rule every
// identity-provider URL is held to: HTTPS, but on loopback.
package discovery

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/authsidecar/authsidecar/internal/flight"
	"github.com/authsidecar/authsidecar/internal/redact"
	"github.com/authsidecar/authsidecar/internal/tracing"
)

// MaxBodyBytes bounds a metadata or key set document; real ones are a few KiB.
const MaxBodyBytes = 1 << 20

// Metadata holds the fields of an issuer's metadata that authsidecar uses.
type Metadata struct {
	Issuer                string   `json:"issuer"`
	JWKSURI               string   `json:"jwks_uri"`
	TokenEndpoint         string   `json:"token_endpoint"`
	IntrospectionEndpoint string   `json:"introspection_endpoint"`
	SigningAlgs           []string `json:"id_token_signing_alg_values_supported"`
}

// Client fetches metadata and documents from identity providers.
type Client struct {
	HTTP *http.Client
	// AllowInsecureHTTP accepts plain-HTTP endpoints on hosts that are not
	// loopback. It MUST NOT be set where the network between the sidecar
	// and the identity provider is not trusted: client secrets and tokens
	// then cross it in clear text, and a forged key set can be injected.
	AllowInsecureHTTP bool
}

// Fetch returns issuer's metadata with client and the default rule for
// plain HTTP (loopback only); see Client.Metadata.
func Fetch(ctx context.Context, client *http.Client, issuer string) (*Metadata, error) {
	return (&Client{HTTP: client}).Metadata(ctx, issuer)
}

// Metadata returns issuer's metadata from the first of its well-known
// documents that answers. The document's "issuer" must equal issuer
// exactly (OpenID Connect Discovery 4.3, RFC 8414 3.3), or a document
// served by one issuer could hand out another's keys; and every endpoint
// it lists must pass SecureURL, and be HTTPS when the issuer is.
func (c *Client) Metadata(ctx context.Context, issuer string) (*Metadata, error) {
	if err := CheckIssuer(issuer); err != nil {
		return nil, fmt.Errorf("discovery: issuer %q %w", redact.URL(issuer), err)
	}
	ctx = tracing.WithOperation(ctx, tracing.OpDiscovery)
	var errs []error
	for _, u := range wellKnownURLs(issuer) {
		md, err := c.fetch(ctx, u)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if md.Issuer != issuer {
			return nil, fmt.Errorf("discovery: %s: issuer is %q, want %q", redact.URL(u), redact.URL(md.Issuer), redact.URL(issuer))
		}
		if err := c.checkEndpoints(md); err != nil {
			return nil, err
		}
		return md, nil
	}
	return nil, errors.Join(errs...)
}

func (c *Client) checkEndpoints(md *Metadata) error {
	https := isHTTPS(md.Issuer)
	for _, e := range []struct{ name, url string }{
		{"jwks_uri", md.JWKSURI},
		{"token_endpoint", md.TokenEndpoint},
		{"introspection_endpoint", md.IntrospectionEndpoint},
	} {
		if e.url == "" {
			continue
		}
		err := SecureURL(e.url, c.AllowInsecureHTTP)
		if err == nil && https && !c.AllowInsecureHTTP && !isHTTPS(e.url) {
			err = errors.New("is not https, while the issuer is")
		}
		if err != nil {
			return fmt.Errorf("discovery: issuer %q: %s %q %w", redact.URL(md.Issuer), e.name, redact.URL(e.url), err)
		}
	}
	return nil
}

// isHTTPS reports whether u's scheme is https, in any case: "HTTPS://" is
// https to a URL parser, and so to whoever configured it.
func isHTTPS(u string) bool {
	scheme, _, ok := strings.Cut(u, "://")
	return ok && strings.EqualFold(scheme, "https")
}

// CheckIssuer refuses an issuer identifier with a query or a fragment,
// which an issuer never has (OpenID Connect Discovery 4.3, RFC 8414
// section 2): its well-known URLs are the issuer with a path added, and
// with a query or fragment in the way they would name another resource.
func CheckIssuer(issuer string) error {
	if strings.ContainsAny(issuer, "?#") {
		return errors.New("has a query or fragment, which an issuer identifier never has")
	}
	return nil
}

// SecureURL accepts an identity-provider URL that is https, or http to a
// loopback host (localhost, 127.0.0.0/8, ::1), or any http URL when
// allowInsecure is set. Anything else, including other schemes and URLs
// without a host, is refused.
func SecureURL(raw string, allowInsecure bool) error {
	u, err := url.Parse(raw)
	// Hostname, not Host: "http://:" has a Host, ":", and dials this machine.
	if err != nil || u.Hostname() == "" || u.Scheme != "https" && u.Scheme != "http" {
		return errors.New("is not an http(s) URL")
	}
	if u.Scheme == "https" || allowInsecure || isLoopbackHost(u.Hostname()) {
		return nil
	}
	return errors.New("is plain HTTP to a host that is not loopback: use https, or set AUTHSIDECAR_ALLOW_INSECURE_HTTP=true on a trusted network")
}

func isLoopbackHost(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// wellKnownURLs lists where issuer's metadata may be: OIDC appends the
// well-known path to the issuer; RFC 8414 inserts it before the issuer's
// path, and many servers also answer the OIDC-style form.
func wellKnownURLs(issuer string) []string {
	trimmed := strings.TrimSuffix(issuer, "/")
	urls := []string{trimmed + "/.well-known/openid-configuration"}
	if u, err := url.Parse(trimmed); err == nil && u.Path != "" {
		path := u.Path
		u.Path = "/.well-known/oauth-authorization-server" + path
		urls = append(urls, u.String())
	}
	return append(urls, trimmed+"/.well-known/oauth-authorization-server")
}

func (c *Client) fetch(ctx context.Context, u string) (*Metadata, error) {
	body, err := c.Get(ctx, u)
	if err != nil {
		return nil, err
	}
	return parseMetadata(body)
}

// parseMetadata decodes a metadata document.
func parseMetadata(body []byte) (*Metadata, error) {
	var md Metadata
	if err := json.Unmarshal(body, &md); err != nil {
		return nil, fmt.Errorf("discovery: bad metadata: %w", err)
	}
	return &md, nil
}

// Get fetches u and returns its body, refusing non-200 answers and bodies
// over MaxBodyBytes.
func (c *Client) Get(ctx context.Context, u string) ([]byte, error) {
	shown := redact.URL(u)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("discovery: %s: %w", shown, withoutURL(err))
	}
	req.Header.Set("Accept", "application/json")
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return nil, fmt.Errorf("discovery: %s: %w", shown, withoutURL(err))
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
		return nil, fmt.Errorf("discovery: %s: status %d", shown, resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxBodyBytes+1))
	if err != nil {
		return nil, fmt.Errorf("discovery: %s: %w", shown, err)
	}
	if len(body) > MaxBodyBytes {
		return nil, fmt.Errorf("discovery: %s: body larger than %d bytes", shown, MaxBodyBytes)
	}
	return body, nil
}

// withoutURL unwraps a *url.Error, whose text repeats the whole URL,
// credentials and all.
func withoutURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// Issuer is one issuer's metadata, fetched when first needed and kept
// once it has been had: the key set, introspection and the token source
// of one issuer share it, and concurrent first uses share one fetch.
type Issuer struct {
	url    string
	client *Client
	md     atomic.Pointer[Metadata]
	fetch  flight.Group[*Metadata]
}

// Issuer returns the metadata holder for issuer.
func (c *Client) Issuer(issuer string) *Issuer { return &Issuer{url: issuer, client: c} }

// URL is the issuer's identifier.
func (i *Issuer) URL() string { return i.url }

// Metadata returns the metadata, fetching it unless it has been had.
func (i *Issuer) Metadata(ctx context.Context) (*Metadata, error) {
	if md := i.md.Load(); md != nil {
		return md, nil
	}
	return i.fetch.Do(ctx, "", fetchTimeout, func(ctx context.Context) (*Metadata, error) {
		md, err := i.client.Metadata(ctx, i.url)
		if err == nil {
			i.md.Store(md)
		}
		return md, err
	})
}

// fetchTimeout bounds one discovery, all well-known documents included.
const fetchTimeout = 15 * time.Second
