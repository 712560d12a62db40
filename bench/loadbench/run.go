package loadbench

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
)

// Case names, in the order they run.
const (
	CaseDirect          = "direct"
	CaseBare            = "bare-proxy"
	CaseInboundRS256    = "inbound-rs256"
	CaseInboundES256    = "inbound-es256"
	CaseInboundRS256Mix = "inbound-rs256-mix"
	CaseOutbound        = "outbound"
)

// AllCases lists every case in run order.
var AllCases = []string{CaseDirect, CaseBare, CaseInboundRS256, CaseInboundES256, CaseInboundRS256Mix, CaseOutbound}

var caseTitles = map[string]string{
	CaseDirect:          "app directly",
	CaseBare:            "bare httputil.ReverseProxy",
	CaseInboundRS256:    "sidecar inbound, one RS256 token",
	CaseInboundES256:    "sidecar inbound, one ES256 token",
	CaseInboundRS256Mix: "sidecar inbound, %d RS256 tokens",
	CaseOutbound:        "sidecar outbound, cached token",
}

// Options configure Run.
type Options struct {
	// Sidecar is the authsidecar binary.
	Sidecar string
	// Self runs a child server: the loadbench executable (or a test
	// binary) whose main calls ChildMain first.
	Self []string
	// Duration of each timed run; Warmup before each, not measured.
	Duration, Warmup time.Duration
	// Concurrency is the number of closed-loop workers.
	Concurrency int
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
	opts    Options
	issuer  *Issuer
	app     *Process
	bare    *Process
	sidecar *Process
	inAddr  string
	outAddr string
	admin   string
	tokRS   []string
	tokES   []string
	tokMix  []string
	report  *Report
}

// Run starts the servers, runs the cases and returns the report. Every
// process it started is stopped before it returns.
func Run(ctx context.Context, opts Options) (*Report, error) {
	opts.defaults()
	if err := ValidateCases(opts.Cases); err != nil {
		return nil, err
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
	proxyEnv := ChildEnv(b.opts.ProxyProcs)
	if b.app, err = StartChild(ctx, b.opts.Self, RoleApp, "", appEnv); err != nil {
		return err
	}
	appURL := "http://" + b.app.Addr
	bareEnv := slices.Clone(proxyEnv)
	if b.opts.Bare.BufferPool {
		bareEnv = append(bareEnv, EnvBufferPool+"=1")
	}
	if b.opts.Bare.FlushInterval != 0 {
		bareEnv = append(bareEnv, EnvFlushInterval+"="+b.opts.Bare.FlushInterval.String())
	}
	if b.bare, err = StartChild(ctx, b.opts.Self, RoleBareProxy, appURL, bareEnv); err != nil {
		return err
	}
	for _, p := range []*string{&b.inAddr, &b.outAddr, &b.admin} {
		if *p, err = FreePort(); err != nil {
			return err
		}
	}
	env := append(proxyEnv,
		"AUTHSIDECAR_INBOUND_LISTEN="+b.inAddr,
		"AUTHSIDECAR_OUTBOUND_LISTEN="+b.outAddr,
		"AUTHSIDECAR_ADMIN_LISTEN="+b.admin,
		"AUTHSIDECAR_INBOUND_UPSTREAM="+appURL,
		"AUTHSIDECAR_INBOUND_ISSUERS="+b.issuer.URL,
		"AUTHSIDECAR_INBOUND_AUDIENCES="+Audience,
		"AUTHSIDECAR_LOG_LEVEL=error",
		"AUTHSIDECAR_SHUTDOWN_GRACE=2s",
		"AUTHSIDECAR_OUTBOUND_ROUTES=app",
		"AUTHSIDECAR_OUTBOUND_TOKEN_URL="+b.issuer.URL+"/token",
		"AUTHSIDECAR_OUTBOUND_CLIENT_ID="+OutboundClientID,
		"AUTHSIDECAR_OUTBOUND_CLIENT_SECRET="+OutboundClientSecret,
		"AUTHSIDECAR_ROUTE_APP_URL="+appURL,
	)
	if b.sidecar, err = StartSidecar(ctx, b.opts.Sidecar, env, b.admin); err != nil {
		return err
	}
	b.report.Sidecar = SidecarInfo{Binary: b.opts.Sidecar, Version: sidecarVersion(b.opts.Sidecar)}
	b.logf("app on %s, bare proxy on %s, sidecar inbound %s outbound %s admin %s",
		b.app.Addr, b.bare.Addr, b.inAddr, b.outAddr, b.admin)
	return nil
}

func (b *bench) stop() {
	for _, p := range []*Process{b.sidecar, b.bare, b.app} {
		if p != nil {
			p.Stop(5 * time.Second)
		}
	}
	if b.issuer != nil {
		_ = b.issuer.Close()
	}
}

// caseTarget returns what a case sends and which process is the proxy in
// the middle (nil for the app directly).
func (b *bench) caseTarget(name string) (Target, *Process) {
	const path = "/api/orders/42?view=summary"
	switch name {
	case CaseDirect:
		return Target{URL: "http://" + b.app.Addr + path}, nil
	case CaseBare:
		return Target{URL: "http://" + b.bare.Addr + path}, b.bare
	case CaseInboundRS256:
		return Target{URL: "http://" + b.inAddr + path, Tokens: b.tokRS}, b.sidecar
	case CaseInboundES256:
		return Target{URL: "http://" + b.inAddr + path, Tokens: b.tokES}, b.sidecar
	case CaseInboundRS256Mix:
		return Target{URL: "http://" + b.inAddr + path, Tokens: b.tokMix}, b.sidecar
	case CaseOutbound:
		return Target{URL: "http://" + b.outAddr + "/app" + path}, b.sidecar
	}
	panic("unknown case " + name)
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
