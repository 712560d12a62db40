package fleetsim

import (
	"context"
	"runtime"
	"sync"
	"testing"
	"time"
)

// TestSchedulerRunsEachLoopAtItsOwnTime: two loops that work after every
// wake; the clock moves only once both are parked again, so each reads
// the time its timer fell due.
func TestSchedulerRunsEachLoopAtItsOwnTime(t *testing.T) {
	s := newSched(epoch)
	var mu sync.Mutex
	var woke []time.Duration
	var loops sync.WaitGroup
	ctx, cancel := context.WithCancel(context.Background())
	for _, period := range []time.Duration{3 * time.Second, 5 * time.Second} {
		c := s.loopClock()
		s.woken()
		loops.Go(func() {
			for {
				select {
				case <-ctx.Done():
					return
				case now := <-c.After(period):
					time.Sleep(time.Millisecond) // work that takes real time
					mu.Lock()
					woke = append(woke, now.Sub(epoch))
					if got := c.Now(); !got.Equal(now) {
						t.Errorf("a loop woken at %s read %s", now.Sub(epoch), got.Sub(epoch))
					}
					mu.Unlock()
				}
			}
		})
	}
	s.advanceTo(epoch.Add(10 * time.Second))
	cancel()
	loops.Wait()
	want := []time.Duration{3e9, 5e9, 6e9, 9e9, 10e9}
	if len(woke) != len(want) {
		t.Fatalf("woke at %v, want %v", woke, want)
	}
	for i := range want {
		if woke[i] != want[i] {
			t.Fatalf("woke at %v, want %v", woke, want)
		}
	}
}

// small is a fleet small enough for every test run, big enough that a
// second's count is not all noise.
var small = Options{Pods: 1000, Routes: 5, Day: 2 * time.Hour, EventAt: 90 * time.Minute, After: 40 * time.Minute, Seed: 7}

func run(t *testing.T, scenario string, o Options) *Summary {
	t.Helper()
	r, err := Run(context.Background(), scenario, o, nil)
	if err != nil {
		t.Fatal(err)
	}
	s := Summarize(r)
	t.Logf("%s: steady %.1f/s, peak %d at %s (%.2fx), JWKS per interval %d, routes without a token %d, all valid after %s, took %s",
		scenario, s.Steady, s.Peak, clockAt(s.PeakAt), s.Ratio(), s.JWKSPerInterval, s.NoToken, s.AllValidAfter, r.Wall)
	return s
}

func TestSteadyFleetAsksAtTheExpectedRateWithoutSpikes(t *testing.T) {
	t.Parallel()
	r, err := Run(context.Background(), "steady", small, nil)
	if err != nil {
		t.Fatal(err)
	}
	s := Summarize(r)
	if got, want := s.SteadyByKind[KindToken], s.ExpectedToken; got < 0.95*want || got > 1.05*want {
		t.Errorf("steady token rate %.2f/s, want within 5%% of N·R/(0.8·T) = %.2f/s", got, want)
	}
	// At N = 1,000 a second holds 3.4 requests on average, and Poisson
	// noise alone puts some second above 3 times that: the bound is
	// checked on 10-second sums here, per second at N = 10,000.
	total := make([]int32, len(r.Sent[0]))
	for k := range numKinds {
		for sec, n := range r.Sent[k] {
			total[sec] += n
		}
	}
	if peak := maxWindow(total, s.SteadyFrom, s.SteadyTo, 10); float64(peak) > 3*10*s.Steady {
		t.Errorf("%d requests in 10 s, %.1f times the steady %.1f/s, want at most 3", peak, float64(peak)/10/s.Steady, s.Steady)
	}
	if s.JWKSPerInterval > small.Pods {
		t.Errorf("%d JWKS requests in one refresh interval, want at most N = %d", s.JWKSPerInterval, small.Pods)
	}
	if s.AllValidAfter <= 0 || s.AllValidAfter > small.Defaults().Rollout+time.Second {
		t.Errorf("every route held a token %s after the start, want within the rollout", s.AllValidAfter)
	}
}

func TestOutageKeepsTokensAndComesBackWithoutAHerd(t *testing.T) {
	t.Parallel()
	s := run(t, "outage", small)
	if s.Failed == 0 {
		t.Error("no request failed while the provider was down")
	}
	if s.NoToken != 0 || s.AllValidAfter != 0 {
		t.Errorf("%d routes lost their token in a 10-minute outage of hour-long tokens (all valid %s after), want none", s.NoToken, s.AllValidAfter)
	}
	if s.Ratio() > 10 {
		t.Errorf("after the return: peak %d/s, %.1f times steady, want at most 10", s.Peak, s.Ratio())
	}
	if s.JWKSPerInterval > small.Pods {
		t.Errorf("%d JWKS requests in one refresh interval, want at most N = %d", s.JWKSPerInterval, small.Pods)
	}
}

func TestRestartAsksForEveryTokenAndKeySetOnce(t *testing.T) {
	t.Parallel()
	s := run(t, "restart", small)
	// Each pod: a discovery and a JWKS for its key set, a discovery for
	// its token endpoint, and a token per route, all in the restart
	// second, with the few refreshes that fall due in it anyway.
	if want := small.Pods * (small.Routes + 3); s.Peak < want || s.Peak > want+20 || s.PeakAt != int(small.EventAt/time.Second) {
		t.Errorf("restart peak %d at %s, want %d at %s", s.Peak, clockAt(s.PeakAt), want, clockAt(int(small.EventAt/time.Second)))
	}
	if s.AllValidAfter != 0 {
		t.Errorf("every route held a token %s after the restart, want at once", s.AllValidAfter)
	}
}

func TestRotationFetchesTheNewKeyOncePerPod(t *testing.T) {
	t.Parallel()
	s := run(t, "rotation", small)
	// Each pod fetches once for the new kid and once on its own schedule.
	if s.JWKSPerInterval > 2*small.Pods {
		t.Errorf("%d JWKS requests in one refresh interval, want at most 2N = %d", s.JWKSPerInterval, 2*small.Pods)
	}
	if s.Refused > int64(small.Pods/20) {
		t.Errorf("%d calls with the new key refused, want few", s.Refused)
	}
}

func TestAnnouncedRotationCostsNothing(t *testing.T) {
	t.Parallel()
	s := run(t, "rotation-announced", small)
	if s.JWKSPerInterval > small.Pods || s.Refused != 0 {
		t.Errorf("%d JWKS requests in an interval and %d calls refused, want at most N and none", s.JWKSPerInterval, s.Refused)
	}
}

// TestRunStopsEveryPod: a run leaves no loop behind, so that scenarios
// run one after the other do not pile up. The loops end on their own
// once the run cancels them; on a busy machine (the whole test suite at
// once) that can take a moment after Run returns, so the count is given
// a few seconds to come down.
func TestRunStopsEveryPod(t *testing.T) {
	before := runtime.NumGoroutine()
	if _, err := Run(context.Background(), "restart", Options{Pods: 50, EventAt: time.Hour, After: time.Minute}, nil); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		after := runtime.NumGoroutine()
		if after <= before+2 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines 5 s after the run, %d before", after, before)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
