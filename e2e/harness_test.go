// Package e2e runs authsidecar's end-to-end tests: the built binary against a
// real, independent identity provider (node-oidc-provider, see idp/), a
// recording app and real HTTP clients, all on 127.0.0.1.
//
// The suite needs Node.js. Without node on PATH it is skipped with a banner,
// except under CI=true where it fails: CI must not silently lose it.
package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/authsidecar/authsidecar/internal/freeport"
)

// idpDir is the absolute path of e2e/idp, set by TestMain.
var idpDir string

func TestMain(m *testing.M) {
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	if os.Getenv(fakeSidecarEnv) == "1" {
		return runFakeSidecar()
	}
	if _, err := exec.LookPath("node"); err != nil {
		if os.Getenv("CI") == "true" {
			banner("E2E FAILED: node not found on PATH. CI must install Node.js (20.19+; 22 LTS preferred) to run the end-to-end tests.")
			return 1
		}
		banner("E2E SKIPPED: node not found on PATH. Install Node.js to run the end-to-end tests.")
		return 0
	}
	wd, err := os.Getwd()
	if err != nil {
		banner("E2E FAILED: " + err.Error())
		return 1
	}
	idpDir = filepath.Join(wd, "idp")
	expressDir = filepath.Join(wd, "express")
	if err := ensureNodeDeps(idpDir, "oidc-provider"); err != nil {
		banner("E2E FAILED: " + err.Error())
		return 1
	}
	if err := ensureNodeDeps(expressDir, "express"); err != nil {
		banner("E2E FAILED: " + err.Error())
		return 1
	}
	raiseDefaultParallelism()
	code := m.Run()
	removeSidecarBinary()
	return code
}

// raiseDefaultParallelism runs up to max(4, 2×GOMAXPROCS) parallel tests
// at once unless -test.parallel was given: the scenarios spend most of
// their time waiting (on child processes, cool-downs, back-offs), not
// computing, and the default of GOMAXPROCS leaves a small machine idle.
func raiseDefaultParallelism() {
	flag.Parse()
	given := false
	flag.Visit(func(f *flag.Flag) { given = given || f.Name == "test.parallel" })
	if !given {
		_ = flag.Set("test.parallel", strconv.Itoa(max(4, 2*runtime.GOMAXPROCS(0))))
	}
}

func banner(msg string) {
	line := strings.Repeat("=", len(msg)+4)
	fmt.Fprintf(os.Stderr, "\n%s\n  %s\n%s\n\n", line, msg, line)
}

// ensureNodeDeps runs npm ci in dir unless its node_modules holds the
// version of pkg that dir/package.json pins. A package.json that does not
// pin pkg is an error: the tests would otherwise run against whatever is
// installed.
func ensureNodeDeps(dir, pkg string) error {
	want, err := pinnedVersion(dir, pkg)
	if err != nil {
		return err
	}
	if installedVersion(dir, pkg) == want {
		return nil
	}
	npm, err := exec.LookPath("npm")
	if err != nil {
		return fmt.Errorf("%s/node_modules is missing or stale and npm is not on PATH", dir)
	}
	fmt.Fprintf(os.Stderr, "e2e: installing %s's packages (npm ci in %s)\n", pkg, dir)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, npm, "ci", "--no-audit", "--no-fund")
	cmd.Dir = dir
	cmd.Stdout = os.Stderr
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("npm ci in %s: %w", dir, err)
	}
	if got := installedVersion(dir, pkg); got != want {
		return fmt.Errorf("after npm ci, %s is %q, want %q", pkg, got, want)
	}
	return nil
}

// pinnedVersion is the version of pkg that dir/package.json depends on.
func pinnedVersion(dir, pkg string) (string, error) {
	var manifest struct {
		Dependencies map[string]string `json:"dependencies"`
	}
	b, err := os.ReadFile(filepath.Join(dir, "package.json"))
	if err == nil {
		err = json.Unmarshal(b, &manifest)
	}
	if err != nil {
		return "", fmt.Errorf("reading %s/package.json: %w", dir, err)
	}
	v := manifest.Dependencies[pkg]
	if v == "" {
		return "", fmt.Errorf("%s/package.json has no %s dependency", dir, pkg)
	}
	return v, nil
}

// installedVersion is the version of pkg in dir/node_modules, "" if none.
func installedVersion(dir, pkg string) string {
	var p struct {
		Version string `json:"version"`
	}
	b, err := os.ReadFile(filepath.Join(dir, "node_modules", pkg, "package.json"))
	if err != nil || json.Unmarshal(b, &p) != nil {
		return ""
	}
	return p.Version
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago and
// that no other test of this process was given (see freeport.Addr).
func freePort(t testing.TB) int {
	t.Helper()
	addr, err := freeport.Addr()
	if err != nil {
		t.Fatal(err)
	}
	_, p, _ := net.SplitHostPort(addr)
	port, _ := strconv.Atoi(p)
	return port
}

// freeAddr returns "127.0.0.1:PORT" for a port that was free a moment ago.
func freeAddr(t testing.TB) string {
	t.Helper()
	return fmt.Sprintf("127.0.0.1:%d", freePort(t))
}

// logBuffer is an io.Writer safe for concurrent use whose contents can be
// read while the process that writes it runs.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// lineWriter calls onLine for every complete line written to it.
type lineWriter struct {
	mu      sync.Mutex
	partial []byte
	onLine  func(line string)
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.partial = append(w.partial, p...)
	for {
		i := bytes.IndexByte(w.partial, '\n')
		if i < 0 {
			return len(p), nil
		}
		w.onLine(string(w.partial[:i]))
		w.partial = w.partial[i+1:]
	}
}

// proc is a child process whose exit is observed by one goroutine.
type proc struct {
	cmd  *exec.Cmd
	done chan struct{} // closed once the process has exited
	code int           // exit code, -1 when killed by a signal; valid after done
}

// startProc starts cmd. The process is not tied to any test: callers stop
// it in a t.Cleanup.
func startProc(cmd *exec.Cmd) (*proc, error) {
	// Bounds Wait when a stray child keeps the output pipes open.
	cmd.WaitDelay = 2 * time.Second
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &proc{cmd: cmd, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		p.code = cmd.ProcessState.ExitCode()
		close(p.done)
	}()
	return p, nil
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// signal sends sig unless the process has already exited.
func (p *proc) signal(sig os.Signal) error {
	if p.exited() {
		return nil
	}
	if err := p.cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return err
	}
	return nil
}

// wait waits at most d for the process to exit, then kills it. It returns
// the exit code and whether the process exited by itself in time.
func (p *proc) wait(d time.Duration) (code int, inTime bool) {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-p.done:
		return p.code, true
	case <-timer.C:
		_ = p.cmd.Process.Kill()
		<-p.done // bounded by WaitDelay
		return p.code, false
	}
}

// stop sends SIGTERM and waits at most grace before killing the process.
func (p *proc) stop(grace time.Duration) int {
	_ = p.signal(syscall.SIGTERM)
	code, _ := p.wait(grace)
	return code
}

// minimalEnv returns PATH and the given variables, nothing else of the test
// process's environment.
func minimalEnv(extra map[string]string) []string {
	env := []string{"PATH=" + os.Getenv("PATH")}
	for k, v := range extra {
		env = append(env, k+"="+v)
	}
	return env
}

// readAllLimited reads at most 1 MiB of r.
func readAllLimited(r io.Reader) ([]byte, error) {
	return io.ReadAll(io.LimitReader(r, 1<<20))
}
