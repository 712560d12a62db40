package loadbench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"

	"github.com/authsidecar/authsidecar/internal/freeport"
	"github.com/valyala/fasthttp"
)

// Environment variables that turn the loadbench executable (or a test
// binary that calls ChildMain) into one of the benchmark's servers.
const (
	EnvRole     = "LOADBENCH_ROLE" // one of the Role* constants
	EnvListen   = "LOADBENCH_LISTEN"
	EnvUpstream = "LOADBENCH_UPSTREAM"
	// EnvBufferPool set to 1 gives the bare proxy a pool of copy buffers.
	EnvBufferPool = "LOADBENCH_BUFFER_POOL"
	// EnvFlushInterval sets the bare proxy's FlushInterval (a duration).
	EnvFlushInterval = "LOADBENCH_FLUSH_INTERVAL"
)

// Roles a child process can play.
const (
	RoleApp       = "app"
	RoleBareProxy = "bare-proxy"
	// RoleGRPCApp is grpc-go's server with internal/grpctest's echo.
	RoleGRPCApp = "grpc-app"
	// RoleGRPCBareProxy is an h2c httputil.ReverseProxy to the gRPC app.
	RoleGRPCBareProxy = "grpc-bare-proxy"
	// RoleFastBare and RoleFastInbound are the fasthttp prototypes: see
	// fast.go.
	RoleFastBare    = "fasthttp-bare"
	RoleFastInbound = "fasthttp-inbound"
)

// AppBody is what the app answers, with status 200.
const AppBody = "hello from the app\n"

// ChildMain serves as one of the benchmark's servers and exits when EnvRole is
// set; otherwise it returns at once. Call it first thing in main (and in
// TestMain), so that the benchmark can start its servers by running its
// own executable again.
func ChildMain() {
	role := os.Getenv(EnvRole)
	if role == "" {
		return
	}
	var flush time.Duration
	if v := os.Getenv(EnvFlushInterval); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			fmt.Fprintln(os.Stderr, "loadbench", role+":", err)
			os.Exit(2)
		}
		flush = d
	}
	bare := BareOptions{BufferPool: os.Getenv(EnvBufferPool) == "1", FlushInterval: flush}
	err := Serve(role, os.Getenv(EnvListen), os.Getenv(EnvUpstream), bare, os.Stdin, os.Stdout)
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadbench", role+":", err)
		os.Exit(1)
	}
	os.Exit(0)
}

// AppHandler is the app: 200 with a short body, nothing else.
func AppHandler() http.Handler {
	body := []byte(AppBody)
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		h := w.Header()
		h["Content-Type"] = []string{"text/plain; charset=utf-8"}
		_, _ = w.Write(body)
	})
}

// BareProxy is the baseline: an httputil.ReverseProxy to upstream that
// sets X-Forwarded-* as any proxy would, over an http.Transport with the
// sidecar's pool sizes (256 idle connections per host, where net/http
// keeps 2), so that the comparison is about what the sidecar does and not
// about pool sizes. It is net/http's Transport and not the sidecar's own
// (proxy.NewTransport, which has its own HTTP/1.1 client): the baseline
// is what any Go reverse proxy is. Everything else is httputil's default
// unless opts say otherwise.
func BareProxy(upstream *url.URL, opts BareOptions) http.Handler {
	return bareProxy(upstream, opts, nil)
}

// bareProxy is BareProxy with the transport speaking protocols (nil:
// net/http's default, HTTP/1.1 here).
func bareProxy(upstream *url.URL, opts BareOptions, protocols *http.Protocols) http.Handler {
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(upstream)
			pr.SetXForwarded()
		},
		Transport: &http.Transport{
			Proxy:       nil,
			DialContext: (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			Protocols:   protocols,
			// HTTP/2 multiplexes every call on one connection, but the
			// pool sizes are the same for both.
			MaxIdleConns:        1024,
			MaxIdleConnsPerHost: 256,
			IdleConnTimeout:     90 * time.Second,
		},
		FlushInterval: opts.FlushInterval,
	}
	if opts.BufferPool {
		rp.BufferPool = &copyBuffers{pool: sync.Pool{New: func() any { return new([32 << 10]byte) }}}
	}
	return rp
}

// BareOptions change the bare proxy, for experiments.
type BareOptions struct {
	// BufferPool recycles the 32 KiB copy buffers, as the sidecar does;
	// without, httputil allocates one per request.
	BufferPool bool
	// FlushInterval is httputil.ReverseProxy.FlushInterval (the sidecar
	// uses -1).
	FlushInterval time.Duration
}

// copyBuffers is an httputil.BufferPool over a sync.Pool of arrays (an
// array pointer, unlike a slice, goes into the pool without allocating).
type copyBuffers struct{ pool sync.Pool }

func (p *copyBuffers) Get() []byte { return p.pool.Get().(*[32 << 10]byte)[:] }

func (p *copyBuffers) Put(b []byte) {
	if cap(b) == 32<<10 {
		p.pool.Put((*[32 << 10]byte)(b[:32<<10]))
	}
}

