package sidecar

import (
	"context"

	"github.com/authsidecar/authsidecar/outbound"
)

func (s *sidecar) buildOutbound(ctx context.Context) error {
	out, err := outbound.Build(ctx, s.cfg, s.metrics, s.log)
	if err != nil {
		return err
	}
	if err := s.listen("outbound", s.cfg.Outbound.Listen, out.Handler(), s.serverOptions()); err != nil {
		return err
	}
	for _, r := range out.Routes() {
		if r.Listen == "" {
			continue
		}
		if err := s.listen("route "+r.Name, r.Listen, r.Handler(), s.serverOptions()); err != nil {
			return err
		}
	}
	s.background = append(s.background, out.Start)
	return nil
}
