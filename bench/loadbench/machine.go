package loadbench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// checkIdle measures how busy the machine is before the benchmark starts
// (on a shared machine other work skews every figure) and, when asked,
// waits up to WaitIdle for it to calm down.
func (b *bench) checkIdle(ctx context.Context) {
	busy := b.waitIdle(ctx)
	b.report.Settings.MachineBusyBefore = busy
	if busy > idleThreshold {
		b.logf("warning: the machine was already %.2f cores busy before the run: other work competes with the benchmark", busy)
	}
}

// waitIdle waits up to WaitIdle for the machine to be idle and returns the
// cores it kept busy over the last second.
func (b *bench) waitIdle(ctx context.Context) float64 {
	deadline := time.Now().Add(b.opts.WaitIdle)
	for {
		busy, err := busyOver(time.Second)
		if err != nil || busy <= idleThreshold || !time.Now().Before(deadline) || ctx.Err() != nil {
			return busy
		}
		b.logf("the machine is %.2f cores busy; waiting for it to calm down (-wait-idle)", busy)
	}
}

// idleThreshold is the busy cores under which the machine counts as idle.
const idleThreshold = 0.2

// busyOver returns the cores the whole machine kept busy over window.
func busyOver(window time.Duration) (float64, error) {
	before, err := MachineBusy()
	if err != nil {
		return 0, err
	}
	time.Sleep(window)
	after, err := MachineBusy()
	if err != nil {
		return 0, err
	}
	return (after - before).Seconds() / window.Seconds(), nil
}

func sidecarVersion(binary string, env []string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, "version")
	cmd.Env = env
	out, err := cmd.Output()
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(string(out)), "authsidecar"))
}

// measureIdleMemory reads the sidecar's memory idle, then with IdleConns
// idle keep-alive connections open to the inbound port (each has carried
// one authorized request), then closes them.
func (b *bench) measureIdleMemory() error {
	pid := b.sidecar.PID()
	time.Sleep(500 * time.Millisecond)
	idle, err := ProcessMemory(pid)
	if err != nil {
		b.logf("no memory figures: %v", err)
		return nil
	}
	b.report.Memory = &MemoryReport{Idle: &idle}
	if b.opts.IdleConns <= 0 {
		return nil
	}
	conns, err := openIdleConns(b.sidecar.in, b.opts.IdleConns, b.tokRS[0])
	defer func() {
		for _, c := range conns {
			_ = c.Close()
		}
	}()
	if err != nil {
		return fmt.Errorf("idle connections: %w", err)
	}
	time.Sleep(time.Second)
	with, err := ProcessMemory(pid)
	if err != nil {
		return err
	}
	b.report.Memory.WithIdleConns = &with
	b.report.Memory.IdleConns = len(conns)
	return nil
}

// openIdleConns opens n connections to addr, sends one authorized GET on
// each and reads the answer, leaving each connection idle and kept alive.
func openIdleConns(addr string, n int, token string) ([]net.Conn, error) {
	req := "GET /idle HTTP/1.1\r\nHost: " + addr + "\r\nAuthorization: Bearer " + token + "\r\n\r\n"
	var conns []net.Conn
	for range n {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			return conns, err
		}
		conns = append(conns, c)
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.WriteString(c, req); err != nil {
			return conns, err
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			return conns, err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || resp.Close {
			return conns, fmt.Errorf("idle connection set-up: status %d, close %v", resp.StatusCode, resp.Close)
		}
		_ = c.SetDeadline(time.Time{})
	}
	return conns, nil
}

// BuildSidecar builds ./cmd/authsidecar of the module that holds the
// working directory into dir and returns the binary's path.
func BuildSidecar(ctx context.Context, dir string) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("not inside the authsidecar module: run from the repository or pass -sidecar")
	}
	bin := filepath.Join(dir, "authsidecar")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/authsidecar")
	cmd.Dir = filepath.Dir(gomod)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("go build ./cmd/authsidecar: %w", err)
	}
	return bin, nil
}

// cacheMetric is the sidecar's verified-token cache counter (absent from
// builds without the cache).
const cacheMetric = "authsidecar_inbound_token_cache_requests_total"

// cacheLookups reads sc's verified-token cache hits and misses from its
// /metrics.
func (b *bench) cacheLookups(sidecar *sidecarProc) (hits, misses float64, err error) {
	if sidecar == nil {
		return 0, 0, errors.New("no sidecar")
	}
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{Proxy: nil}}
	defer client.CloseIdleConnections()
	resp, err := client.Get("http://" + sidecar.admin + "/metrics")
	if err != nil {
		return 0, 0, err
	}
	defer resp.Body.Close()
	found := false
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		rest, ok := strings.CutPrefix(line, cacheMetric+"{")
		if !ok {
			continue
		}
		labels, value, ok := strings.Cut(rest, "} ")
		if !ok {
			continue
		}
		var v float64
		if _, err := fmt.Sscan(value, &v); err != nil {
			continue
		}
		switch {
		case strings.Contains(labels, `result="hit"`):
			hits, found = v, true
		case strings.Contains(labels, `result="miss"`):
			misses, found = v, true
		}
	}
	if !found {
		return 0, 0, errors.New("no verified-token cache metric")
	}
	return hits, misses, sc.Err()
}
