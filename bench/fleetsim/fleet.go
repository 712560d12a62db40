package fleetsim

import (
	"container/heap"
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/oauth2"

	"github.com/authsidecar/authsidecar/discovery"
	"github.com/authsidecar/authsidecar/inbound"
	"github.com/authsidecar/authsidecar/metrics"
	"github.com/authsidecar/authsidecar/outbound"
)

// fleet is N pods of R routes each, against one simulated provider.
type fleet struct {
	o    Options
	s    *sched
	idp  *idp
	m    *metrics.Metrics
	rng  *rand.Rand // the simulation's own draws; only on the clock's goroutine
	pods []*pod

	// invalid counts the routes without a valid token (those of pods not
	// started yet included); maxInvalid[second] is its highest value in
	// that second, and zeroAt when it last fell to 0.
	mu          sync.Mutex
	invalid     int64
	maxInvalid  []int64
	lastInvalid []int64 // its value at the last change in that second; -1: none
	zeroAt      time.Time
	// rotated counts routes whose last token was signed by the new key.
	rotated atomic.Int64
	// refused counts inbound calls with a valid token signed by the new
	// key that a pod refused (unknown kid inside the cool-down).
	refused atomic.Int64
}

// pod is one sidecar: a token cache per route and one issuer's key set,
// each with its refresh loop, as the sidecar runs them.
type pod struct {
	f      *fleet
	ctx    context.Context
	cancel context.CancelFunc
	loops  sync.WaitGroup
	// outIss is the outbound direction's discovery of the token endpoint,
	// shared by its routes as in the sidecar; the key set has its own.
	outIss  *discovery.Issuer
	routes  []*route
	keys    *inbound.SimKeySet
	clocks  []*loopClock
	stopped atomic.Bool
}

// route is one route of a pod: the real cache, and this simulation's
// view of it. It is the cache's TokenSource.
type route struct {
	p     *pod
	cache *outbound.Cache
	// fetches counts the cache's calls of Token.
	fetches atomic.Int64
	// validUntil is the expiry of the last token issued (UnixNano); 0: none.
	validUntil atomic.Int64
	rotated    atomic.Bool
	calling    atomic.Bool // callers are calling while it has no token
	// phase, in [0, 1), places its callers' calls within their period.
	phase float64
}

func newFleet(o Options, seconds int) (*fleet, error) {
	s := newSched(epoch)
	p, err := newIDP(s, seconds, o.TokenLifetime)
	if err != nil {
		return nil, err
	}
	f := &fleet{
		o: o, s: s, idp: p, m: metrics.New(prometheus.NewRegistry(), ""),
		rng:         rand.New(rand.NewPCG(o.Seed, 0x5eed)),
		maxInvalid:  make([]int64, seconds+1),
		lastInvalid: make([]int64, seconds+1),
	}
	for i := range f.lastInvalid {
		f.lastInvalid[i] = -1
	}
	f.invalid = int64(o.Pods * o.Routes)
	f.maxInvalid[0], f.lastInvalid[0] = f.invalid, f.invalid
	f.pods = make([]*pod, o.Pods)
	return f, nil
}

// epoch is when every simulation starts.
var epoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func (f *fleet) second() int {
	sec := int(f.s.now().Sub(epoch) / time.Second)
	return min(sec, len(f.maxInvalid)-1)
}

func (f *fleet) addInvalid(d int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.invalid += d
	if f.invalid == 0 {
		f.zeroAt = f.s.now()
	}
	sec := f.second()
	f.maxInvalid[sec] = max(f.maxInvalid[sec], f.invalid)
	f.lastInvalid[sec] = f.invalid
}

// noToken returns, for each second, the most routes without a valid token
// at any time in it.
func (f *fleet) noToken() []int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]int64, len(f.maxInvalid))
	cur := int64(0)
	for s := range out {
		out[s] = max(cur, f.maxInvalid[s])
		if f.lastInvalid[s] >= 0 {
			cur = f.lastInvalid[s]
		}
	}
	return out
}

// routeNames are the routes' names, the same in every pod, as the
// routes of one deployment are.
func routeName(r int) string { return fmt.Sprintf("route-%d", r) }

// startPod starts pod i now: its loops begin at once, as the sidecar's do.
func (f *fleet) startPod(i int) {
	p := &pod{f: f}
	p.ctx, p.cancel = context.WithCancel(context.Background())
	p.outIss = (&discovery.Client{HTTP: f.idp.client()}).Issuer(issuerURL)
	p.routes = make([]*route, f.o.Routes)
	for r := range p.routes {
		rt := &route{p: p, phase: f.rng.Float64()}
		rt.cache = outbound.NewCache(rt, outbound.CacheOptions{Route: routeName(r), Metrics: f.m, Clock: p.loopClock()})
		p.routes[r] = rt
	}
	p.keys = inbound.NewSimKeySet(inbound.SimKeySetOptions{
		Issuer: issuerURL, HTTP: f.idp.client(), Refresh: f.o.JWKSRefresh,
		Algorithms: []string{"ES256"}, Clock: p.loopClock(), Metrics: f.m,
	})
	f.pods[i] = p
	for _, rt := range p.routes {
		f.s.woken()
		p.loops.Go(func() { rt.cache.Run(p.ctx) })
	}
	f.s.woken()
	p.loops.Go(func() { p.keys.Run(p.ctx) })
}

