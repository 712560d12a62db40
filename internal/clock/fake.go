package clock

import (
	"container/heap"
	"sync"
	"sync/atomic"
	"time"
)

// Fake is a virtual clock. Time moves only when Advance is called, which
// fires the timers that fall due, one at a time and in time order. It is
// safe for concurrent use.
type Fake struct {
	mu     sync.Mutex
	now    time.Time
	seq    uint64
	timers timerHeap
	// armed, when set, is told the duration of every After timer, so that
	// a test can wait until a background loop has gone to sleep.
	armed func(time.Duration)
}

type fakeTimer struct {
	at      time.Time
	seq     uint64         // ties are fired in the order the timers were set
	ch      chan time.Time // After's
	f       func()         // AfterFunc's
	stopped atomic.Bool
}

// NewFake returns a virtual clock reading start.
func NewFake(start time.Time) *Fake { return &Fake{now: start} }

// OnAfter makes f be called with the duration of every After timer set
// from now on.
func (c *Fake) OnAfter(f func(time.Duration)) {
	c.mu.Lock()
	c.armed = f
	c.mu.Unlock()
}

// Now returns the virtual time.
func (c *Fake) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// After returns a channel that receives the time once it is d later.
func (c *Fake) After(d time.Duration) <-chan time.Time {
	ch := make(chan time.Time, 1)
	c.mu.Lock()
	c.add(&fakeTimer{at: c.now.Add(d), ch: ch})
	armed := c.armed
	c.mu.Unlock()
	if armed != nil {
		armed(d)
	}
	return ch
}

// AfterFunc runs f, on the goroutine that calls Advance, once it is d
// later.
func (c *Fake) AfterFunc(d time.Duration, f func()) func() bool {
	t := &fakeTimer{f: f}
	c.mu.Lock()
	t.at = c.now.Add(d)
	c.add(t)
	c.mu.Unlock()
	return func() bool { return !t.stopped.Swap(true) }
}

func (c *Fake) add(t *fakeTimer) {
	c.seq++
	t.seq = c.seq
	heap.Push(&c.timers, t)
}

// Advance moves the clock forward by d, firing every timer that falls due
// on the way at its own time: a timer set by one that fires is fired too
// if it falls due within d.
func (c *Fake) Advance(d time.Duration) {
	c.mu.Lock()
	end := c.now.Add(d)
	c.mu.Unlock()
	for c.fireNext(end) {
	}
	c.mu.Lock()
	if c.now.Before(end) {
		c.now = end
	}
	c.mu.Unlock()
}

// NextTimer returns when the earliest pending timer falls due, and false
// when none is pending.
func (c *Fake) NextTimer() (time.Time, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.dropStopped()
	if len(c.timers) == 0 {
		return time.Time{}, false
	}
	return c.timers[0].at, true
}

// Pending returns the number of timers not yet fired or stopped.
func (c *Fake) Pending() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, t := range c.timers {
		if !t.stopped.Load() {
			n++
		}
	}
	return n
}

// fireNext fires the earliest timer due at or before end, moving the
// clock to its time, and reports whether there was one.
func (c *Fake) fireNext(end time.Time) bool {
	c.mu.Lock()
	c.dropStopped()
	if len(c.timers) == 0 || c.timers[0].at.After(end) {
		c.mu.Unlock()
		return false
	}
	t := heap.Pop(&c.timers).(*fakeTimer)
	if t.at.After(c.now) {
		c.now = t.at
	}
	now := c.now
	c.mu.Unlock()
	if t.f != nil {
		if !t.stopped.Swap(true) {
			t.f()
		}
		return true
	}
	t.ch <- now
	return true
}

func (c *Fake) dropStopped() {
	for len(c.timers) > 0 && c.timers[0].f != nil && c.timers[0].stopped.Load() {
		heap.Pop(&c.timers)
	}
}

type timerHeap []*fakeTimer

func (h timerHeap) Len() int { return len(h) }
func (h timerHeap) Less(i, j int) bool {
	if !h[i].at.Equal(h[j].at) {
		return h[i].at.Before(h[j].at)
	}
	return h[i].seq < h[j].seq
}
func (h timerHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *timerHeap) Push(x any)   { *h = append(*h, x.(*fakeTimer)) }
func (h *timerHeap) Pop() any {
	old := *h
	t := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return t
}
