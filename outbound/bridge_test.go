package outbound_test

import (
	"github.com/authsidecar/authsidecar/config"
	"github.com/authsidecar/authsidecar/outbound"
)

// The tests build the outbound direction from an environment, as the
// sidecar does: through config.Load.
func init() {
	outbound.SetLoadOptions(func(environ map[string]string) (*outbound.Options, error) {
		cfg, err := config.Load(environ)
		if err != nil {
			return nil, err
		}
		return cfg.OutboundOptions, nil
	})
}
