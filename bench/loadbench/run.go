package loadbench

import (
	"context"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"sync"
	"time"
)

// Case names, in the order they run.
const (
	CaseDirect             = "direct"
	CaseBare               = "bare-proxy"
	CaseInboundRS256       = "inbound-rs256"
	CaseInboundRS256Traced = "inbound-rs256-traced"
	CaseInboundES256       = "inbound-es256"
	CaseInboundRS256Mix    = "inbound-rs256-mix"
	CaseOutbound           = "outbound"
	CaseHAProxy            = "haproxy-jwt"
	CaseFastBare           = "fasthttp-bare"
	CaseFastInbound        = "fasthttp-inbound"
	CaseGRPCDirect         = "grpc-direct"
	CaseGRPCBare           = "grpc-bare"
	CaseGRPCInbound        = "grpc-inbound"
	CaseGRPCHAProxy        = "grpc-haproxy-jwt"
)

// AllCases lists every case in run order: the HTTP/1.1 cases, the traced
// one next to its untraced twin, the other proxies, then the gRPC cases.
var AllCases = []string{CaseDirect, CaseBare, CaseInboundRS256, CaseInboundRS256Traced, CaseInboundES256,
	CaseInboundRS256Mix, CaseOutbound, CaseHAProxy, CaseFastBare, CaseFastInbound,
	CaseGRPCDirect, CaseGRPCBare, CaseGRPCInbound, CaseGRPCHAProxy}

var caseTitles = map[string]string{
	CaseDirect:             "app directly",
	CaseBare:               "bare httputil.ReverseProxy",
	CaseInboundRS256:       "sidecar inbound, one RS256 token",
	CaseInboundRS256Traced: "sidecar inbound, one RS256 token, every request traced and exported (OTLP/HTTP)",
	CaseInboundES256:       "sidecar inbound, one ES256 token",
	CaseInboundRS256Mix:    "sidecar inbound, %d RS256 tokens",
	CaseOutbound:           "sidecar outbound, cached token",
	CaseHAProxy:            "HAProxy checking the RS256 token itself (jwt_verify)",
	CaseFastBare:           "fasthttp server + HostClient, no auth (prototype)",
	CaseFastInbound:        "the sidecar's inbound handler behind a fasthttp server, one RS256 token (prototype)",
	CaseGRPCDirect:         "gRPC unary to the gRPC app directly",
	CaseGRPCBare:           "gRPC unary through a bare h2c httputil.ReverseProxy",
	CaseGRPCInbound:        "gRPC unary through the sidecar inbound, one RS256 token",
	CaseGRPCHAProxy:        "gRPC unary through HAProxy over h2c checking the RS256 token itself (jwt_verify)",
}

// isHAProxy reports whether a case needs HAProxy.
func isHAProxy(name string) bool { return name == CaseHAProxy || name == CaseGRPCHAProxy }

// isGRPC reports whether a case makes gRPC calls.
func isGRPC(name string) bool { return strings.HasPrefix(name, "grpc-") }

// baseline is the case a case's ratios are to: the bare proxy of its
// protocol, measured in the same run.
func baseline(name string) string {
	if isGRPC(name) {
		return CaseGRPCBare
	}
	return CaseBare
}

