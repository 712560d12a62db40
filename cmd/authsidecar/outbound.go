package main

import (
	"context"
	"errors"
)

func (s *sidecar) buildOutbound(ctx context.Context) error {
	return errors.New("outbound: not wired yet")
}
