package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// sidecarBin is the authsidecar binary, built once on first use.
var sidecarBin struct {
	once sync.Once
	dir  string
	path string
	skip string // set when there is nothing to build yet
	err  error
}

// sidecarBinary returns the path of the built authsidecar binary, building
// it on first use (with -race when the tests run with -race). It skips the
// test while ../cmd/authsidecar does not exist.
func sidecarBinary(t testing.TB) string {
	t.Helper()
	sidecarBin.once.Do(buildSidecar)
	if sidecarBin.skip != "" {
		t.Skip(sidecarBin.skip)
	}
	if sidecarBin.err != nil {
		t.Fatalf("building authsidecar: %v", sidecarBin.err)
	}
	return sidecarBin.path
}

func buildSidecar() {
	// E2E_SIDECAR_BINARY runs the suite against a binary built elsewhere,
	// an older release say, to see what it let through.
	if bin := os.Getenv("E2E_SIDECAR_BINARY"); bin != "" {
		sidecarBin.path = bin
		return
	}
	if _, err := os.Stat(filepath.Join("..", "cmd", "authsidecar")); err != nil {
		sidecarBin.skip = "binary not built yet: ../cmd/authsidecar does not exist"
		return
	}
	dir, err := os.MkdirTemp("", "authsidecar-e2e-")
	if err != nil {
		sidecarBin.err = err
		return
	}
	sidecarBin.dir = dir
	sidecarBin.path = filepath.Join(dir, "authsidecar")
	args := []string{"build", "-o", sidecarBin.path}
	if raceEnabled {
		args = append(args, "-race")
	}
	args = append(args, "../cmd/authsidecar")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, goTool(), args...).CombinedOutput()
	if err != nil {
		sidecarBin.err = fmt.Errorf("go %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return "go"
}

func removeSidecarBinary() {
	if sidecarBin.dir != "" {
		_ = os.RemoveAll(sidecarBin.dir)
	}
}

// Sidecar is a running authsidecar process.
type Sidecar struct {
	proc   *proc
	stdout *logBuffer
	stderr *logBuffer
	all    *logBuffer // both, interleaved
}

// startSidecar runs the built binary with only env (plus PATH) as its
// environment and args as its arguments. It is stopped (SIGTERM, then kill)
// when the test ends; its output is logged if the test failed, and a data
// race it reports fails the test.
func startSidecar(t testing.TB, env map[string]string, args ...string) *Sidecar {
	t.Helper()
	return startSidecarBinary(t, sidecarBinary(t), env, args...)
}

func startSidecarBinary(t testing.TB, bin string, env map[string]string, args ...string) *Sidecar {
	t.Helper()
	s := &Sidecar{stdout: &logBuffer{}, stderr: &logBuffer{}, all: &logBuffer{}}
	cmd := exec.Command(bin, args...)
	cmd.Env = minimalEnv(env)
	cmd.Stdout = teeWriter{s.stdout, s.all}
	cmd.Stderr = teeWriter{s.stderr, s.all}
	p, err := startProc(cmd)
	if err != nil {
		t.Fatalf("starting %s: %v", bin, err)
	}
	s.proc = p
	t.Cleanup(func() {
		p.stop(10 * time.Second)
		out := s.all.String()
		if strings.Contains(out, "WARNING: DATA RACE") {
			t.Errorf("authsidecar reported a data race")
		}
		if t.Failed() {
			t.Logf("authsidecar output:\n%s", out)
		}
	})
	return s
}

type teeWriter struct{ a, b *logBuffer }

func (w teeWriter) Write(p []byte) (int, error) {
	_, _ = w.b.Write(p)
	return w.a.Write(p)
}

// Signal sends sig to the process.
func (s *Sidecar) Signal(sig os.Signal) error { return s.proc.signal(sig) }

// Wait waits for the process to exit and returns its exit code (-1 when it
// was killed by a signal). A process still running after 30 s is killed.
func (s *Sidecar) Wait() int {
	code, _ := s.proc.wait(30 * time.Second)
	return code
}

// WaitTimeout waits at most d for the process to exit; ok is false if it
// had to be killed.
func (s *Sidecar) WaitTimeout(d time.Duration) (code int, ok bool) {
	return s.proc.wait(d)
}

// Exited reports whether the process has exited.
func (s *Sidecar) Exited() bool { return s.proc.exited() }

// Stdout, Stderr and Output return what the process printed so far.
func (s *Sidecar) Stdout() string { return s.stdout.String() }
func (s *Sidecar) Stderr() string { return s.stderr.String() }
func (s *Sidecar) Output() string { return s.all.String() }

// LogLines returns the JSON log records printed so far, on either stream;
// lines that are not JSON objects are left out.
func (s *Sidecar) LogLines() []map[string]any {
	var out []map[string]any
	sc := bufio.NewScanner(strings.NewReader(s.all.String()))
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	for sc.Scan() {
		var rec map[string]any
		if json.Unmarshal(sc.Bytes(), &rec) == nil {
			out = append(out, rec)
		}
	}
	return out
}

// WaitReady polls adminURL's /readyz until it answers 200, failing the test
// if the process exits first or 20 s pass.
func (s *Sidecar) WaitReady(t testing.TB, adminURL string) {
	t.Helper()
	waitReadyOrExit(t, adminURL, s.proc.done)
}

func waitReadyOrExit(t testing.TB, adminURL string, exited <-chan struct{}) {
	t.Helper()
	client := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(20 * time.Second)
	last := "no answer"
	for {
		resp, err := client.Get(strings.TrimSuffix(adminURL, "/") + "/readyz")
		if err == nil {
			body, _ := readAllLimited(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
			last = fmt.Sprintf("status %d, body %s", resp.StatusCode, body)
		} else {
			last = err.Error()
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s/readyz not ready within 20s: last %s", adminURL, last)
		}
		select {
		case <-exited:
			t.Fatalf("authsidecar exited before %s/readyz answered 200 (last %s)", adminURL, last)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// SidecarAddrs are free loopback addresses for the sidecar's three ports.
type SidecarAddrs struct {
	Inbound, Outbound, Admin string // host:port
}

func freeSidecarAddrs(t testing.TB) SidecarAddrs {
	t.Helper()
	return SidecarAddrs{Inbound: freeAddr(t), Outbound: freeAddr(t), Admin: freeAddr(t)}
}

// Env returns the listen variables for a; merge it into the test's env.
func (a SidecarAddrs) Env() map[string]string {
	return map[string]string{
		"AUTHSIDECAR_INBOUND_LISTEN":  a.Inbound,
		"AUTHSIDECAR_OUTBOUND_LISTEN": a.Outbound,
		"AUTHSIDECAR_ADMIN_LISTEN":    a.Admin,
	}
}

// AdminURL, InboundURL and OutboundURL are the http:// base URLs.
func (a SidecarAddrs) AdminURL() string    { return "http://" + a.Admin }
func (a SidecarAddrs) InboundURL() string  { return "http://" + a.Inbound }
func (a SidecarAddrs) OutboundURL() string { return "http://" + a.Outbound }

// mergeEnv returns one map holding every entry of ms, later ones winning.
func mergeEnv(ms ...map[string]string) map[string]string {
	out := map[string]string{}
	for _, m := range ms {
		for k, v := range m {
			out[k] = v
		}
	}
	return out
}
