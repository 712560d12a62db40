// Package discovery fetches an issuer's metadata: OpenID Connect discovery
// first, then OAuth 2.0 Authorization Server Metadata (RFC 8414), as both
// directions need the endpoints it lists.
package discovery

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
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

// Fetch returns issuer's metadata from the first of its well-known
// documents that answers. The document's "issuer" must equal issuer
// exactly (OpenID Connect Discovery 4.3, RFC 8414 3.3), or a document
// served by one issuer could hand out another's keys.
func Fetch(ctx context.Context, client *http.Client, issuer string) (*Metadata, error) {
	var errs []error
	for _, u := range wellKnownURLs(issuer) {
		md, err := fetch(ctx, client, u)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if md.Issuer != issuer {
			return nil, fmt.Errorf("discovery: %s: issuer is %q, want %q", u, md.Issuer, issuer)
		}
		return md, nil
	}
	return nil, errors.Join(errs...)
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

func fetch(ctx context.Context, client *http.Client, u string) (*Metadata, error) {
	body, err := Get(ctx, client, u)
	if err != nil {
		return nil, err
	}
	var md Metadata
	if err := json.Unmarshal(body, &md); err != nil {
		return nil, fmt.Errorf("discovery: %s: %w", u, err)
	}
	return &md, nil
}

// Get fetches u and returns its body, refusing non-200 answers and bodies
// over MaxBodyBytes.
func Get(ctx context.Context, client *http.Client, u string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("discovery: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("discovery: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
		return nil, fmt.Errorf("discovery: %s: status %d", u, resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxBodyBytes+1))
	if err != nil {
		return nil, fmt.Errorf("discovery: %s: %w", u, err)
	}
	if len(body) > MaxBodyBytes {
		return nil, fmt.Errorf("discovery: %s: body larger than %d bytes", u, MaxBodyBytes)
	}
	return body, nil
}
