package loadbench

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"runtime"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// Report is everything one run measured.
type Report struct {
	Started  time.Time   `json:"started"`
	Settings Settings    `json:"settings"`
	Sidecar  SidecarInfo `json:"sidecar"`
	// Cases are the closed-loop cases (open loop when Settings.Rate > 0).
	Cases []CaseResult `json:"cases"`
	// OpenLoop is the half-rate latency comparison.
	OpenLoop *OpenLoopReport `json:"open_loop,omitempty"`
	Memory   *MemoryReport   `json:"sidecar_memory,omitempty"`
	// OutboundTokenFetches counts token requests the sidecar made: one
	// means the outbound case ran on the cached token.
	OutboundTokenFetches int64 `json:"outbound_token_fetches"`
	// HAProxy is the version of HAProxy the haproxy-jwt case ran.
	HAProxy string `json:"haproxy,omitempty"`
}

// Settings describe the run.
type Settings struct {
	NumCPU         int     `json:"num_cpu"`
	GenGOMAXPROCS  int     `json:"loadgen_gomaxprocs"`
	AppGOMAXPROCS  int     `json:"app_gomaxprocs,omitempty"`
	ProxyGOMAXPROC int     `json:"proxy_gomaxprocs,omitempty"`
	Concurrency    int     `json:"concurrency"`
	GRPCConns      int     `json:"grpc_connections"`
	OpenWorkers    int     `json:"open_loop_workers"`
	DurationSec    float64 `json:"duration_seconds"`
	WarmupSec      float64 `json:"warmup_seconds"`
	Tokens         int     `json:"mixed_tokens"`
	BareBufferPool bool    `json:"bare_buffer_pool"`
	BareFlush      string  `json:"bare_flush_interval"`
	Rate           float64 `json:"rate,omitempty"`
	Rounds         int     `json:"rounds"`
	// MachineBusyBefore is the cores busy in the second before the run,
	// from /proc/stat: on an idle machine it is near 0.
	MachineBusyBefore float64 `json:"machine_cores_busy_before"`
	GoVersion         string  `json:"go_version"`
}

func settingsOf(o Options) Settings {
	return Settings{
		NumCPU: runtime.NumCPU(), GenGOMAXPROCS: runtime.GOMAXPROCS(0),
		AppGOMAXPROCS: o.AppProcs, ProxyGOMAXPROC: o.ProxyProcs,
		Concurrency: o.Concurrency, GRPCConns: o.GRPCConns, OpenWorkers: o.OpenWorkers,
		DurationSec: o.Duration.Seconds(), WarmupSec: o.Warmup.Seconds(),
		Tokens: o.Tokens, BareBufferPool: o.Bare.BufferPool, BareFlush: o.Bare.FlushInterval.String(), Rate: o.Rate, Rounds: o.Rounds, GoVersion: runtime.Version(),
	}
}

// SidecarInfo names the binary measured.
type SidecarInfo struct {
	Binary  string `json:"binary"`
	Version string `json:"version"`
}