// Options configure Run.
type Options struct {
	// Sidecar is the authsidecar binary.
	Sidecar string
	// HAProxy is the haproxy binary of the haproxy-jwt case; empty: the
	// case is left out.
	HAProxy string
	// SidecarEnv is added to every sidecar's environment (for tests that
	// run a stand-in for the binary).
	SidecarEnv []string
	// Self runs a child server: the loadbench executable (or a test
	// binary) whose main calls ChildMain first.
	Self []string
	// Duration of each timed run; Warmup before each, not measured.
	Duration, Warmup time.Duration
	// Concurrency is the number of closed-loop workers.
	Concurrency int
	// GRPCConns is the number of gRPC client connections (each one HTTP/2
	// connection) the workers of a gRPC case share.
	GRPCConns int
	// Tokens is the number of distinct tokens of the mixed case.
	Tokens int
	// Rate, when positive, runs every case open loop at this many
	// requests per second instead of closed loop.
	Rate float64
	// HalfRate runs, after the closed-loop cases, the bare proxy and the
	// inbound RS256 case open loop at half the bare proxy's throughput.
	HalfRate bool
	// OpenWorkers is the open-loop worker pool size.
	OpenWorkers int
	// Cases to run (AllCases when empty).
	Cases []string
	// AppProcs and ProxyProcs set GOMAXPROCS of the app and of both
	// proxies (bare and sidecar); 0 leaves it unset.
	AppProcs, ProxyProcs int
	// IdleConns is how many idle keep-alive connections to hold open to
	// the inbound port for the memory figure; 0 skips it.
	IdleConns int
	// Bare changes the bare proxy, for experiments.
	Bare BareOptions
	// Rounds runs the closed-loop sequence of cases this many times, one
	// case after the other each round, and folds each case's rounds into
	// one result: slow drifts in what else the machine does then weigh on
	// every case alike.
	Rounds int
	// WaitIdle is how long to wait, before starting, for the machine to
	// be idle (other processes under 0.2 cores busy); 0 only measures.
	WaitIdle time.Duration
	// RetryContended runs a case again, up to this many times, when other
	// work on the machine competed with it (see CPUUse.Contended).
	RetryContended int
	// MaxRequests caps the requests of one timed run.
	MaxRequests int64
	// Log receives progress lines.
	Log io.Writer
}