func (p *pod) loopClock() *loopClock {
	c := p.f.s.loopClock()
	p.clocks = append(p.clocks, c)
	return c
}

// stopPod stops pod i, as a process exit does: its tokens are gone.
func (f *fleet) stopPod(i int) {
	p := f.pods[i]
	p.stopped.Store(true)
	p.cancel()
	p.loops.Wait()
	for _, c := range p.clocks {
		c.close()
	}
	now := f.s.now().UnixNano()
	for _, rt := range p.routes {
		if rt.validUntil.Load() > now {
			f.addInvalid(1)
		}
		if rt.rotated.Load() {
			f.rotated.Add(-1)
		}
	}
}

// Token is the route's token endpoint: the pod's discovery first (as the
// sidecar finds the endpoint), then the provider.
func (rt *route) Token(ctx context.Context) (*oauth2.Token, error) {
	rt.fetches.Add(1)
	f := rt.p.f
	if _, err := rt.p.outIss.Metadata(ctx); err != nil {
		rt.failed()
		return nil, err
	}
	tok, err := f.idp.token()
	if err != nil {
		rt.failed()
		return nil, err
	}
	rt.issued(tok)
	return tok, nil
}

func (rt *route) valid() bool { return rt.validUntil.Load() > rt.p.f.s.now().UnixNano() }

func (rt *route) issued(tok *oauth2.Token) {
	f := rt.p.f
	if !rt.valid() {
		f.addInvalid(-1)
	}
	exp := tok.Expiry.UnixNano()
	rt.validUntil.Store(exp)
	rotated := f.idp.signer.Load() == 1
	if rotated != rt.rotated.Swap(rotated) {
		if rotated {
			f.rotated.Add(1)
		} else {
			f.rotated.Add(-1)
		}
	}
	f.s.fake.AfterFunc(tok.Expiry.Sub(f.s.now()), func() {
		if rt.validUntil.Load() == exp && !rt.p.stopped.Load() {
			f.addInvalid(1)
			rt.startCallers()
		}
	})
}

func (rt *route) failed() {
	if !rt.valid() {
		rt.startCallers()
	}
}

// startCallers models the app's calls on a route without a token: each
// makes the cache fetch unless a fetch failed within the last probe
// interval. They arrive every 1/CallRate seconds, from a random phase,
// until the route has a token again.
func (rt *route) startCallers() {
	f := rt.p.f
	if f.o.CallRate <= 0 || rt.calling.Swap(true) {
		return
	}
	period := time.Duration(float64(time.Second) / f.o.CallRate)
	phase := time.Duration((1 - rt.phase) * float64(period)) // in (0, period]
	f.s.fake.AfterFunc(phase, func() { rt.call(period) })
}

func (rt *route) call(period time.Duration) {
	f := rt.p.f
	if rt.p.stopped.Load() || rt.valid() {
		rt.calling.Store(false)
		return
	}
	before := rt.fetches.Load()
	f.s.woken() // a fetch the call starts kicks the refresh loop
	_, _ = rt.cache.Token(context.Background())
	if rt.fetches.Load() == before {
		f.s.parked()
	}
	f.s.settle()
	f.s.fake.AfterFunc(period, func() { rt.call(period) })
}

// inboundCalls models the calls pods receive after a key rotation: each
// pod gets InboundRate calls a second, each carrying the token of a route
// drawn at random from the fleet, so a token signed by the new key
// reaches a pod at rate InboundRate × (share of routes holding one). Only
// the first such call per pod matters to the provider (it makes the key
// set fetch the unknown kid), and one refused inside the cool-down is
// followed by the next, so the model draws when each pod's next such call
// comes, by the cumulative hazard, and ticks once a second.
type inboundCalls struct {
	f       *fleet
	hazard  float64
	pending thresholdHeap
}

func (f *fleet) startInboundCalls() {
	ic := &inboundCalls{f: f}
	for i := range f.pods {
		ic.pending = append(ic.pending, threshold{pod: i, at: f.rng.ExpFloat64()})
	}
	heap.Init(&ic.pending)
	f.s.at(f.s.now().Add(time.Second), ic.tick)
}

func (ic *inboundCalls) tick() {
	f := ic.f
	share := float64(f.rotated.Load()) / float64(f.o.Pods*f.o.Routes)
	ic.hazard += f.o.InboundRate * share
	for len(ic.pending) > 0 && ic.pending[0].at <= ic.hazard {
		th := heap.Pop(&ic.pending).(threshold)
		p := f.pods[th.pod]
		if _, err := p.keys.VerifySignature(context.Background(), f.idp.tokens[1]); err != nil {
			f.refused.Add(1)
			heap.Push(&ic.pending, threshold{pod: th.pod, at: ic.hazard + f.rng.ExpFloat64()})
		}
	}
	if len(ic.pending) > 0 {
		f.s.at(f.s.now().Add(time.Second), ic.tick)
	}
}

type threshold struct {
	pod int
	at  float64
}

type thresholdHeap []threshold

func (h thresholdHeap) Len() int           { return len(h) }
func (h thresholdHeap) Less(i, j int) bool { return h[i].at < h[j].at }
func (h thresholdHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *thresholdHeap) Push(x any)        { *h = append(*h, x.(threshold)) }
func (h *thresholdHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}
