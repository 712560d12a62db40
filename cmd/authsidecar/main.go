// Command authsidecar is a service-to-service authentication sidecar: it
// verifies the bearer tokens of inbound calls and attaches client-credentials
// tokens to outbound ones. Configuration comes from AUTHSIDECAR_* variables.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"

	"golang.org/x/mod/module"

	"github.com/KimMachineGun/automemlimit/memlimit"
	"github.com/authsidecar/authsidecar/config"
	"github.com/authsidecar/authsidecar/internal/sidecar"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = ""

func main() {
	tuneRuntime(os.LookupEnv, memlimit.FromCgroup)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	err := run(ctx, os.Args[1:], environ(os.Environ()), os.Stdout, os.Stderr)
	os.Exit(exitCode(err, os.Stderr))
}

// exitCode prints err and turns it into the process's exit status: 2 for
// a usage or configuration error, 1 for anything else.
func exitCode(err error, stderr io.Writer) int {
	if err == nil {
		return 0
	}
	fmt.Fprintln(stderr, "authsidecar:", err)
	var cfgErr *config.Error
	if errors.As(err, &cfgErr) || errors.Is(err, errUsage) {
		return 2
	}
	return 1
}

var errUsage = errors.New("usage: authsidecar [check|version]")

// run is the whole program but for the process: tests call it directly.
func run(ctx context.Context, args []string, env map[string]string, stdout, stderr io.Writer) error {
	cmd := ""
	if len(args) > 0 {
		cmd = args[0]
	}
	switch {
	case len(args) > 1:
		return errUsage
	case cmd == "version":
		_, err := fmt.Fprintln(stdout, "authsidecar", buildVersion())
		return err
	case cmd == "check":
		cfg, err := config.Load(env)
		if err != nil {
			return err
		}
		return cfg.Write(stdout)
	case cmd == "":
		cfg, err := config.Load(env)
		if err != nil {
			return err
		}
		return sidecar.Run(ctx, cfg, buildVersion(), stderr)
	default:
		return fmt.Errorf("%w: unknown command %q", errUsage, cmd)
	}
}

// buildVersion is the ldflags version; else a release's module version
// (`go install …@v1.2.3`); else, for a build from a checkout, "dev-" and
// the commit, with "-dirty" when the tree had changes; else "dev". Since
// Go 1.24 a plain go build stamps a pseudo-version such as
// v0.0.0-20261201193330-f711fad0b8a1, which names no release.
func buildVersion() string {
	if version != "" {
		return version
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "dev"
	}
	if v := bi.Main.Version; v != "" && v != "(devel)" && !module.IsPseudoVersion(strings.TrimSuffix(v, "+dirty")) {
		return v
	}
	var rev, dirty string
	for _, s := range bi.Settings {
		switch {
		case s.Key == "vcs.revision" && len(s.Value) >= 12:
			rev = s.Value[:12]
		case s.Key == "vcs.modified" && s.Value == "true":
			dirty = "-dirty"
		}
	}
	if rev == "" {
		return "dev"
	}
	return "dev-" + rev + dirty
}

func environ(kv []string) map[string]string {
	m := make(map[string]string, len(kv))
	for _, e := range kv {
		if k, v, ok := strings.Cut(e, "="); ok {
			m[k] = v
		}
	}
	return m
}
