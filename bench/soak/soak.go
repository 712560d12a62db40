package soak

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/authsidecar/authsidecar/bench/loadbench"
)

// Options configure a soak. Zero values take the defaults.
type Options struct {
	// Sidecar is the authsidecar binary (see Build).
	Sidecar string
	// SidecarEnv is added to both sidecars' environments (GOGC=100, ...).
	SidecarEnv []string
	// Duration of the traffic, and its rate (requests per second, every
	// kind together), sent by Workers; at most MaxRequests in all.
	Duration    time.Duration
	Rate        float64
	Workers     int
	MaxRequests int64
	// RotateEvery is how often the provider rotates its signing key.
	RotateEvery time.Duration
	// Outage is how long the provider is down, from OutageAt (default: so
	// that the outage is centred in the run).
	Outage, OutageAt time.Duration
	// SampleEvery is how often the sidecars' resources are read; the
	// first sample at or past Warmup is the baseline of the flatness check.
	SampleEvery, Warmup time.Duration
	// Log, when set, gets a line per sample as it is taken.
	Log io.Writer
}

func (o *Options) defaults() {
	setD := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	setD(&o.Duration, 10*time.Minute)
	setD(&o.RotateEvery, 2*time.Minute)
	setD(&o.Outage, 30*time.Second)
	setD(&o.OutageAt, o.Duration/2-o.Outage/2)
	setD(&o.SampleEvery, 10*time.Second)
	setD(&o.Warmup, min(time.Minute, o.Duration/3))
	if o.Rate <= 0 {
		o.Rate = 100
	}
	if o.Workers <= 0 {
		o.Workers = 8
	}
	if o.MaxRequests <= 0 {
		o.MaxRequests = int64(o.Rate*o.Duration.Seconds()) + 1
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
}

// Usage is one sidecar process's resources at one time.
type Usage struct {
	RSS        int64 `json:"rss_bytes"`
	Goroutines int   `json:"goroutines"`
	FDs        int   `json:"fds"`
}

// Sample is both sidecars' usage at one time into the run.
type Sample struct {
	At       time.Duration
	A, B     Usage
	Requests int64
	// ValidFailures counts failed valid requests so far.
	ValidFailures int64
}

// Report is a soak's outcome.
type Report struct {
	Options Options
	Kinds   map[string]*Count
	// Requests were sent, Skipped were due while every worker was busy.
	Requests, Skipped, ValidFailures, InvalidFailures int64
	Samples                                           []Sample
	// Warm is the median of the first three samples from the warm-up on,
	// Final that of the last three.
	Warm, Final Sample
	Rotations   int
	// Provider's view: token and JWKS requests answered, and requests
	// refused while it was down.
	TokenRequests, JWKSRequests, RefusedWhileDown int64
	Elapsed                                       time.Duration
}

// Build builds ./cmd/authsidecar of the module in the working directory
// into dir, with the race detector when race is set.
func Build(ctx context.Context, dir string, race bool) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("soak: go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("soak: not inside the authsidecar module")
	}
	bin := filepath.Join(dir, "authsidecar")
	args := []string{"build", "-o", bin}
	if race {
		args = append(args, "-race")
	}
	cmd := exec.CommandContext(ctx, "go", append(args, "./cmd/authsidecar")...)
	cmd.Dir = filepath.Dir(gomod)
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("soak: go build: %w\n%s", err, out)
	}
	return bin, nil
}

// sidecar is a running sidecar process and its admin address.
type sidecar struct {
	proc  *loadbench.Process
	admin string
}

