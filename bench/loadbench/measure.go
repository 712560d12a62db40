package loadbench

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"time"
)

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
