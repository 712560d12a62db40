package clock

import (
	"testing"
	"time"
)

var epoch = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func TestFakeFiresTimersInOrderAtTheirOwnTime(t *testing.T) {
	c := NewFake(epoch)
	var fired []string
	at := func(name string) func() {
		return func() { fired = append(fired, name+"@"+c.Now().Sub(epoch).String()) }
	}
	c.AfterFunc(3*time.Second, at("c"))
	c.AfterFunc(time.Second, func() {
		at("a")()
		c.AfterFunc(time.Second, at("b")) // due at 2s, before c
	})
	stop := c.AfterFunc(2*time.Second, at("stopped"))
	if !stop() || stop() {
		t.Fatal("stop: want true the first time, false after")
	}
	ch := c.After(5 * time.Second)
	c.Advance(4 * time.Second)
	want := []string{"a@1s", "b@2s", "c@3s"}
	if len(fired) != len(want) {
		t.Fatalf("fired %v, want %v", fired, want)
	}
	for i := range want {
		if fired[i] != want[i] {
			t.Fatalf("fired %v, want %v", fired, want)
		}
	}
	if got := c.Now().Sub(epoch); got != 4*time.Second {
		t.Errorf("Now = epoch+%s, want epoch+4s", got)
	}
	select {
	case <-ch:
		t.Fatal("the 5s After fired at 4s")
	default:
	}
	if next, ok := c.NextTimer(); !ok || !next.Equal(epoch.Add(5*time.Second)) {
		t.Errorf("NextTimer = %v %v, want epoch+5s", next, ok)
	}
	c.Advance(time.Second)
	if got := <-ch; !got.Equal(epoch.Add(5 * time.Second)) {
		t.Errorf("After delivered %v, want epoch+5s", got)
	}
	if n := c.Pending(); n != 0 {
		t.Errorf("Pending = %d, want 0", n)
	}
}

func TestFakeReportsAfterTimers(t *testing.T) {
	c := NewFake(epoch)
	var armed []time.Duration
	c.OnAfter(func(d time.Duration) { armed = append(armed, d) })
	c.After(time.Minute)
	c.AfterFunc(time.Hour, func() {})
	if len(armed) != 1 || armed[0] != time.Minute {
		t.Errorf("armed = %v, want [1m0s]: only After timers are reported", armed)
	}
}