func startSidecars(ctx context.Context, bin string, extraEnv []string, idpURL, appURL string) (a, b *sidecar, outAddr, inAddr string, err error) {
	var ports [4]string
	for i := range ports {
		if ports[i], err = loadbench.FreePort(); err != nil {
			return nil, nil, "", "", err
		}
	}
	outAddr, inAddr = ports[0], ports[2]
	common := append([]string{"AUTHSIDECAR_LOG_LEVEL=warn", "AUTHSIDECAR_SHUTDOWN_GRACE=2s"}, extraEnv...)
	// Capped: envA and envB each append to it, and must not share what
	// they append.
	common = common[:len(common):len(common)]
	envB := append(common,
		"AUTHSIDECAR_INBOUND_LISTEN="+inAddr, "AUTHSIDECAR_ADMIN_LISTEN="+ports[3],
		"AUTHSIDECAR_INBOUND_UPSTREAM="+appURL, "AUTHSIDECAR_INBOUND_ISSUERS="+idpURL,
		"AUTHSIDECAR_INBOUND_AUDIENCES="+Audience, "AUTHSIDECAR_INBOUND_REQUIRED_SCOPES="+Scope,
		"AUTHSIDECAR_INBOUND_ALGORITHMS=ES256", "AUTHSIDECAR_INBOUND_JWKS_REFRESH_INTERVAL=1m")
	pb, err := loadbench.StartSidecar(ctx, bin, envB, ports[3])
	if err != nil {
		return nil, nil, "", "", fmt.Errorf("soak: sidecar B: %w", err)
	}
	envA := append(common,
		"AUTHSIDECAR_OUTBOUND_LISTEN="+outAddr, "AUTHSIDECAR_ADMIN_LISTEN="+ports[1],
		"AUTHSIDECAR_OUTBOUND_ROUTES=app", "AUTHSIDECAR_OUTBOUND_ISSUER="+idpURL,
		"AUTHSIDECAR_OUTBOUND_CLIENT_ID="+ClientID, "AUTHSIDECAR_OUTBOUND_CLIENT_SECRET="+ClientSecret,
		"AUTHSIDECAR_OUTBOUND_READY_REQUIRES_TOKENS=true",
		"AUTHSIDECAR_ROUTE_APP_URL=http://"+inAddr, "AUTHSIDECAR_ROUTE_APP_SCOPES="+Scope,
		"AUTHSIDECAR_ROUTE_APP_AUDIENCE="+Audience)
	pa, err := loadbench.StartSidecar(ctx, bin, envA, ports[1])
	if err != nil {
		pb.Stop(5 * time.Second)
		return nil, nil, "", "", fmt.Errorf("soak: sidecar A: %w", err)
	}
	return &sidecar{pa, ports[1]}, &sidecar{pb, ports[3]}, outAddr, inAddr, nil
}

// Run runs a soak.
func Run(ctx context.Context, o Options) (*Report, error) {
	o.defaults()
	if o.Sidecar == "" {
		return nil, errors.New("soak: no sidecar binary")
	}
	idp, err := StartIDP()
	if err != nil {
		return nil, err
	}
	defer idp.Close()
	app, err := StartApp()
	if err != nil {
		return nil, err
	}
	defer app.Close()
	a, b, outAddr, inAddr, err := startSidecars(ctx, o.Sidecar, o.SidecarEnv, idp.URL, app.URL)
	if err != nil {
		return nil, err
	}
	defer func() {
		a.proc.Stop(5 * time.Second)
		b.proc.Stop(5 * time.Second)
	}()
	c, err := newClient(outAddr, inAddr, o.Workers)
	if err != nil {
		return nil, err
	}
	defer c.close()
	attacker, err := newAttackerKey()
	if err != nil {
		return nil, err
	}
	life := 2*o.RotateEvery + 5*time.Minute
	t0, err := signTokens(idp, attacker, life)
	if err != nil {
		return nil, err
	}
	c.toks.Store(t0)
	r := &Report{Options: o}
	err = r.drive(ctx, o, idp, c, attacker, life, a, b)
	r.TokenRequests, r.JWKSRequests, r.RefusedWhileDown = idp.TokenRequests.Load(), idp.JWKSRequests.Load(), idp.RefusedWhileDown.Load()
	return r, err
}

// drive sends the traffic, rotates keys, takes the provider down and
// samples the sidecars until the run ends.
func (r *Report) drive(ctx context.Context, o Options, idp *IDP, c *client, attacker *ecdsa.PrivateKey, life time.Duration, a, b *sidecar) error {
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, o.Duration)
	defer cancel()
	cs := &counts{m: map[string]*Count{}}
	jobs := make(chan string)
	var wg sync.WaitGroup
	for range o.Workers {
		wg.Go(func() {
			for kind := range jobs {
				cs.add(kind, c.do(context.WithoutCancel(ctx), kind), time.Since(start))
			}
		})
	}
	tick := time.NewTicker(time.Duration(float64(time.Second) / o.Rate))
	defer tick.Stop()
	rotate := time.NewTicker(o.RotateEvery)
	defer rotate.Stop()
	sample := time.NewTicker(o.SampleEvery)
	defer sample.Stop()
	outage := time.After(o.OutageAt)
	var back <-chan time.Time
	var fatal error
	sent := int64(0)
