package outbound

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/authsidecar/authsidecar/internal/clock"
	"github.com/authsidecar/authsidecar/internal/tracing"
)

// clientCredentials fetches tokens with the OAuth2 client-credentials grant
// (RFC 6749 section 4.4) for one route.
type clientCredentials struct {
	clientID string
	auth     ClientAuth
	endpoint func(context.Context) (string, error)
	scopes   []string
	params   url.Values // audience, resource
	client   *http.Client
	timeout  time.Duration
	clock    clock.Clock
	// dpop: tokens are asked for with DPoP proofs, and may be DPoP-bound.
	dpop bool
}

// Token implements TokenSource.
func (s *clientCredentials) Token(ctx context.Context) (*oauth2.Token, error) {
	return s.request(ctx, nil)
}

// request asks the token endpoint for a token, authenticated as the
// client, with the route's scopes, audience and resource, and extra (which
// may replace grant_type: RFC 8693 token exchange reuses all the rest).
func (s *clientCredentials) request(ctx context.Context, extra url.Values) (*oauth2.Token, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	ctx = context.WithValue(ctx, oauth2.HTTPClient, s.client)
	ctx = tracing.WithOperation(ctx, tracing.OpToken)
	tokenURL, err := s.endpoint(ctx)
	if err != nil {
		return nil, err
	}
	params := s.params
	if len(extra) > 0 {
		params = maps.Clone(s.params)
		maps.Copy(params, extra)
	}
	cfg := &clientcredentials.Config{
		ClientID:       s.clientID,
		TokenURL:       tokenURL,
		Scopes:         s.scopes,
		EndpointParams: params,
	}
	start := s.clock.Now()
	if err := s.auth.apply(cfg, start); err != nil {
		return nil, err
	}
	tok, err := cfg.Token(ctx)
	if err != nil {
		return nil, describeFetchError(tokenURL, err)
	}
	if err := checkToken(tok, s.dpop); err != nil {
		return nil, err
	}
	// x/oauth2 turns expires_in into an Expiry on the real clock; the cache
	// works on its own clock, so count the lifetime from our request's start.
	if secs, ok := expiresIn(tok); ok {
		tok.Expiry = start.Add(time.Duration(secs) * time.Second)
	}
	return tok, nil
}

// describeFetchError keeps what an operator needs from a failed token
// request. x/oauth2's RetrieveError prints the whole response body, which
// has no place in a log line.
func describeFetchError(tokenURL string, err error) error {
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) || re.Response == nil {
		return fmt.Errorf("outbound: token request: %w", err)
	}
	msg := fmt.Sprintf("outbound: token endpoint %s answered %d", redactURL(tokenURL), re.Response.StatusCode)
	if re.ErrorCode != "" {
		msg += fmt.Sprintf(": error %q", re.ErrorCode)
	}
	if re.ErrorDescription != "" {
		msg += fmt.Sprintf(" (%q)", re.ErrorDescription)
	}
	return errors.New(msg)
}

// checkToken refuses what cannot be sent as "Authorization: Bearer" (or
// "DPoP", when dpop is on): another token type (a DPoP token when DPoP is
// off, a MAC token), or bytes a header cannot carry.
func checkToken(tok *oauth2.Token, dpop bool) error {
	if tok.AccessToken == "" {
		return errors.New("outbound: token endpoint returned no access_token")
	}
	if tok.TokenType != "" && !strings.EqualFold(tok.TokenType, "bearer") && !(dpop && strings.EqualFold(tok.TokenType, "dpop")) {
		return fmt.Errorf("outbound: token endpoint returned token_type %q, want %q", tok.TokenType, "Bearer")
	}
	for i := 0; i < len(tok.AccessToken); i++ {
		if b := tok.AccessToken[i]; b < 0x21 || b > 0x7e {
			return errors.New("outbound: token endpoint returned an access_token with characters a header cannot carry")
		}
	}
	return nil
}

// maxExpiresIn caps expires_in, as x/oauth2 does: 68 years is for ever,
// and past 292 years the lifetime as a Duration would overflow, to a token
// expired long ago or one refreshed every few milliseconds.
const maxExpiresIn = math.MaxInt32

// expiresIn returns the response's expires_in in seconds, at most
// maxExpiresIn: a JSON number, an integer in a form-encoded response (as
// x/oauth2 reads it), or a string as some servers send.
func expiresIn(tok *oauth2.Token) (int64, bool) {
	switch v := tok.Extra("expires_in").(type) {
	case float64:
		return int64(min(v, maxExpiresIn)), v > 0
	case int64:
		return min(v, maxExpiresIn), v > 0
	case string:
		n, err := strconv.ParseInt(v, 10, 64)
		return min(n, maxExpiresIn), err == nil && n > 0
	default:
		return 0, false
	}
}