// CaseResult is one case's figures.
type CaseResult struct {
	Name         string  `json:"name"`
	Title        string  `json:"title"`
	Rate         float64 `json:"rate,omitempty"`
	OK           uint64  `json:"ok"`
	Failed       uint64  `json:"failed"`
	FirstFailure string  `json:"first_failure,omitempty"`
	Dropped      uint64  `json:"dropped,omitempty"`
	ElapsedSec   float64 `json:"elapsed_seconds"`
	RPS          float64 `json:"rps"`
	P50Micros    float64 `json:"p50_us"`
	P90Micros    float64 `json:"p90_us"`
	P99Micros    float64 `json:"p99_us"`
	P999Micros   float64 `json:"p999_us"`
	MaxMicros    float64 `json:"max_us"`
	// Baseline is the bare proxy the ratios are to: bare-proxy for the
	// HTTP cases, grpc-bare for the gRPC ones.
	Baseline string `json:"baseline,omitempty"`
	// RatioToBare is RPS over the baseline's RPS in the same run (closed
	// loop), 0 when the baseline did not run.
	RatioToBare float64 `json:"ratio_to_bare,omitempty"`
	// P99RatioToBare is P99 over the baseline's P99.
	P99RatioToBare float64 `json:"p99_ratio_to_bare,omitempty"`
	CPU            CPUUse  `json:"cpu"`
	// CacheHitRatio is the share of the sidecar's verified-token cache
	// lookups that hit during the timed run (inbound cases, when the
	// sidecar exports the metric).
	CacheHitRatio float64 `json:"cache_hit_ratio,omitempty"`
	CacheLookups  float64 `json:"cache_lookups,omitempty"`
	// RoundsRPS is each round's throughput, when there were several, and
	// RoundsMachineBusy and RoundsCoresBusy each round's CPUUse figures:
	// which rounds other work contended.
	RoundsRPS         []float64 `json:"rounds_rps,omitempty"`
	RoundsMachineBusy []float64 `json:"rounds_machine_cores_busy,omitempty"`
	RoundsCoresBusy   []float64 `json:"rounds_cores_busy,omitempty"`
	// RoundsProxyMicros is each round's proxy CPU per request.
	RoundsProxyMicros []float64 `json:"rounds_proxy_us_per_req,omitempty"`
	// RoundsP99Micros is each round's p99: the folded P99Micros is of
	// every round's requests together.
	RoundsP99Micros []float64 `json:"rounds_p99_us,omitempty"`
	// RoundsRatio is each round's RPS over the baseline's in the same
	// round, and RatioMedian, RatioMin and RatioMax their median and
	// spread: how far one round's ratio can be trusted.
	RoundsRatio []float64 `json:"rounds_ratio_to_bare,omitempty"`
	RatioMedian float64   `json:"ratio_median,omitempty"`
	RatioMin    float64   `json:"ratio_min,omitempty"`
	RatioMax    float64   `json:"ratio_max,omitempty"`
	// AgainstHAProxy pairs a sidecar case with HAProxy's in the same
	// rounds, when both ran: the figures #17 holds the sidecar to.
	AgainstHAProxy *Pairing `json:"against_haproxy,omitempty"`
	// SpansExported is how many spans reached the span sink for the
	// timed part's requests, and SpansPerRequest that over the requests
	// sent (traced case): 1 means none was dropped.
	SpansExported   int64   `json:"spans_exported,omitempty"`
	SpansPerRequest float64 `json:"spans_per_request,omitempty"`
}

// CPUUse is the CPU time each process spent per successful request during
// the timed run, and the cores all three kept busy on average.
type CPUUse struct {
	ProxyMicrosPerReq float64 `json:"proxy_us_per_req,omitempty"`
	AppMicrosPerReq   float64 `json:"app_us_per_req"`
	GenMicrosPerReq   float64 `json:"loadgen_us_per_req"`
	CoresBusy         float64 `json:"cores_busy"`
	// MachineBusy is the cores the whole machine kept busy (/proc/stat),
	// the benchmark's processes and anything else; well above CoresBusy,
	// something else competed for the CPUs.
	MachineBusy float64 `json:"machine_cores_busy"`
}