// Serve runs the server for role on listen (default 127.0.0.1:0), prints
// "listening ADDR" on ready, and serves until stop reaches EOF (the parent
// closed the pipe or died).
func Serve(role, listen, upstream string, bare BareOptions, stop io.Reader, ready io.Writer) error {
	var fast fasthttp.RequestHandler
	if role == RoleFastBare || role == RoleFastInbound {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		var err error
		if fast, err = fastHandler(ctx, role, upstream); err != nil {
			return err
		}
	}
	srv, err := server(role, upstream, bare)
	if err != nil {
		return err
	}
	if listen == "" {
		listen = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}
	if _, err := fmt.Fprintf(ready, "listening %s\n", ln.Addr()); err != nil {
		_ = ln.Close()
		return err
	}
	switch {
	case fast != nil:
		return serveFast(fast, ln, stop)
	case srv == nil:
		return serveGRPCApp(ln, stop)
	}
	err = serveUntilEOF(func() error { return srv.Serve(ln) }, stop, func() { _ = srv.Close() })
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// serveUntilEOF runs serve until it returns or stop reaches EOF (the
// parent closed the pipe or died), then halts the server.
func serveUntilEOF(serve func() error, stop io.Reader, halt func()) error {
	errc := make(chan error, 2)
	go func() { errc <- serve() }()
	go func() {
		_, _ = io.Copy(io.Discard, stop)
		errc <- nil
	}()
	err := <-errc
	halt()
	return err
}

// server returns the http.Server of role; nil for the gRPC app, which is
// grpc-go's own server.
func server(role, upstream string, bare BareOptions) (*http.Server, error) {
	srv := &http.Server{ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 120 * time.Second}
	switch role {
	case RoleApp:
		srv.Handler = AppHandler()
	case RoleBareProxy, RoleGRPCBareProxy:
		u, err := url.Parse(upstream)
		if err != nil || u.Host == "" {
			return nil, fmt.Errorf("bad upstream %q", upstream)
		}
		srv.Handler = BareProxy(u, bare)
		if role == RoleGRPCBareProxy {
			srv.Handler, srv.Protocols = GRPCBareProxy(u, bare), h2cServerProtocols()
		}
	case RoleGRPCApp, RoleFastBare, RoleFastInbound:
		return nil, nil
	default:
		return nil, fmt.Errorf("unknown role %q", role)
	}
	return srv, nil
}

// Process is a child process of the benchmark.
type Process struct {
	Name string
	Cmd  *exec.Cmd
	// Addr is where it listens, for the apps and the bare proxies.
	Addr  string
	stdin io.WriteCloser
	done  chan struct{}
	err   error
}

// PID returns the process id.
func (p *Process) PID() int { return p.Cmd.Process.Pid }

// Exited is closed when the process has exited.
func (p *Process) Exited() <-chan struct{} { return p.done }

// Stop ends the process: SIGTERM (and closed stdin), then SIGKILL after
// grace. It returns once the process is gone.
func (p *Process) Stop(grace time.Duration) {
	if p.stdin != nil {
		_ = p.stdin.Close()
	}
	_ = p.Cmd.Process.Signal(terminate)
	select {
	case <-p.done:
	case <-time.After(grace):
		_ = p.Cmd.Process.Kill()
		<-p.done
	}
}

func start(name string, cmd *exec.Cmd) (*Process, error) {
	p := &Process{Name: name, Cmd: cmd, done: make(chan struct{})}
	setParentDeathSignal(cmd)
	if cmd.Stderr == nil {
		cmd.Stderr = os.Stderr
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// StartChild runs self (the loadbench executable, or a test binary that
// calls ChildMain) as role and waits for it to listen.
func StartChild(ctx context.Context, self []string, role, upstream string, env []string) (*Process, error) {
	cmd := exec.Command(self[0], self[1:]...)
	cmd.Env = append(env, EnvRole+"="+role, EnvListen+"=127.0.0.1:0", EnvUpstream+"="+upstream)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	p, err := start(role, cmd)
	if err != nil {
		return nil, err
	}
	p.stdin = stdin
	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		if sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
		_, _ = io.Copy(io.Discard, stdout)
	}()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	select {
	case line, ok := <-lines:
		addr, found := strings.CutPrefix(line, "listening ")
		if !ok || !found {
			p.Stop(time.Second)
			return nil, fmt.Errorf("%s did not start: %q (%v)", role, line, p.err)
		}
		p.Addr = addr
		return p, nil
	case <-ctx.Done():
		p.Stop(time.Second)
		return nil, fmt.Errorf("%s did not start: %w", role, ctx.Err())
	}
}

// StartSidecar runs the authsidecar binary with env and waits until its
// admin endpoint says it is ready.
func StartSidecar(ctx context.Context, binary string, env []string, adminAddr string) (*Process, error) {
	cmd := exec.Command(binary)
	cmd.Env = env
	cmd.Stdout = os.Stderr
	p, err := start("authsidecar", cmd)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	client := &http.Client{Timeout: time.Second, Transport: &http.Transport{Proxy: nil}}
	defer client.CloseIdleConnections()
	for {
		resp, err := client.Get("http://" + adminAddr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p, nil
			}
		}
		select {
		case <-p.done:
			return nil, fmt.Errorf("authsidecar exited before it was ready: %v", p.err)
		case <-ctx.Done():
			p.Stop(2 * time.Second)
			return nil, fmt.Errorf("authsidecar not ready: %w", ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// FreePort returns a loopback address with a port free a moment ago (see
// freeport.Addr).
func FreePort() (string, error) { return freeport.Addr() }

// ChildEnv is the environment for a child: ours without AUTHSIDECAR_*,
// OTEL_* (tracing is on only where a case asks for it), LOADBENCH_* or
// GOMAXPROCS (set explicitly when asked), plus extra.
func ChildEnv(gomaxprocs int, extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "AUTHSIDECAR_") || strings.HasPrefix(kv, "OTEL_") || strings.HasPrefix(kv, "LOADBENCH_") || strings.HasPrefix(kv, "GOMAXPROCS=") {
			continue
		}
		env = append(env, kv)
	}
	if gomaxprocs > 0 {
		env = append(env, fmt.Sprintf("GOMAXPROCS=%d", gomaxprocs))
	}
	return append(env, extra...)
}