func (o *Options) defaults() {
	if o.Duration <= 0 {
		o.Duration = 10 * time.Second
	}
	if o.Warmup < 0 {
		o.Warmup = 0
	}
	if o.Concurrency <= 0 {
		o.Concurrency = 32
	}
	if o.GRPCConns <= 0 {
		o.GRPCConns = 4
	}
	if o.Tokens <= 0 {
		o.Tokens = 10_000
	}
	if o.OpenWorkers <= 0 {
		o.OpenWorkers = 64
	}
	if len(o.Cases) == 0 {
		o.Cases = AllCases
	}
	if o.Rounds <= 0 {
		o.Rounds = 1
	}
	if o.MaxRequests <= 0 {
		o.MaxRequests = 10_000_000
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
}

// ValidateCases checks case names.
func ValidateCases(names []string) error {
	for _, n := range names {
		if !slices.Contains(AllCases, n) {
			return fmt.Errorf("unknown case %q (known: %s)", n, strings.Join(AllCases, ", "))
		}
	}
	return nil
}

// bench is one run's state.
type bench struct {
	opts   Options
	issuer *Issuer
	app    *Process
	bare   *Process
	// sidecar is the sidecar of the HTTP cases, inbound and outbound.
	sidecar *sidecarProc
	outAddr string
	// traced is the sidecar of the traced case, inbound only, exporting
	// to sink; spansBase is how many spans the sink held after the last
	// measurement, -1 before the first; tracedAt is when traced was ready.
	traced    *sidecarProc
	sink      *SpanSink
	spansBase int64
	tracedAt  time.Time
	// grpcApp, grpcBare and grpcSidecar serve the gRPC cases.
	grpcApp     *Process
	grpcBare    *Process
	grpcSidecar *sidecarProc
	// haproxy, fastBare and fastInbound are the other proxies in front of
	// the HTTP app; dir holds HAProxy's configuration and key.
	haproxy     *Process
	grpcHAProxy *Process
	fastBare    *Process
	fastInbound *Process
	dir         string
	tokRS       []string
	tokES       []string
	tokMix      []string
	report      *Report
}

// sidecarProc is a running sidecar and its ports.
type sidecarProc struct {
	*Process
	in, admin string
}

// Run starts the servers, runs the cases and returns the report. Every
// process it started is stopped before it returns.
func Run(ctx context.Context, opts Options) (*Report, error) {
	opts.defaults()
	if err := ValidateCases(opts.Cases); err != nil {
		return nil, err
	}
	if opts.HAProxy == "" && slices.ContainsFunc(opts.Cases, isHAProxy) {
		fmt.Fprintln(opts.Log, "loadbench: no haproxy binary: the HAProxy cases are left out (apt-get install haproxy)")
		opts.Cases = slices.DeleteFunc(slices.Clone(opts.Cases), isHAProxy)
	}
	b := &bench{opts: opts, report: &Report{
		Started:  time.Now().UTC(),
		Settings: settingsOf(opts),
	}}
	defer b.stop()
	b.checkIdle(ctx)
	if err := b.setUp(ctx); err != nil {
		return nil, err
	}
	if err := b.measureIdleMemory(); err != nil {
		return nil, err
	}
	if err := b.runCases(ctx); err != nil {
		return nil, err
	}
	if m, err := ProcessMemory(b.sidecar.PID()); err == nil {
		b.report.Memory.AfterLoad = &m
	}
	if opts.HalfRate && opts.Rate <= 0 {
		if err := b.runHalfRate(ctx); err != nil {
			return nil, err
		}
	}
	b.report.OutboundTokenFetches = b.issuer.TokenRequests.Load()
	return b.report, nil
}

func (b *bench) logf(format string, args ...any) {
	fmt.Fprintf(b.opts.Log, "loadbench: "+format+"\n", args...)
}

func (b *bench) running(name string) bool { return slices.Contains(b.opts.Cases, name) }

func (b *bench) setUp(ctx context.Context) error {
	var err error
	if b.issuer, err = StartIssuer(); err != nil {
		return err
	}
	b.logf("signing %d distinct RS256 tokens (not timed)", b.opts.Tokens)
	t0 := time.Now()
	if b.tokRS, err = b.issuer.SignRS256(1); err != nil {
		return err
	}
	if b.tokES, err = b.issuer.SignES256(1); err != nil {
		return err
	}
	if b.tokMix, err = b.issuer.SignRS256(b.opts.Tokens); err != nil {
		return err
	}
	b.logf("signed in %v", time.Since(t0).Round(time.Millisecond))

	appEnv := ChildEnv(b.opts.AppProcs)
	if b.app, err = StartChild(ctx, b.opts.Self, RoleApp, "", appEnv); err != nil {
		return err
	}
	appURL := "http://" + b.app.Addr
	if b.bare, err = StartChild(ctx, b.opts.Self, RoleBareProxy, appURL, b.bareEnv()); err != nil {
		return err
	}
	if b.outAddr, err = FreePort(); err != nil {
		return err
	}
	env := append(b.inboundEnv(appURL),
		"AUTHSIDECAR_OUTBOUND_LISTEN="+b.outAddr,
		"AUTHSIDECAR_OUTBOUND_ROUTES=app",
		"AUTHSIDECAR_OUTBOUND_TOKEN_URL="+b.issuer.URL+"/token",
		"AUTHSIDECAR_OUTBOUND_CLIENT_ID="+OutboundClientID,
		"AUTHSIDECAR_OUTBOUND_CLIENT_SECRET="+OutboundClientSecret,
		"AUTHSIDECAR_ROUTE_APP_URL="+appURL,
	)
	if b.sidecar, err = b.startSidecar(ctx, "authsidecar", env); err != nil {
		return err
	}
	b.report.Sidecar = SidecarInfo{Binary: b.opts.Sidecar, Version: sidecarVersion(b.opts.Sidecar, b.sidecarEnv(nil))}
	b.logf("app on %s, bare proxy on %s, sidecar inbound %s outbound %s admin %s",
		b.app.Addr, b.bare.Addr, b.sidecar.in, b.outAddr, b.sidecar.admin)
	if b.running(CaseInboundRS256Traced) {
		if err := b.setUpTraced(ctx, appURL); err != nil {
			return err
		}
	}
	if err := b.setUpOthers(ctx, appURL); err != nil {
		return err
	}
	if slices.ContainsFunc(b.opts.Cases, isGRPC) {
		return b.setUpGRPC(ctx, appEnv)
	}
	return nil
}

// setUpOthers starts the proxies that are not the sidecar binary, those
// of the cases that run: HAProxy, and the fasthttp prototypes (the
// inbound one configured by the same variables as the sidecar).
func (b *bench) setUpOthers(ctx context.Context, appURL string) error {
	var err error
	if slices.ContainsFunc(b.opts.Cases, isHAProxy) {
		if b.dir, err = os.MkdirTemp("", "loadbench-haproxy-"); err != nil {
			return err
		}
		b.report.HAProxy = haproxyVersion(b.opts.HAProxy)
	}
	if b.running(CaseHAProxy) {
		if b.haproxy, err = startHAProxy(ctx, b.opts.HAProxy, b.dir, "haproxy", b.issuer, b.app.Addr, b.opts.ProxyProcs, false); err != nil {
			return err
		}
		if err := checkGate(ctx, "haproxy", "http://"+b.haproxy.Addr+path, b.tokRS[0]); err != nil {
			return err
		}
		b.logf("haproxy on %s (%s)", b.haproxy.Addr, b.report.HAProxy)
	}
	if b.running(CaseFastBare) {
		if b.fastBare, err = StartChild(ctx, b.opts.Self, RoleFastBare, appURL, ChildEnv(b.opts.ProxyProcs)); err != nil {
			return err
		}
		b.logf("fasthttp bare proxy on %s", b.fastBare.Addr)
	}
	if b.running(CaseFastInbound) {
		env := ChildEnv(b.opts.ProxyProcs, b.inboundEnv(appURL)...)
		if b.fastInbound, err = StartChild(ctx, b.opts.Self, RoleFastInbound, appURL, env); err != nil {
			return err
		}
		if err := checkGate(ctx, "the fasthttp inbound prototype", "http://"+b.fastInbound.Addr+path, b.tokRS[0]); err != nil {
			return err
		}
		b.logf("fasthttp inbound prototype on %s", b.fastInbound.Addr)
	}
	return nil
}

func (b *bench) bareEnv() []string {
	env := ChildEnv(b.opts.ProxyProcs)
	if b.opts.Bare.BufferPool {
		env = append(env, EnvBufferPool+"=1")
	}
	if b.opts.Bare.FlushInterval != 0 {
		env = append(env, EnvFlushInterval+"="+b.opts.Bare.FlushInterval.String())
	}
	return env
}

// inboundEnv is what every sidecar of the benchmark is: inbound to
// upstream, accepting the bench issuer's tokens, every other setting at
// its default (the verified-token cache included).
func (b *bench) inboundEnv(upstream string) []string {
	return []string{
		"AUTHSIDECAR_INBOUND_UPSTREAM=" + upstream,
		"AUTHSIDECAR_INBOUND_ISSUERS=" + b.issuer.URL,
		"AUTHSIDECAR_INBOUND_AUDIENCES=" + Audience,
		"AUTHSIDECAR_LOG_LEVEL=error",
		"AUTHSIDECAR_SHUTDOWN_GRACE=2s",
	}
}

// sidecarEnv is a sidecar's whole environment.
func (b *bench) sidecarEnv(env []string) []string {
	return append(append(ChildEnv(b.opts.ProxyProcs), env...), b.opts.SidecarEnv...)
}

// startSidecar runs the sidecar binary with env on fresh inbound and
// admin ports.
func (b *bench) startSidecar(ctx context.Context, name string, env []string) (*sidecarProc, error) {
	sc := &sidecarProc{}
	for _, p := range []*string{&sc.in, &sc.admin} {
		var err error
		if *p, err = FreePort(); err != nil {
			return nil, err
		}
	}
	env = append(env, "AUTHSIDECAR_INBOUND_LISTEN="+sc.in, "AUTHSIDECAR_ADMIN_LISTEN="+sc.admin)
	p, err := StartSidecar(ctx, b.opts.Sidecar, b.sidecarEnv(env), sc.admin)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	p.Name, sc.Process = name, p
	return sc, nil
}

// setUpTraced starts the span sink and the traced sidecar: inbound to the
// HTTP app as the first sidecar, with tracing on (tracing is configured
// at start, by the OTEL_* variables, hence a process of its own).
func (b *bench) setUpTraced(ctx context.Context, appURL string) error {
	var err error
	if b.sink, err = StartSpanSink(); err != nil {
		return err
	}
	env := append(b.inboundEnv(appURL), otlpEnv(b.sink.Endpoint)...)
	if b.traced, err = b.startSidecar(ctx, "authsidecar (traced)", env); err != nil {
		return err
	}
	b.spansBase, b.tracedAt = -1, time.Now()
	b.logf("traced sidecar inbound %s admin %s, exporting to %s", b.traced.in, b.traced.admin, b.sink.Endpoint)
	return nil
}

// startSpans sets spansBase, before the traced case first runs, to the
// spans the traced sidecar exported on its own: those of its start
// (discovery, JWKS), which are not any request's. They are all in
// spanQuiet after it was ready.
func (b *bench) startSpans() {
	if b.spansBase >= 0 {
		return
	}
	time.Sleep(spanQuiet - time.Since(b.tracedAt))
	b.spansBase = b.sink.Spans()
	b.logf("the traced sidecar exported %d spans of its start", b.spansBase)
}

// spanQuiet is how long WaitSpans waits after the last span arrived:
// past the exporter's schedule delay, the spans still missing were
// dropped.
const spanQuiet = bspDelay + 500*time.Millisecond

// setUpGRPC starts the gRPC app, the bare h2c proxy and a sidecar inbound
// to the gRPC app. The first sidecar's inbound upstream is the HTTP app,
// and a sidecar has one, hence a process of its own. Its protocol to the
// app is auto, the default: gRPC requests go h2c.
func (b *bench) setUpGRPC(ctx context.Context, appEnv []string) error {
	var err error
	if b.grpcApp, err = StartChild(ctx, b.opts.Self, RoleGRPCApp, "", appEnv); err != nil {
		return err
	}
	appURL := "http://" + b.grpcApp.Addr
	if b.running(CaseGRPCBare) {
		if b.grpcBare, err = StartChild(ctx, b.opts.Self, RoleGRPCBareProxy, appURL, b.bareEnv()); err != nil {
			return err
		}
		b.logf("bare h2c proxy on %s", b.grpcBare.Addr)
	}
	if b.running(CaseGRPCInbound) {
		env := append(b.inboundEnv(appURL), "AUTHSIDECAR_INBOUND_UPSTREAM_PROTOCOL=auto")
		if b.grpcSidecar, err = b.startSidecar(ctx, "authsidecar (gRPC)", env); err != nil {
			return err
		}
		b.logf("gRPC sidecar inbound %s admin %s", b.grpcSidecar.in, b.grpcSidecar.admin)
	}
	if b.running(CaseGRPCHAProxy) {
		if b.grpcHAProxy, err = startHAProxy(ctx, b.opts.HAProxy, b.dir, "haproxy-grpc", b.issuer, b.grpcApp.Addr, b.opts.ProxyProcs, true); err != nil {
			return err
		}
		if err := checkGRPCGate(ctx, "haproxy over h2c", b.grpcHAProxy.Addr, b.tokRS[0]); err != nil {
			return err
		}
		b.logf("haproxy over h2c on %s", b.grpcHAProxy.Addr)
	}
	b.logf("gRPC app on %s; %d client connections per gRPC case", b.grpcApp.Addr, b.opts.GRPCConns)
	return nil
}

func (b *bench) sidecars() []*sidecarProc {
	var all []*sidecarProc
	for _, sc := range []*sidecarProc{b.sidecar, b.traced, b.grpcSidecar} {
		if sc != nil {
			all = append(all, sc)
		}
	}
	return all
}

// stop stops every process, the sidecars first (each takes a moment to
// drain), all at once.
func (b *bench) stop() {
	var wg sync.WaitGroup
	for _, sc := range b.sidecars() {
		wg.Go(func() { sc.Stop(5 * time.Second) })
	}
	wg.Wait()
	for _, p := range []*Process{b.haproxy, b.grpcHAProxy, b.fastBare, b.fastInbound, b.grpcBare, b.grpcApp, b.bare, b.app} {
		if p != nil {
			wg.Go(func() { p.Stop(5 * time.Second) })
		}
	}
	wg.Wait()
	if b.sink != nil {
		_ = b.sink.Close()
	}
	if b.issuer != nil {
		_ = b.issuer.Close()
	}
	if b.dir != "" {
		_ = os.RemoveAll(b.dir)
	}
}

// caseSpec is what a case sends and what it measures.
type caseSpec struct {
	// http is the HTTP cases' target; grpcAddr, when set, where a gRPC
	// case calls, with grpcToken.
	http      Target
	grpcAddr  string
	grpcToken string
	// proxy is the process in the middle (nil for the app directly), app
	// the app behind it.
	proxy, app *Process
	// cache, when set, is the sidecar whose verified-token cache the case
	// uses; spans the sink the case's spans go to.
	cache *sidecarProc
	spans *SpanSink
}

// path is what every HTTP case asks for.
const path = "/api/orders/42?view=summary"

func (b *bench) caseSpec(name string) caseSpec {
	switch name {
	case CaseDirect:
		return caseSpec{http: Target{URL: "http://" + b.app.Addr + path}, app: b.app}
	case CaseBare:
		return caseSpec{http: Target{URL: "http://" + b.bare.Addr + path}, proxy: b.bare, app: b.app}
	case CaseInboundRS256:
		return b.inbound(b.sidecar, b.tokRS)
	case CaseInboundRS256Traced:
		c := b.inbound(b.traced, b.tokRS)
		c.spans = b.sink
		return c
	case CaseInboundES256:
		return b.inbound(b.sidecar, b.tokES)
	case CaseInboundRS256Mix:
		return b.inbound(b.sidecar, b.tokMix)
	case CaseOutbound:
		return caseSpec{http: Target{URL: "http://" + b.outAddr + "/app" + path}, proxy: b.sidecar.Process, app: b.app}
	case CaseHAProxy:
		return caseSpec{http: Target{URL: "http://" + b.haproxy.Addr + path, Tokens: b.tokRS}, proxy: b.haproxy, app: b.app}
	case CaseFastBare:
		return caseSpec{http: Target{URL: "http://" + b.fastBare.Addr + path}, proxy: b.fastBare, app: b.app}
	case CaseFastInbound:
		return caseSpec{http: Target{URL: "http://" + b.fastInbound.Addr + path, Tokens: b.tokRS}, proxy: b.fastInbound, app: b.app}
	case CaseGRPCDirect:
		return caseSpec{grpcAddr: b.grpcApp.Addr, app: b.grpcApp}
	case CaseGRPCBare:
		return caseSpec{grpcAddr: b.grpcBare.Addr, proxy: b.grpcBare, app: b.grpcApp}
	case CaseGRPCInbound:
		return caseSpec{grpcAddr: b.grpcSidecar.in, grpcToken: b.tokRS[0], proxy: b.grpcSidecar.Process, app: b.grpcApp, cache: b.grpcSidecar}
	case CaseGRPCHAProxy:
		return caseSpec{grpcAddr: b.grpcHAProxy.Addr, grpcToken: b.tokRS[0], proxy: b.grpcHAProxy, app: b.grpcApp}
	}
	panic("unknown case " + name)
}

func (b *bench) inbound(sc *sidecarProc, tokens []string) caseSpec {
	return caseSpec{http: Target{URL: "http://" + sc.in + path, Tokens: tokens}, proxy: sc.Process, app: b.app, cache: sc}
}

func (b *bench) title(name string) string {
	if name == CaseInboundRS256Mix {
		return fmt.Sprintf(caseTitles[name], b.opts.Tokens)
	}
	return caseTitles[name]
}

func (b *bench) runCases(ctx context.Context) error {
	var names []string
	for _, name := range AllCases {
		if slices.Contains(b.opts.Cases, name) {
			names = append(names, name)
		}
	}
	rounds := map[string][]*measurement{}
	for round := range b.opts.Rounds {
		if b.opts.Rounds > 1 {
			b.logf("round %d of %d", round+1, b.opts.Rounds)
		}
		for _, name := range names {
			m, err := b.loadUncontended(ctx, name, b.opts.Rate)
			if err != nil {
				return err
			}
			rounds[name] = append(rounds[name], m)
		}
	}
	for _, name := range names {
		b.report.Cases = append(b.report.Cases, *b.summarize(name, b.opts.Rate, rounds[name]))
	}
	b.report.computeRatios()
	b.report.pairWithHAProxy()
	return nil
}

// runHalfRate measures the latency the sidecar adds when neither proxy is
// saturated: the bare proxy and inbound RS256 at half the bare proxy's
// closed-loop throughput.
func (b *bench) runHalfRate(ctx context.Context) error {
	bare := b.report.find(CaseBare)
	if bare == nil || bare.RPS <= 0 {
		b.logf("no half-rate comparison: the bare-proxy case did not run")
		return nil
	}
	rate := 0.5 * bare.RPS
	ol := &OpenLoopReport{Rate: rate, Fraction: 0.5}
	names := []string{CaseBare, CaseInboundRS256}
	rounds := map[string][]*measurement{}
	for range b.opts.Rounds {
		for _, name := range names {
			m, err := b.loadUncontended(ctx, name, rate)
			if err != nil {
				return err
			}
			rounds[name] = append(rounds[name], m)
		}
	}
	for _, name := range names {
		ol.Cases = append(ol.Cases, *b.summarize(name, rate, rounds[name]))
	}
	ol.AddedP50Micros = ol.Cases[1].P50Micros - ol.Cases[0].P50Micros
	ol.AddedP99Micros = ol.Cases[1].P99Micros - ol.Cases[0].P99Micros
	b.report.OpenLoop = ol
	return nil
}
