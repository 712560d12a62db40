package loadbench

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/authsidecar/authsidecar/config"
	"github.com/authsidecar/authsidecar/internal/sidecar"
)

// TestMain lets the test binary serve as one of the benchmark's servers,
// or as a stand-in for the sidecar binary, when a test starts it as a
// child.
func TestMain(m *testing.M) {
	if os.Getenv(EnvRole) == roleSidecar {
		os.Exit(serveSidecar())
	}
	ChildMain()
	os.Exit(m.Run())
}

// roleSidecar makes the test binary a stand-in for the sidecar binary:
// the sidecar assembled by internal/sidecar.Run, as cmd/authsidecar
// assembles it, from the process's environment. It saves the tests a
// build of the binary.
const roleSidecar = "test-sidecar"

func serveSidecar() int {
	if len(os.Args) > 1 && os.Args[1] == "version" {
		fmt.Println("authsidecar test-stand-in")
		return 0
	}
	env := map[string]string{}
	for _, kv := range os.Environ() {
		if k, v, ok := strings.Cut(kv, "="); ok {
			env[k] = v
		}
	}
	cfg, err := config.Load(env)
	if err != nil {
		fmt.Fprintln(os.Stderr, "test sidecar:", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	if err := sidecar.Run(ctx, cfg, "test-stand-in", os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "test sidecar:", err)
		return 1
	}
	return 0
}

// TestGRPCAndTracedCases runs the gRPC cases and the traced case, with
// their baselines, for a fraction of a second each, against the test
// binary standing in for the sidecar binary (so no build): every call
// succeeds, each case is measured against its own bare proxy, and the
// traced sidecar exports one span per request.
func TestGRPCAndTracedCases(t *testing.T) {
	if testing.Short() {
		t.Skip("starts six processes")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	self, err := Self()
	if err != nil {
		t.Fatal(err)
	}
	var log bytes.Buffer
	r, err := Run(ctx, Options{
		Sidecar: self[0], SidecarEnv: []string{EnvRole + "=" + roleSidecar}, Self: self,
		Duration: 300 * time.Millisecond, Warmup: 100 * time.Millisecond, Concurrency: 4, GRPCConns: 2, Tokens: 1,
		Cases: []string{CaseBare, CaseInboundRS256Traced, CaseGRPCDirect, CaseGRPCBare, CaseGRPCInbound}, Log: &log,
	})
	if err != nil {
		t.Fatalf("%v\n%s", err, log.String())
	}
	checkCases(t, r, []string{CaseBare, CaseInboundRS256Traced, CaseGRPCDirect, CaseGRPCBare, CaseGRPCInbound})
	if c := r.find(CaseGRPCInbound); c != nil && c.CacheLookups == 0 {
		t.Errorf("grpc-inbound: no verified-token cache lookups in the gRPC sidecar's metrics")
	}
	if r.Settings.GRPCConns != 2 {
		t.Errorf("settings say %d gRPC connections, want 2", r.Settings.GRPCConns)
	}
	if t.Failed() {
		t.Log(log.String())
	}
}

// TestOtherProxies runs the proxies that are not the sidecar binary (the
// fasthttp prototypes, and HAProxy over HTTP/1.1 and h2c when it is installed) for two short
// rounds: each answers every request, the token-checking ones were made
// to refuse a missing and an altered token first (or Run fails), and each
// round's ratio to the bare proxy is reported with its median and spread.
func TestOtherProxies(t *testing.T) {
	if testing.Short() {
		t.Skip("starts five processes")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	self, err := Self()
	if err != nil {
		t.Fatal(err)
	}
	cases := []string{CaseBare, CaseFastBare, CaseFastInbound}
	haproxy, _ := exec.LookPath("haproxy")
	if haproxy != "" {
		cases = []string{CaseBare, CaseHAProxy, CaseFastBare, CaseFastInbound, CaseGRPCBare, CaseGRPCHAProxy}
	} else {
		t.Log("no haproxy installed: the HAProxy cases are not tried")
	}
	var log bytes.Buffer
	r, err := Run(ctx, Options{
		Sidecar: self[0], SidecarEnv: []string{EnvRole + "=" + roleSidecar}, HAProxy: haproxy, Self: self,
		Duration: 200 * time.Millisecond, Warmup: 50 * time.Millisecond, Concurrency: 4, Tokens: 1, Rounds: 2,
		Cases: cases, Log: &log,
	})
	if err != nil {
		t.Fatalf("%v\n%s", err, log.String())
	}
	checkCases(t, r, cases)
	for _, c := range r.Cases {
		if len(c.RoundsRatio) != 2 || c.RatioMin > c.RatioMedian || c.RatioMedian > c.RatioMax || len(c.RoundsProxyMicros) != 2 || len(c.RoundsP99Micros) != 2 {
			t.Errorf("case %s: ratios per round %v (median %v, %v–%v), proxy CPU per round %v",
				c.Name, c.RoundsRatio, c.RatioMedian, c.RatioMin, c.RatioMax, c.RoundsProxyMicros)
		}
	}
	if t.Failed() {
		t.Log(log.String())
	}
}

func TestAProxyThatLetsEverythingThroughIsNotMeasured(t *testing.T) {
	open := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {}))
	defer open.Close()
	err := checkGate(context.Background(), "open proxy", open.URL, "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl")
	if err == nil || !strings.Contains(err.Error(), "answers 200 to no token") {
		t.Fatalf("checkGate on a proxy that checks nothing: %v", err)
	}
}

// checkCases checks that r has exactly the cases names, in that order,
// each with answers and no failure, its ratio to its own protocol's bare
// proxy, and, for the traced case, one span exported per request.
func checkCases(t *testing.T, r *Report, names []string) {
	t.Helper()
	var got []string
	for _, c := range r.Cases {
		got = append(got, c.Name)
	}
	if strings.Join(got, ",") != strings.Join(names, ",") {
		t.Fatalf("cases %q, want %q", got, names)
	}
	for _, c := range r.Cases {
		if c.OK == 0 || c.Failed > 0 || c.P99Micros <= 0 || c.RatioToBare <= 0 {
			t.Errorf("case %s: ok %d failed %d (%s) p99 %vµs ratio %v", c.Name, c.OK, c.Failed, c.FirstFailure, c.P99Micros, c.RatioToBare)
		}
		if want := baseline(c.Name); c.Baseline != want || (c.Name == want && c.RatioToBare != 1) {
			t.Errorf("case %s: baseline %q, ratio %v; want %q", c.Name, c.Baseline, c.RatioToBare, want)
		}
		if c.Name == CaseInboundRS256Traced && (math.Abs(c.SpansPerRequest-1) > 0.01 || c.SpansExported == 0) {
			t.Errorf("traced: %d spans exported, %.4f per request, want 1", c.SpansExported, c.SpansPerRequest)
		}
	}
}

// TestSmoke runs every case for a second against a freshly built sidecar
// binary. It costs about half a minute of both CPUs, so it runs only when
// asked:
//
//	AUTHSIDECAR_LOADBENCH=1 go test -run TestSmoke -v ./bench/loadbench/
func TestSmoke(t *testing.T) {
	if os.Getenv("AUTHSIDECAR_LOADBENCH") != "1" {
		t.Skip("set AUTHSIDECAR_LOADBENCH=1 to run the load benchmark smoke test")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	bin, err := BuildSidecar(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	self, err := Self()
	if err != nil {
		t.Fatal(err)
	}
	haproxy, _ := exec.LookPath("haproxy")
	var log bytes.Buffer
	r, err := Run(ctx, Options{
		Sidecar: bin, HAProxy: haproxy, Self: self, Duration: time.Second, Warmup: 200 * time.Millisecond,
		Concurrency: 8, Tokens: 200, HalfRate: true, OpenWorkers: 16, IdleConns: 16, Log: &log,
	})
	if err != nil {
		t.Fatalf("%v\n%s", err, log.String())
	}
	want := AllCases
	if haproxy == "" {
		want = slices.DeleteFunc(slices.Clone(AllCases), isHAProxy)
	}
	checkCases(t, r, want)
	if r.OpenLoop == nil || len(r.OpenLoop.Cases) != 2 || r.OpenLoop.Cases[1].OK == 0 {
		t.Errorf("no half-rate comparison: %+v", r.OpenLoop)
	}
	if r.OutboundTokenFetches != 1 {
		t.Errorf("the sidecar fetched %d outbound tokens, want 1 (cached)", r.OutboundTokenFetches)
	}
	if m := r.Memory; m == nil || m.Idle == nil || m.WithIdleConns == nil || m.AfterLoad == nil || m.IdleConns != 16 {
		t.Errorf("memory figures missing: %+v", m)
	}
	var table strings.Builder
	if err := r.WriteTable(&table); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"bare-proxy", "inbound-rs256-mix", "grpc-inbound", "spans exported per request", "rps vs bare", "sidecar memory"} {
		if !strings.Contains(table.String(), want) {
			t.Errorf("the table lacks %q:\n%s", want, table.String())
		}
	}
	t.Log("\n" + table.String())
}
