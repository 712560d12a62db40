package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/authsidecar/authsidecar/internal/freeport"
	"github.com/authsidecar/authsidecar/internal/idptest"
)

// The test binary doubles as the authsidecar binary, so signal tests run
// the real main in a real process.
func TestMain(m *testing.M) {
	if os.Getenv("TEST_RUN_AUTHSIDECAR_MAIN") == "1" {
		main()
		return
	}
	os.Exit(m.Run())
}

func freeAddr(t *testing.T) string {
	t.Helper()
	addr, err := freeport.Addr()
	if err != nil {
		t.Fatal(err)
	}
	return addr
}

type ports struct{ inbound, admin string }

func baseEnv(t *testing.T, issuer, app string) (map[string]string, ports) {
	p := ports{inbound: freeAddr(t), admin: freeAddr(t)}
	return map[string]string{
		"AUTHSIDECAR_INBOUND_ISSUERS":   issuer,
		"AUTHSIDECAR_INBOUND_AUDIENCES": "payments",
		"AUTHSIDECAR_INBOUND_UPSTREAM":  app,
		"AUTHSIDECAR_INBOUND_LISTEN":    p.inbound,
		"AUTHSIDECAR_ADMIN_LISTEN":      p.admin,
		"AUTHSIDECAR_SHUTDOWN_GRACE":    "5s",
		"AUTHSIDECAR_LOG_LEVEL":         "debug",
	}, p
}

// syncBuffer is a log sink tests can read while the program writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func startRun(t *testing.T, env map[string]string) (cancel func() error, logs *syncBuffer) {
	t.Helper()
	ctx, stop := context.WithCancel(context.Background())
	logs = &syncBuffer{}
	done := make(chan error, 1)
	go func() { done <- run(ctx, nil, env, io.Discard, logs) }()
	var once sync.Once
	var err error
	cancel = func() error {
		once.Do(func() {
			stop()
			select {
			case err = <-done:
			case <-time.After(10 * time.Second):
				err = errors.New("run did not return 10s after cancel")
			}
		})
		return err
	}
	t.Cleanup(func() { _ = cancel() })
	return cancel, logs
}

func get(t *testing.T, url string, header http.Header) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func waitFor(t *testing.T, what string, d time.Duration, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestReadyOnceTheUnreachableIssuerAppears(t *testing.T) {
	issuerAddr := freeAddr(t) // nothing listens here yet
	env, p := baseEnv(t, "http://"+issuerAddr, "http://127.0.0.1:1")
	cancel, logs := startRun(t, env)

	waitFor(t, "the admin port", 5*time.Second, func() bool { c, _ := get(t, "http://"+p.admin+"/healthz", nil); return c == 200 })
	code, body := get(t, "http://"+p.admin+"/readyz", nil)
	if code != 503 || !strings.Contains(body, `"issuer http://`+issuerAddr+`"`) {
		t.Fatalf("/readyz = %d %s, want 503 naming the issuer", code, body)
	}

	key := idptest.NewRSAKey(t, "k1")
	idp := idptest.NewOn(t, issuerAddr, key)
	waitFor(t, "readiness", 15*time.Second, func() bool { c, _ := get(t, "http://"+p.admin+"/readyz", nil); return c == 200 })
	if idp.JWKSHits.Load() == 0 {
		t.Error("ready without fetching the JWKS")
	}
	if err := cancel(); err != nil {
		t.Fatalf("run() = %v, want nil after a clean shutdown\nlogs:\n%s", err, logs)
	}
}

func TestOversizedHeaderGets431(t *testing.T) {
	idp := idptest.New(t, idptest.NewRSAKey(t, "k1"))
	env, p := baseEnv(t, idp.Issuer, "http://127.0.0.1:1")
	env["AUTHSIDECAR_MAX_HEADER_BYTES"] = "4096"
	startRun(t, env)
	waitFor(t, "the inbound port", 5*time.Second, func() bool { c, _ := get(t, "http://"+p.inbound+"/", nil); return c == 401 })
	code, _ := get(t, "http://"+p.inbound+"/", http.Header{"Authorization": {"Bearer " + strings.Repeat("a", 16<<10)}})
	if code != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("16 KiB header over a 4 KiB cap: status %d, want 431", code)
	}
	code, _ = get(t, "http://"+p.inbound+"/", http.Header{"Authorization": {"Bearer " + strings.Repeat("a", 3<<10)}})
	if code != http.StatusUnauthorized {
		t.Errorf("3 KiB header under a 4 KiB cap: status %d, want 401 from the verifier", code)
	}
}