loop:
	for sent < o.MaxRequests {
		select {
		case <-ctx.Done():
			break loop
		case <-tick.C:
			select {
			case jobs <- mix[sent%int64(len(mix))]:
				sent++
			default:
				r.Skipped++
			}
		case <-rotate.C:
			if err := idp.Rotate(); err != nil {
				fatal = err
				break loop
			}
			toks, err := signTokens(idp, attacker, life)
			if err != nil {
				fatal = err
				break loop
			}
			c.toks.Store(toks)
			r.Rotations++
		case <-outage:
			idp.SetDown(true)
			c.down.Store(true)
			back = time.After(o.Outage)
		case <-back:
			idp.SetDown(false)
			c.down.Store(false)
		case <-sample.C:
			r.sample(time.Since(start), a, b, cs)
		}
	}
	close(jobs)
	if last := r.Samples; len(last) == 0 || time.Since(start)-last[len(last)-1].At > time.Second {
		r.sample(time.Since(start), a, b, cs) // the last sample, traffic in its last moments
	}
	wg.Wait()
	idp.SetDown(false)
	r.Elapsed = time.Since(start)
	r.finish(cs)
	return fatal
}

func (r *Report) sample(at time.Duration, a, b *sidecar, cs *counts) {
	s := Sample{At: at, A: usage(a), B: usage(b)}
	cs.mu.Lock()
	for kind, k := range cs.m {
		s.Requests += k.Sent
		if Valid(kind) {
			s.ValidFailures += k.Failed
		}
	}
	cs.mu.Unlock()
	r.Samples = append(r.Samples, s)
	fmt.Fprintf(r.Options.Log, "%s\n", s)
}

func (r *Report) finish(cs *counts) {
	r.Kinds = cs.m
	for kind, k := range cs.m {
		r.Requests += k.Sent
		if Valid(kind) {
			r.ValidFailures += k.Failed
		} else {
			r.InvalidFailures += k.Failed
		}
	}
	n := len(r.Samples)
	w := n - 1
	for i, s := range r.Samples {
		if s.At >= r.Options.Warmup-time.Second {
			w = i
			break
		}
	}
	// Each end is the median of three samples: a sidecar's RSS moves by
	// a tenth between two garbage collections, and one sample taken just
	// after one would pass for the baseline.
	r.Warm = median(r.Samples[w:min(w+3, n)])
	r.Final = median(r.Samples[max(n-3, w):])
}

// median returns the samples' last time and, figure by figure, their
// median (the lower middle one of two).
func median(ss []Sample) Sample {
	out := ss[len(ss)-1]
	mid := func(f func(Sample) int64) int64 {
		v := make([]int64, len(ss))
		for i, s := range ss {
			v[i] = f(s)
		}
		slices.Sort(v)
		return v[(len(v)-1)/2]
	}
	out.A.RSS = mid(func(s Sample) int64 { return s.A.RSS })
	out.B.RSS = mid(func(s Sample) int64 { return s.B.RSS })
	out.A.Goroutines = int(mid(func(s Sample) int64 { return int64(s.A.Goroutines) }))
	out.B.Goroutines = int(mid(func(s Sample) int64 { return int64(s.B.Goroutines) }))
	out.A.FDs = int(mid(func(s Sample) int64 { return int64(s.A.FDs) }))
	out.B.FDs = int(mid(func(s Sample) int64 { return int64(s.B.FDs) }))
	return out
}

// usage reads a sidecar's resident memory and open file descriptors
// from /proc, and its goroutines from its metrics; -1 where unreadable.
func usage(sc *sidecar) Usage {
	u := Usage{RSS: -1, Goroutines: -1, FDs: -1}
	pid := sc.proc.PID()
	if m, err := loadbench.ProcessMemory(pid); err == nil {
		u.RSS = m.RSS
	}
	if fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid)); err == nil {
		u.FDs = len(fds)
	}
	u.Goroutines = goroutines(sc.admin)
	return u
}

