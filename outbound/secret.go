package outbound

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"

	"github.com/authsidecar/authsidecar/config"
)

// secretSource yields the client secret for one token request.
type secretSource interface {
	secret() (string, error)
}

// staticSecret is AUTHSIDECAR_OUTBOUND_CLIENT_SECRET.
type staticSecret config.Secret

func (s staticSecret) secret() (string, error) { return config.Secret(s).Reveal(), nil }

// secretFile is AUTHSIDECAR_OUTBOUND_CLIENT_SECRET_FILE, re-read when it
// changes. Kubernetes rotates a mounted secret by swapping a symlink to a
// new file, so "changed" means another file (by device and inode), another
// modification time or another size; a stat per fetch is cheap next to
// the token request it precedes.
type secretFile struct {
	path string

	mu    sync.Mutex
	info  os.FileInfo // of the file last read; nil before the first read
	value string
}

func newSecretFile(path string) *secretFile { return &secretFile{path: path} }

func (f *secretFile) secret() (string, error) {
	info, err := os.Stat(f.path) // follows the symlink, as a read does
	if err != nil {
		return "", fmt.Errorf("outbound: client secret file: %w", err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if !changed(f.info, info) {
		return f.value, nil
	}
	b, err := os.ReadFile(f.path)
	if err != nil {
		return "", fmt.Errorf("outbound: client secret file: %w", err)
	}
	// Files written by editors and `echo` end in a newline that is no
	// part of the secret.
	v := strings.TrimSpace(string(b))
	if v == "" {
		return "", errors.New("outbound: client secret file " + f.path + " is empty")
	}
	f.info, f.value = info, v
	return v, nil
}

// newSecretSource reads a secret file once now, so that a missing or
// empty file fails start-up instead of the first call.
func newSecretSource(out config.Outbound) (secretSource, error) {
	switch {
	case out.ClientSecretFile != "":
		f := newSecretFile(out.ClientSecretFile)
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
