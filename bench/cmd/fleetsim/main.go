// Command fleetsim simulates a fleet of authsidecar pods against one
// identity provider on a virtual clock and reports what the fleet asks of
// the provider, second by simulated second. See bench/fleetsim.
//
//	go run ./bench/cmd/fleetsim                      # every scenario, N=10,000, R=5
//	go run ./bench/cmd/fleetsim -pods 1000 -scenarios steady,outage -plots /tmp
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/authsidecar/authsidecar/bench/fleetsim"
)

func main() { os.Exit(run()) }

func run() int {
	var o fleetsim.Options
	flag.IntVar(&o.Pods, "pods", 10_000, "pods in the fleet (N)")
	flag.IntVar(&o.Routes, "routes", 5, "outbound routes per pod (R)")
	flag.DurationVar(&o.TokenLifetime, "token-lifetime", time.Hour, "access token lifetime (T)")
	flag.DurationVar(&o.Rollout, "rollout", 5*time.Minute, "window over which the pods start")
	flag.DurationVar(&o.JWKSRefresh, "jwks-refresh", 10*time.Minute, "AUTHSIDECAR_INBOUND_JWKS_REFRESH_INTERVAL")
	flag.DurationVar(&o.Day, "day", 24*time.Hour, "length of the steady scenario")
	flag.DurationVar(&o.EventAt, "event-at", 3*time.Hour, "when the other scenarios' event happens")
	flag.DurationVar(&o.After, "after", 3*time.Hour, "how long they run on after it")
	flag.DurationVar(&o.Outage, "outage", 10*time.Minute, "how long the identity provider is down in the outage scenario")
	flag.Float64Var(&o.CallRate, "call-rate", 10, "calls per second the app makes on a route while it has no token (-1: none)")
	flag.Float64Var(&o.InboundRate, "inbound-rate", 10, "calls per second each pod receives (how fast a rotated key's tokens reach the pods)")
	flag.Uint64Var(&o.Seed, "seed", 1, "seed of the simulation's own draws")
	scenarios := flag.String("scenarios", strings.Join(fleetsim.Scenarios, ","), "comma-separated scenarios")
	plots := flag.String("plots", "", "directory to write fleetsim-<scenario>.png into (none when empty)")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var sums []*fleetsim.Summary
	for _, name := range strings.Split(*scenarios, ",") {
		fmt.Fprintf(os.Stderr, "fleetsim: %s: %s\n", name, fleetsim.Describe(name, o.Defaults()))
		r, err := fleetsim.Run(ctx, name, o, func(t time.Duration) { fmt.Fprintf(os.Stderr, "\r  simulated %s", t) })
		fmt.Fprintln(os.Stderr)
		if err != nil {
			fmt.Fprintln(os.Stderr, "fleetsim:", err)
			return 1
		}
		s := fleetsim.Summarize(r)
		sums = append(sums, s)
		fmt.Fprintf(os.Stderr, "  took %s, Go heap %.0f MiB with every pod running\n", r.Wall.Round(100*time.Millisecond), r.HeapMiB)
		if *plots != "" {
			path := filepath.Join(*plots, "fleetsim-"+name+".png")
			if err := fleetsim.WritePlot(path, r, s); err != nil {
				fmt.Fprintln(os.Stderr, "fleetsim:", err)
				return 1
			}
			fmt.Fprintln(os.Stderr, "  plot:", path)
		}
	}
	if err := fleetsim.WriteTable(os.Stdout, sums); err != nil {
		fmt.Fprintln(os.Stderr, "fleetsim:", err)
		return 1
	}
	fmt.Printf("\nexpected steady token rate N·R/(0.8·T) = %.1f/s, JWKS N/interval = %.1f/s\n", sums[0].ExpectedToken, sums[0].ExpectedJWKS)
	for _, s := range sums {
		fmt.Printf("%s: steady token %.2f/s (%+.1f%% of expected), JWKS %.2f/s, discovery %.2f/s; requests refused while down %d; new-key calls refused %d\n",
			s.Scenario, s.SteadyByKind[fleetsim.KindToken], 100*(s.SteadyByKind[fleetsim.KindToken]/s.ExpectedToken-1),
			s.SteadyByKind[fleetsim.KindJWKS], s.SteadyByKind[fleetsim.KindDiscovery], s.Failed, s.Refused)
	}
	if rss, hwm, err := selfMemory(); err == nil {
		fmt.Printf("process memory: RSS %.0f MiB now, peak (VmHWM) %.0f MiB\n", rss, hwm)
	}
	return 0
}

// selfMemory reads VmRSS and VmHWM from /proc/self/status, in MiB.
func selfMemory() (rss, hwm float64, err error) {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, _ := strings.Cut(sc.Text(), ":")
		var kb float64
		if _, err := fmt.Sscanf(strings.TrimSpace(v), "%f kB", &kb); err != nil {
			continue
		}
		switch k {
		case "VmRSS":
			rss = kb / 1024
		case "VmHWM":
			hwm = kb / 1024
		}
	}
	return rss, hwm, sc.Err()
}
