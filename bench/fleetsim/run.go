package fleetsim

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"time"
)

// Options size the fleet and the runs. Zero values take the defaults.
type Options struct {
	// Pods (N) and Routes per pod (R).
	Pods, Routes int
	// TokenLifetime (T) is the lifetime of every access token.
	TokenLifetime time.Duration
	// Rollout is the window over which the pods start, each at a random
	// time in it.
	Rollout time.Duration
	// JWKSRefresh is AUTHSIDECAR_INBOUND_JWKS_REFRESH_INTERVAL.
	JWKSRefresh time.Duration
	// Day is how long the steady scenario runs.
	Day time.Duration
	// EventAt is when the other scenarios' event happens, and After how
	// long they run on once it is over.
	EventAt, After time.Duration
	// Outage is how long the provider is down in the outage scenario.
	Outage time.Duration
	// CallRate is the calls per second the app makes on each route while
	// the route has no valid token (each may start a probe fetch); 0: no
	// callers. Calls on a route with a token never reach the provider,
	// so they are not simulated.
	CallRate float64
	// InboundRate is the calls per second each pod receives, each with
	// the token of a random route of the fleet; it decides how fast
	// tokens signed by a rotated key reach the pods.
	InboundRate float64
	// Seed seeds the simulation's own draws (start times, phases); the
	// sidecar's jitter uses its own random source.
	Seed uint64
}

// Defaults returns o with zero values replaced by the defaults.
func (o Options) Defaults() Options {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	defD := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&o.Pods, 10_000)
	def(&o.Routes, 5)
	defD(&o.TokenLifetime, time.Hour)
	defD(&o.Rollout, 5*time.Minute)
	defD(&o.JWKSRefresh, 10*time.Minute)
	defD(&o.Day, 24*time.Hour)
	defD(&o.EventAt, 3*time.Hour)
	defD(&o.After, 3*time.Hour)
	defD(&o.Outage, 10*time.Minute)
	if o.CallRate < 0 {
		o.CallRate = 0
	} else if o.CallRate == 0 {
		o.CallRate = 10
	}
	if o.InboundRate <= 0 {
		o.InboundRate = 10
	}
	return o
}

// Scenarios are the scenarios Run knows, in the order they are reported.
var Scenarios = []string{"steady", "outage", "rotation", "rotation-announced", "restart"}

// Describe says what a scenario does.
func Describe(name string, o Options) string {
	switch name {
	case "steady":
		return fmt.Sprintf("a steady day: %d pods started over %s, run for %s", o.Pods, o.Rollout, o.Day)
	case "outage":
		return fmt.Sprintf("the identity provider down for %s at %s, then back", o.Outage, o.EventAt)
	case "rotation":
		return fmt.Sprintf("at %s the provider publishes a new key and signs with it at once; the old key is withdrawn a token lifetime later", o.EventAt)
	case "rotation-announced":
		return fmt.Sprintf("the provider publishes a new key %s before it signs with it, at %s", announce(o), o.EventAt)
	case "restart":
		return fmt.Sprintf("at %s every pod is restarted at the same instant", o.EventAt)
	}
	return ""
}

// Result is one scenario's run: what the provider received each
// simulated second, and the summary.
type Result struct {
	Scenario string
	Options  Options
	// Sent[kind][s] counts the requests of kind sent in second s, Failed
	// those of them the provider did not answer (it was down).
	Sent, Failed [numKinds][]int32
	// NoToken[s] is the most routes without a valid token during second s.
	NoToken []int64
	// EventAt and EventEnd are the event's start and end, in seconds
	// (both 0 for the steady scenario).
	EventAt, EventEnd int
	// AllValidAt is when every route last came to hold a valid token, in
	// seconds (-1: some route had none at the end).
	AllValidAt float64
	// Refused counts calls with a valid token signed by the rotated key
	// that a pod refused (unknown kid inside the cool-down).
	Refused int64
	// Wall is the simulation's own run time, HeapMiB the Go heap in use at
	// its peak load (all pods running).
	Wall    time.Duration
	HeapMiB float64
}

