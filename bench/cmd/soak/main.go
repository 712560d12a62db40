// Command soak runs the built authsidecar for a while on loopback with
// mixed traffic both ways while the identity provider rotates keys and goes
// down, and reports failures of valid traffic and whether the sidecars'
// memory, goroutines and file descriptors stay flat. See bench/soak.
//
//	go run ./bench/cmd/soak -duration 10m
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/authsidecar/authsidecar/bench/soak"
)

func main() { os.Exit(run()) }

func run() int {
	var o soak.Options
	flag.StringVar(&o.Sidecar, "sidecar", "", "authsidecar binary (default: go build ./cmd/authsidecar into a temporary directory)")
	flag.DurationVar(&o.Duration, "duration", 10*time.Minute, "how long the traffic runs")
	flag.Float64Var(&o.Rate, "rate", 100, "requests per second, every kind together")
	flag.IntVar(&o.Workers, "workers", 8, "concurrent requests at most")
	flag.Int64Var(&o.MaxRequests, "max-requests", 0, "cap on requests (default: rate × duration)")
	flag.DurationVar(&o.RotateEvery, "rotate-every", 2*time.Minute, "how often the identity provider rotates its signing key")
	flag.DurationVar(&o.Outage, "outage", 30*time.Second, "how long the identity provider is down")
	flag.DurationVar(&o.OutageAt, "outage-at", 0, "when the outage starts (default: centred in the run)")
	flag.DurationVar(&o.SampleEvery, "sample-every", 10*time.Second, "how often the sidecars' resources are read")
	flag.DurationVar(&o.Warmup, "warmup", 0, "the baseline of the flatness check is the first sample past this (default: 1m, or a third of the run)")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if o.Sidecar == "" {
		dir, err := os.MkdirTemp("", "soak-")
		if err != nil {
			fmt.Fprintln(os.Stderr, "soak:", err)
			return 1
		}
		defer os.RemoveAll(dir)
		fmt.Fprintln(os.Stderr, "soak: building ./cmd/authsidecar")
		if o.Sidecar, err = soak.Build(ctx, dir, false); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	o.Log = os.Stderr
	r, err := soak.Run(ctx, o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "soak:", err)
		if r == nil {
			return 1
		}
	}
	r.Write(os.Stdout)
	if flat, _ := r.Flat(); r.ValidFailures > 0 || r.InvalidFailures > 0 || !flat || err != nil {
		return 1
	}
	return 0
}