func goroutines(admin string) int {
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
	resp, err := client.Get("http://" + admin + "/metrics")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "go_goroutines "); ok {
			n, err := strconv.ParseFloat(v, 64)
			if err == nil {
				return int(n)
			}
		}
	}
	return -1
}

func (s Sample) String() string {
	mib := func(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }
	return fmt.Sprintf("%6s  A: rss %s goroutines %d fds %d  B: rss %s goroutines %d fds %d  requests %d, valid failed %d",
		s.At.Round(time.Second), mib(s.A.RSS), s.A.Goroutines, s.A.FDs, mib(s.B.RSS), s.B.Goroutines, s.B.FDs, s.Requests, s.ValidFailures)
}

// Growth is one figure's final value over its value after the warm-up.
type Growth struct {
	Name        string
	Warm, Final float64
}

// Ratio is Final over Warm.
func (g Growth) Ratio() float64 { return g.Final / g.Warm }

// MaxRatio is the flatness bound: final at most this times the warm-up value.
const MaxRatio = 1.2

// Growths lists every figure of both sidecars.
func (r *Report) Growths() []Growth {
	var out []Growth
	for _, p := range []struct {
		name        string
		warm, final Usage
	}{{"A", r.Warm.A, r.Final.A}, {"B", r.Warm.B, r.Final.B}} {
		out = append(out,
			Growth{p.name + " rss MiB", float64(p.warm.RSS) / (1 << 20), float64(p.final.RSS) / (1 << 20)},
			Growth{p.name + " goroutines", float64(p.warm.Goroutines), float64(p.final.Goroutines)},
			Growth{p.name + " fds", float64(p.warm.FDs), float64(p.final.FDs)})
	}
	return out
}

// Flat reports whether every figure stayed within MaxRatio of its value
// after the warm-up, and names those that did not.
func (r *Report) Flat() (bool, []string) {
	var grew []string
	for _, g := range r.Growths() {
		if g.Warm <= 0 || g.Ratio() > MaxRatio {
			grew = append(grew, fmt.Sprintf("%s %.1f -> %.1f", g.Name, g.Warm, g.Final))
		}
	}
	return len(grew) == 0, grew
}

// Write prints the report.
func (r *Report) Write(w io.Writer) {
	o := r.Options
	fmt.Fprintf(w, "soak: %s at %.0f requests/s (%d workers), keys rotated every %s (%d rotations), provider down %s from %s\n",
		r.Elapsed.Round(time.Second), o.Rate, o.Workers, o.RotateEvery, r.Rotations, o.Outage, o.OutageAt)
	fmt.Fprintln(w, "\nsamples every", o.SampleEvery)
	for _, s := range r.Samples {
		fmt.Fprintln(w, s)
	}
	fmt.Fprintf(w, "\nrequests %d (skipped while every worker was busy: %d)\n", r.Requests, r.Skipped)
	for _, kind := range []string{KindOutbound, KindInbound, KindGRPCOutbound, KindGRPCInbound, KindExpired, KindForged, KindNoScope} {
		k := r.Kinds[kind]
		if k == nil {
			continue
		}
		line := fmt.Sprintf("  %-14s sent %6d  failed %d", kind, k.Sent, k.Failed)
		if k.FirstFailure != "" {
			line += "  first: " + k.FirstFailure
		}
		fmt.Fprintln(w, line)
	}
	fmt.Fprintf(w, "errors on valid traffic: %d; invalid traffic answered otherwise than refused: %d\n", r.ValidFailures, r.InvalidFailures)
	fmt.Fprintf(w, "provider: %d token requests, %d JWKS requests, %d requests refused while down\n", r.TokenRequests, r.JWKSRequests, r.RefusedWhileDown)
	fmt.Fprintf(w, "\nflatness (median of the last 3 samples / median of 3 from the warm-up at %s on; bound %.1f):\n", o.Warmup, MaxRatio)
	for _, g := range r.Growths() {
		fmt.Fprintf(w, "  %-14s %8.1f -> %8.1f  %.2f\n", g.Name, g.Warm, g.Final, g.Ratio())
	}
	if flat, grew := r.Flat(); flat {
		fmt.Fprintln(w, "flat: yes")
	} else {
		fmt.Fprintln(w, "flat: no:", strings.Join(grew, "; "))
	}
}
