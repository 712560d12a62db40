package sidecar

import (
	"fmt"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/authsidecar/authsidecar/config"
	"github.com/authsidecar/authsidecar/inbound"
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
		KeySets:     keySets,
		Audiences:   in.Audiences,
		Algorithms:  in.Algorithms,
		ClockSkew:   in.ClockSkew,
		CacheSize:   in.TokenCacheSize,
		CacheHits:   s.metrics.TokenCacheRequests.WithLabelValues("hit"),
		CacheMisses: s.metrics.TokenCacheRequests.WithLabelValues("miss"),
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
	})
	opts := s.serverOptions()
	if in.TLSCertFile != "" {
		tlsConf, err := proxy.ServerTLS(in.TLSCertFile, in.TLSKeyFile, in.ClientCAFile)
		if err != nil {
			return fmt.Errorf("inbound: %sINBOUND_TLS_CERT_FILE: %w", config.Prefix, err)
		}
		opts.TLS = tlsConf
	}
	return s.listen("inbound", in.Listen, h, opts)
}
