package fleetsim

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/authsidecar/authsidecar/internal/clock"
)

// sched runs the fleet's background loops (each route's token refresh,
// each pod's key refresh) on one virtual clock, deterministically.
//
// Every loop waits on at most one After timer at a time. A loop is busy
// from the moment something wakes it (its timer fires, a caller's fetch
// kicks it, it starts) until it calls After again; the virtual clock moves
// only when no loop is busy. So a loop woken at t does all its work,
// fetches included, at t, whatever the Go scheduler does, and a simulated
// day takes as long as its events take, with no real sleep.
//
// Everything the simulation does itself (pod starts, callers, the
// identity provider going down) runs as AfterFunc timers of the virtual
// clock on the goroutine that advances it, and waits for the loops it
// woke to be parked again before the clock moves on.
type sched struct {
	fake  *clock.Fake
	busy  atomic.Int64
	quiet chan struct{}
}

func newSched(start time.Time) *sched {
	return &sched{fake: clock.NewFake(start), quiet: make(chan struct{}, 1)}
}

func (s *sched) now() time.Time { return s.fake.Now() }

// woken counts a loop as busy.
func (s *sched) woken() { s.busy.Add(1) }

// parked counts a busy loop as waiting again.
func (s *sched) parked() {
	if s.busy.Add(-1) == 0 {
		select {
		case s.quiet <- struct{}{}:
		default:
		}
	}
}

// settle waits until no loop is busy.
func (s *sched) settle() {
	for s.busy.Load() != 0 {
		<-s.quiet
	}
}

// at runs f at t (or now, if t has passed) on the clock's goroutine, and
// settles after it.
func (s *sched) at(t time.Time, f func()) {
	s.fake.AfterFunc(t.Sub(s.now()), func() {
		f()
		s.settle()
	})
}

// advanceTo moves the clock to t, running every timer that falls due on
// the way at its own time.
func (s *sched) advanceTo(t time.Time) {
	s.settle()
	s.fake.Advance(t.Sub(s.now()))
	s.settle()
}

// loopClock is the clock of one loop: the shared virtual clock, with an
// After that tells the scheduler the loop is parked.
type loopClock struct {
	s      *sched
	mu     sync.Mutex
	stop   func() bool // the timer of the last After
	closed bool
}

func (s *sched) loopClock() *loopClock { return &loopClock{s: s} }

func (c *loopClock) Now() time.Time { return c.s.fake.Now() }

func (c *loopClock) AfterFunc(d time.Duration, f func()) func() bool {
	return c.s.fake.AfterFunc(d, f)
}

// After parks the loop until d has passed. A loop that calls After again
// was woken by something else (a kick) and gave up on its last timer, which
// is stopped so that it cannot count the loop busy once more.
func (c *loopClock) After(d time.Duration) <-chan time.Time {
	ch := make(chan time.Time, 1)
	c.mu.Lock()
	if c.stop != nil {
		c.stop()
	}
	if c.closed {
		c.mu.Unlock()
		c.s.parked()
		return ch
	}
	c.stop = c.s.fake.AfterFunc(d, func() {
		c.s.woken()
		ch <- c.s.fake.Now()
		c.s.settle()
	})
	c.mu.Unlock()
	c.s.parked()
	return ch
}

var _ clock.Clock = (*loopClock)(nil)

// close stops the timer of a loop that has returned.
func (c *loopClock) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	if c.stop != nil {
		c.stop()
	}
}
