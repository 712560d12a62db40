// Package clock is the time source the sidecar's background work runs on:
// the real clock in production, a virtual one in tests and simulations, so
// that expiry, refresh, backoff and cool-downs are driven without sleeping.
package clock

import "time"

// Clock tells the time and sets timers.
type Clock interface {
	Now() time.Time
	// After is time.After.
	After(d time.Duration) <-chan time.Time
	// AfterFunc is time.AfterFunc; it returns the timer's Stop.
	AfterFunc(d time.Duration, f func()) (stop func() bool)
}

// Real is the system clock.
var Real Clock = realClock{}

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

// After does not leak: since Go 1.23 a timer nobody references any more
// is collected even if it has not fired.
func (realClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

func (realClock) AfterFunc(d time.Duration, f func()) func() bool {
	return time.AfterFunc(d, f).Stop
}

// OrReal returns c, or Real when c is nil.
func OrReal(c Clock) Clock {
	if c == nil {
		return Real
	}
	return c
}