func TestMetricsExposeTheSpecFamilies(t *testing.T) {
	idp := idptest.New(t, idptest.NewRSAKey(t, "k1"))
	env, p := baseEnv(t, idp.Issuer, "http://127.0.0.1:1")
	startRun(t, env)
	waitFor(t, "readiness", 5*time.Second, func() bool { c, _ := get(t, "http://"+p.admin+"/readyz", nil); return c == 200 })
	get(t, "http://"+p.inbound+"/", nil)
	_, body := get(t, "http://"+p.admin+"/metrics", nil)
	for _, want := range []string{
		`authsidecar_inbound_requests_total{result="unauthenticated"} 1`,
		`authsidecar_inbound_token_rejections_total{reason="missing"} 1`,
		`authsidecar_inbound_token_rejections_total{reason="client_not_allowed"} 0`,
		`authsidecar_inbound_request_duration_seconds_bucket{result="unauthenticated",le="+Inf"} 1`,
		`authsidecar_jwks_refreshes_total{issuer="` + idp.Issuer + `",result="success"}`,
		`authsidecar_build_info{goversion="go`,
		"go_goroutines ", "process_resident_memory_bytes ",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

func TestCommands(t *testing.T) {
	cases := []struct {
		name   string
		args   []string
		env    map[string]string
		exit   int
		stdout string
		stderr string
	}{
		{"version prints the version", []string{"version"}, nil, 0, "authsidecar dev", ""},
		{"check prints the redacted configuration", []string{"check"}, map[string]string{
			"AUTHSIDECAR_OUTBOUND_ROUTES": "p", "AUTHSIDECAR_OUTBOUND_TOKEN_URL": "https://idp/token",
			"AUTHSIDECAR_OUTBOUND_CLIENT_ID": "c", "AUTHSIDECAR_OUTBOUND_CLIENT_SECRET": "hunter2",
			"AUTHSIDECAR_ROUTE_P_URL": "https://p"}, 0, "AUTHSIDECAR_OUTBOUND_CLIENT_SECRET=[redacted]", ""},
		{"check refuses a bad configuration with 2", []string{"check"}, map[string]string{"AUTHSIDECAR_LOG_LEVEL": "x"}, 2, "", "AUTHSIDECAR_LOG_LEVEL"},
		{"running with a bad configuration exits 2", nil, map[string]string{"AUTHSIDECAR_INBOUND_ISSUERS": "https://i"}, 2, "", "AUTHSIDECAR_INBOUND_AUDIENCES: is required"},
		{"an unknown command exits 2", []string{"serve"}, nil, 2, "", `unknown command "serve"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			err := run(context.Background(), tc.args, tc.env, &stdout, &stderr)
			code := exitCode(err, &stderr)
			if code != tc.exit || !strings.Contains(stdout.String(), tc.stdout) || !strings.Contains(stderr.String(), tc.stderr) {
				t.Errorf("exit %d, stdout %q, stderr %q; want exit %d, stdout with %q, stderr with %q",
					code, stdout.String(), stderr.String(), tc.exit, tc.stdout, tc.stderr)
			}
			if strings.Contains(stdout.String()+stderr.String(), "hunter2") {
				t.Error("the secret was printed")
			}
		})
	}
}

func TestSIGTERMDrainsInFlightRequestsAndExitsZero(t *testing.T) {
	key := idptest.NewRSAKey(t, "k1")
	idp := idptest.New(t, key)
	started := make(chan struct{}, 1)
	app := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		started <- struct{}{}
		time.Sleep(1500 * time.Millisecond)
		fmt.Fprint(w, "slow answer")
	})}
	appLn, _ := net.Listen("tcp", "127.0.0.1:0")
	go app.Serve(appLn)
	t.Cleanup(func() { app.Close() })

	env, p := baseEnv(t, idp.Issuer, "http://"+appLn.Addr().String())
	cmd := exec.Command(os.Args[0])
	cmd.Env = []string{"TEST_RUN_AUTHSIDECAR_MAIN=1"}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	go io.Copy(&logs, bufio.NewReader(stderr))
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	waitFor(t, "readiness", 10*time.Second, func() bool { c, _ := get(t, "http://"+p.admin+"/readyz", nil); return c == 200 })

	tok := idptest.Sign(t, key, idp.Claims("payments", nil))
	type answer struct {
		code int
		body string
	}
	res := make(chan answer, 1)
	go func() {
		c, b := get(t, "http://"+p.inbound+"/slow", http.Header{"Authorization": {"Bearer " + tok}})
		res <- answer{c, b}
	}()
	<-started
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "readiness to turn 503", 2*time.Second, func() bool {
		c, _ := get(t, "http://"+p.admin+"/readyz", nil)
		return c == 503 || c == 0
	})
	got := <-res
	if got.code != 200 || got.body != "slow answer" {
		t.Errorf("in-flight request got %d %q, want 200 from the app", got.code, got.body)
	}
	waitErr := cmd.Wait()
	if code := cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("exit code %d (%v), want 0\nlogs:\n%s", code, waitErr, logs.String())
	}
	if c, _ := get(t, "http://"+p.inbound+"/", nil); c != 0 {
		t.Errorf("inbound still answers %d after exit", c)
	}
}
