package main

import (
	"math"
	"os"
	"runtime/debug"
	"testing"

	"github.com/KimMachineGun/automemlimit/memlimit"
)

// restoreRuntime puts the collector's settings back after a test.
func restoreRuntime(t *testing.T) {
	gc, limit := debug.SetGCPercent(100), debug.SetMemoryLimit(-1)
	t.Cleanup(func() {
		debug.SetGCPercent(gc)
		debug.SetMemoryLimit(limit)
	})
}

// unsetenv removes names from the environment for the test.
func unsetenv(t *testing.T, names ...string) {
	for _, n := range names {
		t.Setenv(n, "") // restored after the test
		os.Unsetenv(n)
	}
}

func lookupIn(env map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := env[k]; return v, ok }
}

func TestGCTargetDefaultsTo400UnlessGOGCIsSet(t *testing.T) {
	restoreRuntime(t)
	for _, c := range []struct {
		name string
		env  map[string]string
		want int
	}{
		{"GOGC unset", nil, defaultGCPercent},
		{"GOGC set", map[string]string{"GOGC": "100"}, 100},
		{"GOGC=off", map[string]string{"GOGC": "off"}, 100},
		{"only GOMEMLIMIT set", map[string]string{"GOMEMLIMIT": "64MiB"}, defaultGCPercent},
	} {
		debug.SetGCPercent(100)
		tuneRuntime(lookupIn(c.env), memlimit.Limit(0))
		if got := debug.SetGCPercent(100); got != c.want {
			t.Errorf("%s: GC percent %d, want %d", c.name, got, c.want)
		}
	}
}

func TestTheHeapStaysUnderNinetyPercentOfTheContainersLimit(t *testing.T) {
	restoreRuntime(t)
	unsetenv(t, "GOMEMLIMIT", "AUTOMEMLIMIT")
	debug.SetMemoryLimit(math.MaxInt64)
	tuneRuntime(lookupIn(nil), memlimit.Limit(128<<20))
	share := memoryLimitShare
	if got, want := debug.SetMemoryLimit(-1), int64(share*(128<<20)); got != want {
		t.Errorf("memory limit %d with a 128 MiB container, want %d", got, want)
	}
}

func TestMemoryLimitSetByTheOperatorWins(t *testing.T) {
	restoreRuntime(t)
	for _, c := range []struct{ name, gomemlimit, auto string }{
		{"GOMEMLIMIT set", "64MiB", ""},
		{"AUTOMEMLIMIT=off", "", "off"},
	} {
		unsetenv(t, "GOMEMLIMIT", "AUTOMEMLIMIT")
		if c.gomemlimit != "" {
			t.Setenv("GOMEMLIMIT", c.gomemlimit)
		}
		if c.auto != "" {
			t.Setenv("AUTOMEMLIMIT", c.auto)
		}
		debug.SetMemoryLimit(math.MaxInt64)
		tuneRuntime(lookupIn(nil), memlimit.Limit(128<<20))
		if got := debug.SetMemoryLimit(-1); got != math.MaxInt64 {
			t.Errorf("%s: memory limit %d, want it left alone", c.name, got)
		}
	}
}

func TestNoContainerLimitCapsNothing(t *testing.T) {
	restoreRuntime(t)
	unsetenv(t, "GOMEMLIMIT", "AUTOMEMLIMIT")
	tuneRuntime(lookupIn(nil), func() (uint64, error) { return 0, memlimit.ErrNoLimit })
	if got := debug.SetMemoryLimit(-1); got != math.MaxInt64 {
		t.Errorf("memory limit %d without a container limit, want none", got)
	}
}