func micros(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

func newCaseResult(name, title string, r *Result) *CaseResult {
	return &CaseResult{
		Name: name, Title: title, OK: r.OK, Failed: r.Failed, FirstFailure: r.FirstFailure,
		Dropped: r.Dropped, ElapsedSec: r.Elapsed.Seconds(), RPS: r.RPS(),
		P50Micros: micros(r.Hist.Percentile(0.50)), P90Micros: micros(r.Hist.Percentile(0.90)),
		P99Micros: micros(r.Hist.Percentile(0.99)), P999Micros: micros(r.Hist.Percentile(0.999)),
		MaxMicros: micros(r.Hist.Max()),
	}
}

func cpuUse(before, after cpuSnapshot, r *Result, hasProxy bool) CPUUse {
	if r.OK == 0 {
		return CPUUse{}
	}
	per := func(d time.Duration) float64 { return micros(d) / float64(r.OK) }
	u := CPUUse{
		AppMicrosPerReq: per(after.app - before.app),
		GenMicrosPerReq: per(after.gen - before.gen),
	}
	total := (after.app - before.app) + (after.gen - before.gen)
	if hasProxy {
		u.ProxyMicrosPerReq = per(after.proxy - before.proxy)
		total += after.proxy - before.proxy
	}
	if r.Elapsed > 0 {
		u.CoresBusy = total.Seconds() / r.Elapsed.Seconds()
		u.MachineBusy = (after.machine - before.machine).Seconds() / r.Elapsed.Seconds()
	}
	return u
}

func (r *Report) find(name string) *CaseResult {
	for i := range r.Cases {
		if r.Cases[i].Name == name {
			return &r.Cases[i]
		}
	}
	return nil
}

func (r *Report) computeRatios() {
	for i := range r.Cases {
		c := &r.Cases[i]
		bare := r.find(c.Baseline)
		if bare == nil || bare.RPS == 0 {
			continue
		}
		c.RatioToBare = c.RPS / bare.RPS
		if bare.P99Micros > 0 {
			c.P99RatioToBare = c.P99Micros / bare.P99Micros
		}
		if len(c.RoundsRPS) > 1 && len(c.RoundsRPS) == len(bare.RoundsRPS) {
			c.RoundsRatio = make([]float64, len(c.RoundsRPS))
			for j, x := range c.RoundsRPS {
				c.RoundsRatio[j] = x / bare.RoundsRPS[j]
			}
			c.RatioMedian, c.RatioMin, c.RatioMax = medianSpread(c.RoundsRatio)
		}
	}
}

// Pairing compares a case with a rival's, round by round: each round's
// ratio is of two runs minutes apart on the same machine, so a machine
// that slowed for one round moves both.
type Pairing struct {
	Rival string `json:"rival"`
	// RoundsRatio is each round's rps over the rival's, RoundsP99Ratio
	// each round's p99 over the rival's (under 1: the case's slowest
	// requests were faster).
	RoundsRatio    []float64 `json:"rounds_rps_ratio"`
	RoundsP99Ratio []float64 `json:"rounds_p99_ratio"`
	RatioMedian    float64   `json:"rps_ratio_median"`
	P99RatioMedian float64   `json:"p99_ratio_median"`
	P99RatioMin    float64   `json:"p99_ratio_min"`
	P99RatioMax    float64   `json:"p99_ratio_max"`
}

// rival is the HAProxy case a sidecar case is held against: the same
// token checked, the same protocol.
func rival(name string) string {
	switch name {
	case CaseInboundRS256, CaseOutbound:
		return CaseHAProxy
	case CaseGRPCInbound:
		return CaseGRPCHAProxy
	}
	return ""
}

// rounds returns each round's rps and p99: the whole run's, when it was
// one round.
func (c *CaseResult) rounds() (rps, p99 []float64) {
	if len(c.RoundsRPS) > 0 {
		return c.RoundsRPS, c.RoundsP99Micros
	}
	if c.OK == 0 {
		return nil, nil
	}
	return []float64{c.RPS}, []float64{c.P99Micros}
}

func (r *Report) pairWithHAProxy() {
	for i := range r.Cases {
		c := &r.Cases[i]
		h := r.find(rival(c.Name))
		if h == nil {
			continue
		}
		rps, p99 := c.rounds()
		hrps, hp99 := h.rounds()
		n := len(rps)
		if n == 0 || len(hrps) != n || len(p99) != n || len(hp99) != n || slices.Contains(hrps, 0) || slices.Contains(hp99, 0) {
			continue
		}
		p := &Pairing{Rival: h.Name, RoundsRatio: make([]float64, n), RoundsP99Ratio: make([]float64, n)}
		for j := range n {
			p.RoundsRatio[j] = rps[j] / hrps[j]
			p.RoundsP99Ratio[j] = p99[j] / hp99[j]
		}
		p.RatioMedian, _, _ = medianSpread(p.RoundsRatio)
		p.P99RatioMedian, p.P99RatioMin, p.P99RatioMax = medianSpread(p.RoundsP99Ratio)
		c.AgainstHAProxy = p
	}
}

// medianSpread returns the median, smallest and largest of xs.
func medianSpread(xs []float64) (median, lo, hi float64) {
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	median = s[n/2]
	if n%2 == 0 {
		median = (s[n/2-1] + s[n/2]) / 2
	}
	return median, s[0], s[n-1]
}

// OpenLoopReport compares latencies at a rate neither proxy is saturated by.
type OpenLoopReport struct {
	Rate     float64 `json:"rate"`
	Fraction float64 `json:"fraction_of_bare_max"`
	// Cases are the bare proxy, then the sidecar inbound (one RS256 token).
	Cases          []CaseResult `json:"cases"`
	AddedP50Micros float64      `json:"added_p50_us"`
	AddedP99Micros float64      `json:"added_p99_us"`
}

// MemoryReport is the sidecar's resident memory at three moments.
type MemoryReport struct {
	// Idle is after start-up (keys loaded), before any request.
	Idle *Memory `json:"idle"`
	// WithIdleConns is with IdleConns idle keep-alive connections open to
	// the inbound port.
	WithIdleConns *Memory `json:"with_idle_conns,omitempty"`
	IdleConns     int     `json:"idle_conns"`
	// AfterLoad is right after the last closed-loop case.
	AfterLoad *Memory `json:"after_load,omitempty"`
}

// WriteJSON writes r as indented JSON.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

func fmtMicros(us float64) string {
	switch {
	case us <= 0:
		return "-"
	case us < 1000:
		return fmt.Sprintf("%.0fµs", us)
	case us < 100_000:
		return fmt.Sprintf("%.2fms", us/1000)
	default:
		return fmt.Sprintf("%.0fms", us/1000)
	}
}

func fmtRatio(x float64) string {
	if x == 0 || math.IsNaN(x) || math.IsInf(x, 0) {
		return "-"
	}
	return fmt.Sprintf("%.2f×", x)
}

func fmtMiB(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

func procs(n int) string {
	if n <= 0 {
		return "unset"
	}
	return fmt.Sprint(n)
}

// WriteTable writes r for people.
func (r *Report) WriteTable(w io.Writer) error {
	s := r.Settings
	var b strings.Builder
	fmt.Fprintf(&b, "authsidecar load benchmark, %s, sidecar %s\n", r.Started.Format(time.RFC3339), r.Sidecar.Version)
	if r.HAProxy != "" {
		fmt.Fprintf(&b, "%s\n", r.HAProxy)
	}
	fmt.Fprintf(&b, "%d CPUs shared by the load generator (GOMAXPROCS %d), the proxy under test (%s) and the app (%s); %s\n",
		s.NumCPU, s.GenGOMAXPROCS, procs(s.ProxyGOMAXPROC), procs(s.AppGOMAXPROCS), s.GoVersion)
	fmt.Fprintf(&b, "machine busy before the run: %.2f cores\n", s.MachineBusyBefore)
	if s.Rate > 0 {
		fmt.Fprintf(&b, "open loop at %.0f req/s, %d workers, %gs warm-up + %gs timed per case\n\n", s.Rate, s.OpenWorkers, s.WarmupSec, s.DurationSec)
	} else {
		fmt.Fprintf(&b, "closed loop, %d connections (gRPC: %d workers on %d connections), %gs warm-up + %gs timed per case",
			s.Concurrency, s.Concurrency, s.GRPCConns, s.WarmupSec, s.DurationSec)
		if s.Rounds > 1 {
			fmt.Fprintf(&b, ", %d rounds folded into one result per case", s.Rounds)
		}
		b.WriteString("\n\n")
	}
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "case\t  rps\t p50\t p99\t p99.9\t rps vs bare\t p99 vs bare\t proxy CPU/req\t app CPU/req\t cores busy\t machine busy\t cache hits\t failed\t")
	for _, c := range r.Cases {
		hits := "-"
		if c.CacheLookups > 0 {
			hits = fmt.Sprintf("%.1f%%", 100*c.CacheHitRatio)
		}
		fmt.Fprintf(tw, "%s\t%.0f\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%.2f\t%s\t%s\t%d\t\n", c.Name, c.RPS,
			fmtMicros(c.P50Micros), fmtMicros(c.P99Micros), fmtMicros(c.P999Micros),
			fmtRatio(c.RatioToBare), fmtRatio(c.P99RatioToBare),
			fmtMicros(c.CPU.ProxyMicrosPerReq), fmtMicros(c.CPU.AppMicrosPerReq), c.CPU.CoresBusy, machineBusy(c.CPU), hits, c.Failed+c.Dropped)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, c := range r.Cases {
		fmt.Fprintf(&b, "  %-20s %s", c.Name, c.Title)
		if c.Name == CaseInboundRS256Traced {
			fmt.Fprintf(&b, "; spans exported per request %.3f (%d spans)", c.SpansPerRequest, c.SpansExported)
		}
		if len(c.RoundsRPS) > 1 {
			b.WriteString("; rps per round:")
			for i, x := range c.RoundsRPS {
				fmt.Fprintf(&b, " %.0f", x)
				if i < len(c.RoundsMachineBusy) && i < len(c.RoundsCoresBusy) &&
					(CPUUse{MachineBusy: c.RoundsMachineBusy[i], CoresBusy: c.RoundsCoresBusy[i]}).Contended() {
					b.WriteString("*")
				}
			}
		}
		if len(c.RoundsRatio) > 1 {
			b.WriteString("; vs bare per round:")
			for _, x := range c.RoundsRatio {
				fmt.Fprintf(&b, " %.2f", x)
			}
			fmt.Fprintf(&b, " (median %.2f×, spread %.2f–%.2f)", c.RatioMedian, c.RatioMin, c.RatioMax)
		}
		if len(c.RoundsProxyMicros) > 1 {
			b.WriteString("; proxy CPU/req per round:")
			for _, x := range c.RoundsProxyMicros {
				fmt.Fprintf(&b, " %.0f", x)
			}
			b.WriteString(" µs")
		}
		if len(c.RoundsP99Micros) > 1 {
			b.WriteString("; p99 per round:")
			for _, x := range c.RoundsP99Micros {
				fmt.Fprintf(&b, " %.2f", x/1000)
			}
			b.WriteString(" ms")
		}
		b.WriteString("\n")
	}
	for _, c := range r.Cases {
		p := c.AgainstHAProxy
		if p == nil {
			continue
		}
		fmt.Fprintf(&b, "  %-20s against %s, round by round: rps", c.Name, p.Rival)
		for _, x := range p.RoundsRatio {
			fmt.Fprintf(&b, " %.2f", x)
		}
		fmt.Fprintf(&b, " (median %.2f×); p99", p.RatioMedian)
		for _, x := range p.RoundsP99Ratio {
			fmt.Fprintf(&b, " %.2f", x)
		}
		fmt.Fprintf(&b, " (median %.2f×, spread %.2f–%.2f)\n", p.P99RatioMedian, p.P99RatioMin, p.P99RatioMax)
	}
	if slices.ContainsFunc(r.Cases, func(c CaseResult) bool { return c.Baseline == CaseGRPCBare }) {
		b.WriteString("  (the gRPC cases' ratios are to grpc-bare, the others' to bare-proxy; a gRPC request is one unary call)\n")
	}
	if s.BareBufferPool {
		b.WriteString("  (the bare proxy recycles its copy buffers, as the sidecar does)\n")
	}
	if s.BareFlush != "" && s.BareFlush != "0s" {
		fmt.Fprintf(&b, "  (the bare proxy runs with FlushInterval %s)\n", s.BareFlush)
	}
	if ol := r.OpenLoop; ol != nil && len(ol.Cases) == 2 {
		fmt.Fprintf(&b, "\nadded latency at %.0f req/s (%.0f%% of the bare proxy's max), open loop, %d workers:\n",
			ol.Rate, 100*ol.Fraction, s.OpenWorkers)
		tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "case\t  rps\t p50\t p90\t p99\t p99.9\t max\t proxy CPU/req\t cores busy\t machine busy\t failed\t dropped\t")
		for _, c := range ol.Cases {
			fmt.Fprintf(tw, "%s\t%.0f\t%s\t%s\t%s\t%s\t%s\t%s\t%.2f\t%s\t%d\t%d\t\n", c.Name, c.RPS,
				fmtMicros(c.P50Micros), fmtMicros(c.P90Micros), fmtMicros(c.P99Micros), fmtMicros(c.P999Micros), fmtMicros(c.MaxMicros),
				fmtMicros(c.CPU.ProxyMicrosPerReq), c.CPU.CoresBusy, machineBusy(c.CPU), c.Failed, c.Dropped)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		fmt.Fprintf(&b, "sidecar inbound minus bare proxy: p50 %+.0fµs, p90 %+.0fµs, p99 %+.0fµs\n",
			ol.AddedP50Micros, ol.Cases[1].P90Micros-ol.Cases[0].P90Micros, ol.AddedP99Micros)
		if len(ol.Cases[0].RoundsRPS) > 1 {
			fmt.Fprintf(&b, "(%d rounds, alternating, folded into one result per case)\n", len(ol.Cases[0].RoundsRPS))
		}
	}
	if r.contended() {
		fmt.Fprintf(&b, "\n* the machine was busier than the benchmark's own processes by more than %.2f cores during this case:\n  other work competed for the CPUs, so its figures are not comparable (-wait-idle, -retry-contended)\n", contendedMargin)
	}
	if m := r.Memory; m != nil && m.Idle != nil {
		fmt.Fprintf(&b, "\nsidecar memory (VmRSS): idle %s", fmtMiB(m.Idle.RSS))
		if m.WithIdleConns != nil {
			fmt.Fprintf(&b, "; with %d idle keep-alive connections %s (%+.1f KiB per connection)", m.IdleConns,
				fmtMiB(m.WithIdleConns.RSS), float64(m.WithIdleConns.RSS-m.Idle.RSS)/1024/float64(m.IdleConns))
		}
		if m.AfterLoad != nil {
			fmt.Fprintf(&b, "; right after the load %s (peak VmHWM %s)", fmtMiB(m.AfterLoad.RSS), fmtMiB(m.AfterLoad.HWM))
		}
		b.WriteString("\n")
	}
	fmt.Fprintf(&b, "outbound token fetches during the run: %d\n", r.OutboundTokenFetches)
	_, err := io.WriteString(w, b.String())
	return err
}

// Self returns the command that runs this executable again as a child.
func Self() ([]string, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	return []string{exe}, nil
}

// contendedMargin is how many more cores the machine may keep busy than
// the benchmark's processes before a case is marked as contended.
const contendedMargin = 0.25

// Contended reports whether something outside the benchmark kept the
// machine busy during the case.
func (u CPUUse) Contended() bool { return u.MachineBusy-u.CoresBusy > contendedMargin }

func machineBusy(u CPUUse) string {
	if u.Contended() {
		return fmt.Sprintf("%.2f*", u.MachineBusy)
	}
	return fmt.Sprintf("%.2f", u.MachineBusy)
}

func (r *Report) contended() bool {
	cases := r.Cases
	if r.OpenLoop != nil {
		cases = append(slices.Clone(cases), r.OpenLoop.Cases...)
	}
	for _, c := range cases {
		if c.CPU.Contended() {
			return true
		}
	}
	return false
}
