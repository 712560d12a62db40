package outbound

import (
	"context"
	"fmt"
	"net/http"
	"net/url"

	"github.com/authsidecar/authsidecar/discovery"
)

// tokenEndpoint is the token URL, configured or found by discovery. It is
// resolved at the first fetch, and again at the next if that failed, so
// that start-up never waits for the identity provider. All routes share
// one, so the issuer is asked once.
type tokenEndpoint struct {
	issuer string
	client *http.Client

	// sem is a lock held across discovery, one lookup at a time, that a
	// waiter can give up on when its context ends.
	sem      chan struct{}
	resolved string
}

func staticEndpoint(tokenURL string) *tokenEndpoint {
	return &tokenEndpoint{resolved: tokenURL, sem: make(chan struct{}, 1)}
}

func discoveredEndpoint(issuer string, client *http.Client) *tokenEndpoint {
	return &tokenEndpoint{issuer: issuer, client: client, sem: make(chan struct{}, 1)}
}

func (t *tokenEndpoint) url(ctx context.Context) (string, error) {
	if t.issuer == "" {
		return t.resolved, nil // configured: never changes
	}
	select {
	case t.sem <- struct{}{}:
		defer func() { <-t.sem }()
	case <-ctx.Done():
		return "", fmt.Errorf("outbound: finding the token endpoint of %q: %w", t.issuer, ctx.Err())
	}
	if t.resolved != "" {
		return t.resolved, nil
	}
	md, err := discovery.Fetch(ctx, t.client, t.issuer)
	if err != nil {
		return "", fmt.Errorf("outbound: finding the token endpoint of %q: %w", t.issuer, err)
	}
	u, err := url.Parse(md.TokenEndpoint)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return "", fmt.Errorf("outbound: issuer %q: token_endpoint %q is not an http(s) URL", t.issuer, md.TokenEndpoint)
	}
	if iss, _ := url.Parse(t.issuer); iss != nil && iss.Scheme == "https" && u.Scheme != "https" {
		return "", fmt.Errorf("outbound: issuer %q: token_endpoint %q is not https: the client secret would travel in clear text", t.issuer, md.TokenEndpoint)
	}
	t.resolved = md.TokenEndpoint
	return t.resolved, nil
}
