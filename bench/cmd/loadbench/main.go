// Command loadbench measures authsidecar against the app alone and a bare
// httputil.ReverseProxy, on 127.0.0.1, in one run. See bench/README.md.
//
//	go run ./bench/cmd/loadbench -duration 10s
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/authsidecar/authsidecar/bench/loadbench"
)

func main() {
	loadbench.ChildMain() // one of the benchmark's servers, when run as one
	os.Exit(run())
}

func run() int {
	var (
		sidecar     = flag.String("sidecar", "", "authsidecar binary to measure (default: go build ./cmd/authsidecar into a temporary directory)")
		sidecarEnv  = flag.String("sidecar-env", "", "comma-separated KEY=VALUE pairs added to every sidecar's environment (GOGC=100, ...)")
		haproxy     = flag.String("haproxy", "haproxy", "HAProxy binary of the haproxy-jwt case, looked up in PATH; the case is left out when there is none")
		duration    = flag.Duration("duration", 10*time.Second, "timed run per case")
		warmup      = flag.Duration("warmup", time.Second, "warm-up before each timed run, not measured")
		concurrency = flag.Int("concurrency", 32, "closed-loop workers (connections)")
		grpcConns   = flag.Int("grpc-conns", 4, "gRPC client connections (one HTTP/2 connection each) the workers of a gRPC case share")
		tokens      = flag.Int("tokens", 10_000, "distinct RS256 tokens of the mixed case, signed before the timed part")
		rate        = flag.Float64("rate", 0, "if > 0, run every case open loop at this many requests per second instead of closed loop")
		rounds      = flag.Int("rounds", 1, "run the closed-loop sequence this many times and fold each case's rounds together")
		halfRate    = flag.Bool("half-rate", true, "after the closed-loop cases, compare bare proxy and inbound RS256 p99 open loop at half the bare proxy's max rate")
		openWorkers = flag.Int("open-workers", 64, "open-loop worker pool")
		cases       = flag.String("cases", strings.Join(loadbench.AllCases, ","), "comma-separated cases to run")
		appProcs    = flag.Int("app-procs", 0, "GOMAXPROCS of the app process (0: unset)")
		proxyProcs  = flag.Int("proxy-procs", 0, "GOMAXPROCS of the bare proxy and the sidecar (0: unset)")
		genProcs    = flag.Int("gen-procs", 0, "GOMAXPROCS of the load generator (0: unset)")
		idleConns   = flag.Int("idle-conns", 256, "idle keep-alive connections held to the inbound port for the memory figure (0: skip)")
		barePool    = flag.Bool("bare-buffer-pool", false, "give the bare proxy a pool of copy buffers, as the sidecar has (a stricter baseline)")
		bareFlush   = flag.Duration("bare-flush-interval", 0, "the bare proxy's httputil FlushInterval (the sidecar uses -1ns: flush at once)")
		maxRequests = flag.Int64("max-requests", 10_000_000, "cap on the requests of one timed run")
		waitIdle    = flag.Duration("wait-idle", 0, "wait up to this long, before starting, for the machine to be idle (under 0.2 cores busy)")
		retries     = flag.Int("retry-contended", 0, "run a case again, up to this many times, when other work on the machine competed with it")
		timeout     = flag.Duration("timeout", 15*time.Minute, "bound on the whole run")
		asJSON      = flag.Bool("json", false, "print the report as JSON instead of a table")
		jsonFile    = flag.String("json-file", "", "also write the report as JSON to this file")
		serveApp    = flag.Bool("serve-app", false, "only serve the app (on -listen) until stdin closes")
		serveBare   = flag.Bool("serve-bare-proxy", false, "only serve the bare proxy to -upstream (on -listen) until stdin closes")
		serveGRPC   = flag.Bool("serve-grpc-app", false, "only serve the gRPC app (on -listen) until stdin closes")
		serveGBare  = flag.Bool("serve-grpc-bare-proxy", false, "only serve the bare h2c proxy to -upstream (on -listen) until stdin closes")
		listen      = flag.String("listen", "127.0.0.1:0", "with -serve-*: the address")
		upstream    = flag.String("upstream", "", "with -serve-bare-proxy or -serve-grpc-bare-proxy: the app's URL")
	)
	flag.Parse()
	if role := serveRole(*serveApp, *serveBare, *serveGRPC, *serveGBare); role != "" {
		if err := loadbench.Serve(role, *listen, *upstream, loadbench.BareOptions{BufferPool: *barePool, FlushInterval: *bareFlush}, os.Stdin, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, "loadbench:", err)
			return 1
		}
		return 0
	}
	if *genProcs > 0 {
		runtime.GOMAXPROCS(*genProcs)
	}
	names := strings.Split(*cases, ",")
	if err := loadbench.ValidateCases(names); err != nil {
		fmt.Fprintln(os.Stderr, "loadbench:", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()

	bin := *sidecar
	if bin == "" {
		dir, err := os.MkdirTemp("", "loadbench-")
		if err != nil {
			fmt.Fprintln(os.Stderr, "loadbench:", err)
			return 1
		}
		defer os.RemoveAll(dir)
		fmt.Fprintln(os.Stderr, "loadbench: building ./cmd/authsidecar")
		if bin, err = loadbench.BuildSidecar(ctx, dir); err != nil {
			fmt.Fprintln(os.Stderr, "loadbench:", err)
			return 1
		}
	}
	self, err := loadbench.Self()
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadbench:", err)
		return 1
	}
	haproxyBin, _ := exec.LookPath(*haproxy)
	report, err := loadbench.Run(ctx, loadbench.Options{
		Sidecar: bin, SidecarEnv: splitEnv(*sidecarEnv), HAProxy: haproxyBin, Self: self,
		Duration: *duration, Warmup: *warmup, Concurrency: *concurrency, GRPCConns: *grpcConns, Tokens: *tokens,
		Rate: *rate, HalfRate: *halfRate, OpenWorkers: *openWorkers, Cases: names,
		AppProcs: *appProcs, ProxyProcs: *proxyProcs, IdleConns: *idleConns,
		Bare:   loadbench.BareOptions{BufferPool: *barePool, FlushInterval: *bareFlush},
		Rounds: *rounds, WaitIdle: *waitIdle, RetryContended: *retries, MaxRequests: *maxRequests, Log: os.Stderr,
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadbench:", err)
		return 1
	}
	if *jsonFile != "" {
		if err := writeJSONFile(*jsonFile, report); err != nil {
			fmt.Fprintln(os.Stderr, "loadbench:", err)
			return 1
		}
	}
	if *asJSON {
		err = report.WriteJSON(os.Stdout)
	} else {
		err = report.WriteTable(os.Stdout)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadbench:", err)
		return 1
	}
	return 0
}

// serveRole is the role the -serve-* flags ask for, or "".
func serveRole(app, bare, grpcApp, grpcBare bool) string {
	switch {
	case app:
		return loadbench.RoleApp
	case bare:
		return loadbench.RoleBareProxy
	case grpcApp:
		return loadbench.RoleGRPCApp
	case grpcBare:
		return loadbench.RoleGRPCBareProxy
	}
	return ""
}

func writeJSONFile(name string, r *loadbench.Report) error {
	f, err := os.Create(name)
	if err != nil {
		return err
	}
	if err := r.WriteJSON(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// splitEnv splits the -sidecar-env list.
func splitEnv(list string) []string {
	if list == "" {
		return nil
	}
	return strings.Split(list, ",")
}