// Run runs scenario name with o (defaults applied). progress, when not
// nil, is called with the simulated time every simulated hour.
func Run(ctx context.Context, name string, o Options, progress func(time.Duration)) (*Result, error) {
	o = o.Defaults()
	if !slices.Contains(Scenarios, name) {
		return nil, fmt.Errorf("fleetsim: unknown scenario %q (known: %v)", name, Scenarios)
	}
	length := o.EventAt + o.Outage + o.After
	if name == "steady" {
		length = o.Day
	}
	seconds := int(length / time.Second)
	began := time.Now()
	f, err := newFleet(o, seconds)
	if err != nil {
		return nil, err
	}
	res := &Result{Scenario: name, Options: o}
	for i := range o.Pods {
		at := epoch.Add(time.Duration(f.rng.Float64() * float64(o.Rollout)))
		f.s.at(at, func() { f.startPod(i) })
	}
	f.schedule(name, res)
	var heap runtime.MemStats
	for t := time.Duration(0); t < length; {
		if err := ctx.Err(); err != nil {
			f.stopAll()
			return nil, err
		}
		t = min(t+time.Hour, length)
		f.s.advanceTo(epoch.Add(t))
		if res.HeapMiB == 0 && t >= o.Rollout {
			runtime.GC()
			runtime.ReadMemStats(&heap)
			res.HeapMiB = float64(heap.HeapInuse) / (1 << 20)
		}
		if progress != nil {
			progress(t)
		}
	}
	res.AllValidAt = -1
	f.mu.Lock()
	if f.invalid == 0 {
		res.AllValidAt = f.zeroAt.Sub(epoch).Seconds()
	}
	f.mu.Unlock()
	res.Refused = f.refused.Load()
	f.collect(res)
	f.stopAll()
	res.Wall = time.Since(began)
	return res, nil
}

// schedule sets up the scenario's event.
func (f *fleet) schedule(name string, res *Result) {
	o := f.o
	at := epoch.Add(o.EventAt)
	switch name {
	case "outage":
		res.EventAt, res.EventEnd = int(o.EventAt/time.Second), int((o.EventAt+o.Outage)/time.Second)
		f.s.at(at, func() { f.idp.down.Store(true) })
		f.s.at(at.Add(o.Outage), func() { f.idp.down.Store(false) })
	case "rotation", "rotation-announced":
		res.EventAt, res.EventEnd = int(o.EventAt/time.Second), int(o.EventAt/time.Second)
		if name == "rotation-announced" {
			f.s.at(at.Add(-announce(o)), func() { must(f.idp.publish(1, 0)) })
		}
		f.s.at(at, func() {
			must(f.idp.publish(1, 0))
			f.idp.signer.Store(1)
			f.startInboundCalls()
		})
		f.s.at(at.Add(o.TokenLifetime+time.Minute), func() { must(f.idp.publish(1)) })
	case "restart":
		res.EventAt, res.EventEnd = int(o.EventAt/time.Second), int(o.EventAt/time.Second)
		f.s.at(at, func() {
			for i := range f.pods {
				f.stopPod(i)
			}
			for i := range f.pods {
				f.startPod(i)
			}
		})
	}
}

// announce is how long before it signs the announced rotation's key is
// published: past the longest wait between two key refreshes.
func announce(o Options) time.Duration { return o.JWKSRefresh * 3 / 2 }

func must(err error) {
	if err != nil {
		panic(err)
	}
}

func (f *fleet) stopAll() {
	for i, p := range f.pods {
		if p != nil && !p.stopped.Load() {
			f.stopPod(i)
		}
	}
}

func (f *fleet) collect(res *Result) {
	for k := range numKinds {
		res.Sent[k] = make([]int32, len(f.idp.sent[k]))
		res.Failed[k] = make([]int32, len(f.idp.sent[k]))
		for s := range f.idp.sent[k] {
			res.Sent[k][s] = f.idp.sent[k][s].Load()
			res.Failed[k][s] = f.idp.failed[k][s].Load()
		}
	}
	res.NoToken = f.noToken()
}
