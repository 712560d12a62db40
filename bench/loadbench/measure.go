package loadbench

import (
	"context"
	"fmt"
	"runtime"
	"time"
)

// cpuSnapshot is the CPU time of the three processes at one moment.
type cpuSnapshot struct{ gen, proxy, app, machine time.Duration }

func (b *bench) cpu(c caseSpec) cpuSnapshot {
	var s cpuSnapshot
	s.gen, _ = SelfCPU()
	if c.proxy != nil {
		s.proxy, _ = ProcessCPU(c.proxy.PID())
	}
	s.app, _ = ProcessCPU(c.app.PID())
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
	// spans reached the sink for the requests of the run (traced case).
	spans int64
}

// load runs one measured load of name: warm-up, then the timed part, open
// loop at rate when rate > 0, else closed loop.
func (b *bench) load(ctx context.Context, name string, rate float64) (*measurement, error) {
	c := b.caseSpec(name)
	workers := b.opts.Concurrency
	if rate > 0 {
		workers = b.opts.OpenWorkers
	}
	run, closeConns, err := b.runner(ctx, c, workers, rate)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	defer closeConns()
	mode := "closed loop"
	if rate > 0 {
		mode = fmt.Sprintf("open loop at %.0f req/s", rate)
	}
	b.logf("%-20s %s: %v warm-up, %v timed", name, mode, b.opts.Warmup, b.opts.Duration)
	if c.spans != nil {
		b.startSpans()
	}
	if n := len(c.http.Tokens); n > 1 && rate <= 0 {
		// One pass over every token first, so that the timed part sees
		// the steady state of many callers, not each token's first sight.
		if _, err := run(time.Minute, int64(n)); err != nil {
			return nil, fmt.Errorf("%s first pass over the tokens: %w", name, err)
		}
	}
	var warmedUp int64
	if b.opts.Warmup > 0 {
		w, err := run(b.opts.Warmup, b.opts.MaxRequests)
		if err != nil {
			return nil, fmt.Errorf("%s warm-up: %w", name, err)
		}
		warmedUp = int64(w.OK + w.Failed)
	}
	if c.spans != nil {
		// The warm-up's spans in, so that the timed part's are counted alone.
		b.spansBase = c.spans.WaitSpans(ctx, b.spansBase+warmedUp, spanQuiet)
	}
	runtime.GC()
	time.Sleep(100 * time.Millisecond)
	before := b.cpu(c)
	hits0, misses0, cacheErr0 := b.cacheLookups(c.cache)
	res, err := run(b.opts.Duration, b.opts.MaxRequests)
	var spans int64
	if c.spans != nil && err == nil {
		// Read the CPU once the last span is in: the traced sidecar's
		// CPU then includes exporting every span of the timed part.
		n := c.spans.WaitSpans(ctx, b.spansBase+int64(res.OK+res.Failed), spanQuiet)
		spans, b.spansBase = n-b.spansBase, n
	}
	after := b.cpu(c)
	hits1, misses1, cacheErr1 := b.cacheLookups(c.cache)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	for _, sc := range b.sidecars() {
		select {
		case <-sc.Exited():
			return nil, fmt.Errorf("%s exited during the run", sc.Name)
		default:
		}
	}
	if res.Failed > 0 {
		b.logf("%s: %d failed requests, first: %s", name, res.Failed, res.FirstFailure)
	}
	m := &measurement{res: res, hasProxy: c.proxy != nil, lookups: -1, spans: spans, cpu: cpuSnapshot{
		gen: after.gen - before.gen, proxy: after.proxy - before.proxy,
		app: after.app - before.app, machine: after.machine - before.machine,
	}}
	if c.cache != nil && cacheErr0 == nil && cacheErr1 == nil {
		m.hits, m.lookups = hits1-hits0, (hits1-hits0)+(misses1-misses0)
	}
	return m, nil
}

// runner returns how to run case c for d (or at most max requests) with
// workers, and what to close after; it makes the case's client.
func (b *bench) runner(ctx context.Context, c caseSpec, workers int, rate float64) (run func(d time.Duration, max int64) (*Result, error), closeConns func(), err error) {
	if c.grpcAddr == "" {
		client := NewClient(workers, 10*time.Second)
		return func(d time.Duration, max int64) (*Result, error) {
			if rate > 0 {
				return OpenLoop(ctx, client, c.http, workers, rate, d)
			}
			return ClosedLoop(ctx, client, c.http, workers, d, max)
		}, client.CloseIdleConnections, nil
	}
	conns, err := DialGRPC(c.grpcAddr, b.opts.GRPCConns)
	if err != nil {
		return nil, nil, err
	}
	t := GRPCTarget{Conns: conns, Token: c.grpcToken}
	if err := checkGRPC(ctx, t); err != nil {
		CloseGRPC(conns)
		return nil, nil, err
	}
	return func(d time.Duration, max int64) (*Result, error) {
		if rate > 0 {
			return GRPCOpenLoop(ctx, t, workers, rate, d)
		}
		return GRPCClosedLoop(ctx, t, workers, d, max)
	}, func() { CloseGRPC(conns) }, nil
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
	var perRound, busy, cores, proxyCPU, p99s []float64
	var spans int64
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
		u := cpuUse(cpuSnapshot{}, m.cpu, m.res, m.hasProxy)
		busy, cores = append(busy, u.MachineBusy), append(cores, u.CoresBusy)
		proxyCPU = append(proxyCPU, u.ProxyMicrosPerReq)
		p99s = append(p99s, micros(m.res.Hist.Percentile(0.99)))
		spans += m.spans
	}
	c := newCaseResult(name, b.title(name), total)
	c.Baseline = baseline(name)
	c.Rate = rate
	c.CPU = cpuUse(cpuSnapshot{}, cpu, total, ms[0].hasProxy)
	if lookups > 0 {
		c.CacheHitRatio, c.CacheLookups = hits/lookups, lookups
	}
	if len(ms) > 1 {
		c.RoundsRPS, c.RoundsMachineBusy, c.RoundsCoresBusy, c.RoundsP99Micros = perRound, busy, cores, p99s
		if ms[0].hasProxy {
			c.RoundsProxyMicros = proxyCPU
		}
	}
	if name == CaseInboundRS256Traced {
		c.SpansExported = spans
		if n := total.OK + total.Failed; n > 0 {
			c.SpansPerRequest = float64(spans) / float64(n)
		}
	}
	return c
}
