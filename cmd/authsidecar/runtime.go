package main

import (
	"runtime/debug"

	"github.com/KimMachineGun/automemlimit/memlimit"
)

// defaultGCPercent is the garbage collector's target when GOGC is not
// set. The sidecar's live heap is small (key sets, token caches: a few
// MiB) and what a request allocates dies with it, so at Go's default of
// 100 the collector runs every few MiB of traffic: about a sixth of the
// sidecar's CPU under load. At 400 it runs a quarter as often, for a heap
// that grows to five times the live one instead of twice (see the README's
// Performance section for both figures).
const defaultGCPercent = 400

// memoryLimitShare is the share of the container's memory limit the heap
// aims to stay under. Five times the live heap is 102 MiB with 10,000
// cached tokens, near the chart's 128 MiB limit, so in a container the
// collector works harder as the heap nears 90% of the limit instead of
// the process being killed at 100%.
const memoryLimitShare = 0.9

// tuneRuntime sets the collector's target to defaultGCPercent unless GOGC
// is set, and the soft memory limit to memoryLimitShare of what limit
// reports (the cgroup's memory limit) unless GOMEMLIMIT is set or
// AUTOMEMLIMIT is "off" (AUTOMEMLIMIT=0.8 changes the share: see
// automemlimit). Without a limit, nothing is capped.
func tuneRuntime(lookup func(string) (string, bool), limit memlimit.Provider) {
	if _, set := lookup("GOGC"); !set {
		debug.SetGCPercent(defaultGCPercent)
	}
	// An error means no limit could be read (no cgroup, no memory
	// controller): the heap is then bounded by GOGC alone, as by default.
	_, _ = memlimit.Set(memlimit.WithRatio(memoryLimitShare), memlimit.WithProvider(limit))
}
