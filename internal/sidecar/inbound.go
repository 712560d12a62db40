package sidecar

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/http"
	"sync/atomic"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/authsidecar/authsidecar/config"
	"github.com/authsidecar/authsidecar/discovery"
	"github.com/authsidecar/authsidecar/inbound"
	"github.com/authsidecar/authsidecar/internal/filesecret"
	"github.com/authsidecar/authsidecar/proxy"
)

func (s *sidecar) buildInbound() error {
	in := s.cfg.Inbound
	algs := make([]jose.SignatureAlgorithm, len(in.Algorithms))
	for i, a := range in.Algorithms {
		algs[i] = jose.SignatureAlgorithm(a)
	}
	client := httpClient(10 * time.Second)
	var keySets []*inbound.KeySet
	for _, iss := range in.Issuers {
		refreshes := s.metrics.JWKSRefreshes
		ks := inbound.NewKeySet(inbound.KeySetOptions{
			Issuer:          iss,
			JWKSURL:         in.JWKSURL,
			Algorithms:      algs,
			Client:          client,
			RefreshInterval: in.JWKSRefresh,
			Logger:          s.log,
			OnFetch: func(err error) {
				result := "success"
				if err != nil {
					result = "error"
				}
				refreshes.WithLabelValues(iss, result).Inc()
			},
		})
		keySets = append(keySets, ks)
		s.background = append(s.background, ks.Run)
		s.ready.Add("issuer "+iss, ks.Ready)
	}
	verifier, err := inbound.NewVerifier(inbound.VerifierOptions{
		KeySets:       keySets,
		Audiences:     in.Audiences,
		Algorithms:    in.Algorithms,
		ClockSkew:     in.ClockSkew,
		CacheSize:     in.TokenCacheSize,
		CacheHits:     s.metrics.TokenCacheRequests.WithLabelValues("hit"),
		CacheMisses:   s.metrics.TokenCacheRequests.WithLabelValues("miss"),
		Introspector:  s.introspector(client),
		IntrospectAll: in.Introspect == "all",
	})
	if err != nil {
		return fmt.Errorf("inbound: %w", err)
	}
	s.metrics.InitInbound()
	h := inbound.NewHandler(inbound.HandlerOptions{
		Verifier:     verifier,
		Policy:       inbound.Policy{RequiredScopes: in.RequiredScopes, AllowedClients: in.AllowedClients},
		Upstream:     &in.Upstream,
		Transport:    proxy.NewTransport(5*time.Second, 0),
		PublicPaths:  in.PublicPaths,
		ForwardToken: in.ForwardToken,
		Metrics:      s.metrics,
		Logger:       s.log,
		AccessLog:    s.cfg.General.AccessLog,
		Rules:        in.Rules,
		ClientCerts: inbound.ClientCertPolicy{
			Required:           in.ClientCAFile != "",
			AllowedSANs:        in.ClientAllowedSANs,
			RequireBoundTokens: in.RequireBoundTokens,
		},
	})
	opts := s.serverOptions()
	if in.TLSCertFile != "" {
		tlsConf, err := proxy.ServerTLS(in.TLSCertFile, in.TLSKeyFile, in.ClientCAFile)
		if err != nil {
			return fmt.Errorf("inbound: %sINBOUND_TLS_CERT_FILE: %w", config.Prefix, err)
		}
		if tlsConf.ClientCAs != nil {
			// Chains are verified in the handshake; a missing certificate is
			// refused by the handler with 403, an answer callers can read.
			tlsConf.ClientAuth = tls.VerifyClientCertIfGiven
		}
		opts.TLS = tlsConf
	}
	return s.listen("inbound", in.Listen, h, opts)
}

// introspector returns the RFC 7662 client, or nil when introspection is
// off. Without AUTHSIDECAR_INBOUND_INTROSPECTION_URL the endpoint comes
// from the first issuer's metadata, looked up on first use so that start-up
// does not wait for the identity provider.
func (s *sidecar) introspector(client *http.Client) *inbound.Introspector {
	in := s.cfg.Inbound
	if in.IntrospectionClientID == "" {
		return nil
	}
	endpoint := func(context.Context) (string, error) { return in.IntrospectionURL, nil }
	if in.IntrospectionURL == "" {
		var found atomic.Pointer[string]
		endpoint = func(ctx context.Context) (string, error) {
			if u := found.Load(); u != nil {
				return *u, nil
			}
			md, err := discovery.Fetch(ctx, client, in.Issuers[0])
			if err != nil {
				return "", err
			}
			if md.IntrospectionEndpoint == "" {
				return "", fmt.Errorf("issuer %q lists no introspection_endpoint; set %sINBOUND_INTROSPECTION_URL", in.Issuers[0], config.Prefix)
			}
			found.Store(&md.IntrospectionEndpoint)
			return md.IntrospectionEndpoint, nil
		}
	}
	secret := func() (string, error) { return in.IntrospectionClientSecret.Reveal(), nil }
	if in.IntrospectionClientSecretFile != "" {
		secret = filesecret.New(in.IntrospectionClientSecretFile).Value
	}
	results := s.metrics.IntrospectionRequests
	for _, r := range []string{inbound.IntrospectionActive, inbound.IntrospectionInactive, inbound.IntrospectionError} {
		results.WithLabelValues(r)
	}
	return inbound.NewIntrospector(inbound.IntrospectorOptions{
		Endpoint: endpoint,
		ClientID: in.IntrospectionClientID,
		Secret:   secret,
		Client:   client,
		TTL:      in.IntrospectionCacheTTL,
		OnResult: func(result string) { results.WithLabelValues(result).Inc() },
	})
}
