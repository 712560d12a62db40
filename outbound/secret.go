package outbound

import (
	"errors"
	"fmt"

	"github.com/authsidecar/authsidecar/config"
	"github.com/authsidecar/authsidecar/internal/filesecret"
)

// secretSource yields the client secret for one token request.
type secretSource interface {
	secret() (string, error)
}

// staticSecret is AUTHSIDECAR_OUTBOUND_CLIENT_SECRET.
type staticSecret config.Secret

func (s staticSecret) secret() (string, error) { return config.Secret(s).Reveal(), nil }

// secretFile is AUTHSIDECAR_OUTBOUND_CLIENT_SECRET_FILE, re-read when it
// changes (Kubernetes secret rotation).
type secretFile struct{ file *filesecret.File }

func (f secretFile) secret() (string, error) {
	v, err := f.file.Value()
	if err != nil {
		return "", fmt.Errorf("outbound: %sOUTBOUND_CLIENT_SECRET_FILE: %w", config.Prefix, err)
	}
	return v, nil
}

// newSecretSource reads a secret file once now, so that a missing or
// empty file fails start-up instead of the first call.
func newSecretSource(out config.Outbound) (secretSource, error) {
	switch {
	case out.ClientSecretFile != "":
		f := secretFile{filesecret.New(out.ClientSecretFile)}
		if _, err := f.secret(); err != nil {
			return nil, err
		}
		return f, nil
	case out.ClientSecret != "":
		return staticSecret(out.ClientSecret), nil
	default:
		return nil, errors.New("outbound: AUTHSIDECAR_OUTBOUND_CLIENT_SECRET or AUTHSIDECAR_OUTBOUND_CLIENT_SECRET_FILE is required")
	}
}
