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
	"runtime"
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

func sidecarVersion(binary string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, binary, "version").Output()
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
	conns, err := openIdleConns(b.inAddr, b.opts.IdleConns, b.tokRS[0])
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

// cpuSnapshot is the CPU time of the three processes at one moment.
type cpuSnapshot struct{ gen, proxy, app, machine time.Duration }

func (b *bench) cpu(proxy *Process) cpuSnapshot {
	var s cpuSnapshot
	s.gen, _ = SelfCPU()
	if proxy != nil {
		s.proxy, _ = ProcessCPU(proxy.PID())
	}
	s.app, _ = ProcessCPU(b.app.PID())
	s.machine, _ = MachineBusy()
	return s
}

// measurement is one timed run of one case.
type measurement struct {
	res      *Result
	cpu      cpuSnapshot // spent during the run
	hasProxy bool
	// hits and lookups of the verified-token cache; lookups < 0 when the
	// sidecar does not say.
	hits, lookups float64
}

// load runs one measured load of name: warm-up, then the timed part, open
// loop at rate when rate > 0, else closed loop.
func (b *bench) load(ctx context.Context, name string, rate float64) (*measurement, error) {
	t, proxy := b.caseTarget(name)
	workers := b.opts.Concurrency
	if rate > 0 {
		workers = b.opts.OpenWorkers
	}
	client := NewClient(workers, 10*time.Second)
	defer client.CloseIdleConnections()
	run := func(d time.Duration) (*Result, error) {
		if rate > 0 {
			return OpenLoop(ctx, client, t, workers, rate, d)
		}
		return ClosedLoop(ctx, client, t, workers, d, b.opts.MaxRequests)
	}
	mode := "closed loop"
	if rate > 0 {
		mode = fmt.Sprintf("open loop at %.0f req/s", rate)
	}
	b.logf("%-18s %s: %v warm-up, %v timed", name, mode, b.opts.Warmup, b.opts.Duration)
	if n := len(t.Tokens); n > 1 && rate <= 0 {
		// One pass over every token first, so that the timed part sees
		// the steady state of many callers, not each token's first sight.
		if _, err := ClosedLoop(ctx, client, t, workers, time.Minute, int64(n)); err != nil {
			return nil, fmt.Errorf("%s first pass over the tokens: %w", name, err)
		}
	}
	if b.opts.Warmup > 0 {
		if _, err := run(b.opts.Warmup); err != nil {
			return nil, fmt.Errorf("%s warm-up: %w", name, err)
		}
	}
	runtime.GC()
	time.Sleep(100 * time.Millisecond)
	before := b.cpu(proxy)
	hits0, misses0, cacheErr0 := b.cacheLookups()
	res, err := run(b.opts.Duration)
	after := b.cpu(proxy)
	hits1, misses1, cacheErr1 := b.cacheLookups()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	select {
	case <-b.sidecar.Exited():
		return nil, errors.New("the sidecar exited during the run")
	default:
	}
	if res.Failed > 0 {
		b.logf("%s: %d failed requests, first: %s", name, res.Failed, res.FirstFailure)
	}
	m := &measurement{res: res, hasProxy: proxy != nil, lookups: -1, cpu: cpuSnapshot{
		gen: after.gen - before.gen, proxy: after.proxy - before.proxy,
		app: after.app - before.app, machine: after.machine - before.machine,
	}}
	if strings.HasPrefix(name, "inbound") && cacheErr0 == nil && cacheErr1 == nil {
		m.hits, m.lookups = hits1-hits0, (hits1-hits0)+(misses1-misses0)
	}
	return m, nil
}

// contended reports whether other work kept the machine busy during m.
func (m *measurement) contended() bool {
	return cpuUse(cpuSnapshot{}, m.cpu, m.res, m.hasProxy).Contended()
}

// loadUncontended is load, repeated up to RetryContended times while other
// work on the machine contended the run, waiting for the machine to be
// idle (up to WaitIdle) before each retry. The last attempt counts.
func (b *bench) loadUncontended(ctx context.Context, name string, rate float64) (*measurement, error) {
	for attempt := 0; ; attempt++ {
		m, err := b.load(ctx, name, rate)
		if err != nil || !m.contended() || attempt >= b.opts.RetryContended {
			return m, err
		}
		b.logf("%s: other work competed for the CPUs during the run; again (retry %d of %d)", name, attempt+1, b.opts.RetryContended)
		b.waitIdle(ctx)
	}
}

// summarize folds the rounds of one case into its figures: requests and
// time add up, histograms merge, so the rounds count as one longer run.
func (b *bench) summarize(name string, rate float64, ms []*measurement) *CaseResult {
	total := &Result{Hist: NewHistogram()}
	var cpu cpuSnapshot
	var hits, lookups float64
	var perRound []float64
	for _, m := range ms {
		total.OK += m.res.OK
		total.Failed += m.res.Failed
		total.Dropped += m.res.Dropped
		total.Elapsed += m.res.Elapsed
		if total.FirstFailure == "" {
			total.FirstFailure = m.res.FirstFailure
		}
		total.Hist.Merge(m.res.Hist)
		cpu.gen += m.cpu.gen
		cpu.proxy += m.cpu.proxy
		cpu.app += m.cpu.app
		cpu.machine += m.cpu.machine
		if m.lookups >= 0 {
			hits += m.hits
			lookups += m.lookups
		}
		perRound = append(perRound, m.res.RPS())
	}
	c := newCaseResult(name, b.title(name), total)
	c.Rate = rate
	c.CPU = cpuUse(cpuSnapshot{}, cpu, total, ms[0].hasProxy)
	if lookups > 0 {
		c.CacheHitRatio, c.CacheLookups = hits/lookups, lookups
	}
	if len(ms) > 1 {
		c.RoundsRPS = perRound
	}
	return c
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

// cacheLookups reads the sidecar's verified-token cache hits and misses
// from its /metrics.
func (b *bench) cacheLookups() (hits, misses float64, err error) {
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{Proxy: nil}}
	defer client.CloseIdleConnections()
	resp, err := client.Get("http://" + b.admin + "/metrics")
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
