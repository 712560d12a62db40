package loadbench

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// Target is what a load run sends: GET URL, with an Authorization header
// taken from Tokens (none when empty; the same one when one; in turn
// across all workers when several, so every token is used about equally).
type Target struct {
	URL    string
	Tokens []string
}

// Result is what one load run measured.
type Result struct {
	// OK counts 2xx responses; only they are in the histogram and RPS.
	OK uint64
	// Failed counts transport errors and non-2xx responses.
	Failed uint64
	// FirstFailure describes one failure, to make a broken case obvious.
	FirstFailure string
	// Dropped counts open-loop arrivals that found the queue full (the
	// generator could not keep up); they were never sent.
	Dropped uint64
	// Elapsed is the wall time from the first request to the last answer.
	Elapsed time.Duration
	Hist    *Histogram
}

// RPS is successful requests per second.
func (r *Result) RPS() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.OK) / r.Elapsed.Seconds()
}

// NewClient returns the load generator's client: keep-alive with enough
// idle connections per host for every worker, no proxy from the
// environment, no compression, bounded in time.
func NewClient(workers int, timeout time.Duration) *http.Client {
	return &http.Client{
		Timeout: timeout,
		Transport: &http.Transport{
			Proxy:               nil,
			DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
			MaxIdleConns:        2 * workers,
			MaxIdleConnsPerHost: 2 * workers,
			IdleConnTimeout:     90 * time.Second,
			DisableCompression:  true,
		},
	}
}

// caller makes one request and reads its answer to the end; a non-nil
// error says why it did not succeed. Each worker has its own.
type caller func() error

// worker sends requests for one goroutine through its caller.
type worker struct {
	call    caller
	hist    *Histogram
	ok      uint64
	failed  uint64
	failure string
}

// authHeaders are the Authorization header values of tokens, made once
// for every worker: a token is some 800 bytes, and "Bearer "+token per
// request would be a copy and two allocations in a generator that shares
// the CPUs with what it measures.
func authHeaders(tokens []string) [][]string {
	hs := make([][]string, len(tokens))
	for i, tok := range tokens {
		hs[i] = []string{"Bearer " + tok}
	}
	return hs
}

// httpCaller returns the caller of worker id: it reuses one *http.Request
// (net/http allows it once the previous response body is closed) and walks
// the Authorization values auth with a stride of workers.
func httpCaller(ctx context.Context, client *http.Client, url string, auth [][]string, id, workers int) (caller, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	next := 0
	if len(auth) > 0 {
		next = id % len(auth)
	}
	return func() error {
		if n := len(auth); n > 0 {
			// Shared by the workers, and only read: net/http does not
			// change a request's header values.
			req.Header["Authorization"] = auth[next]
			next = (next + workers) % n
		}
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		switch {
		case err != nil:
			return fmt.Errorf("reading the body: %w", err)
		case resp.StatusCode/100 != 2:
			return fmt.Errorf("status %d", resp.StatusCode)
		}
		return nil
	}, nil
}

// newWorkers makes n workers, worker i calling through mk(i).
func newWorkers(n int, mk func(id int) (caller, error)) ([]*worker, error) {
	ws := make([]*worker, n)
	for i := range ws {
		c, err := mk(i)
		if err != nil {
			return nil, err
		}
		ws[i] = &worker{call: c, hist: NewHistogram()}
	}
	return ws, nil
}

func httpWorkers(ctx context.Context, client *http.Client, t Target, n int) ([]*worker, error) {
	auth := authHeaders(t.Tokens)
	return newWorkers(n, func(id int) (caller, error) { return httpCaller(ctx, client, t.URL, auth, id, n) })
}

// do sends one request and records its latency measured from start.
func (w *worker) do(start time.Time) {
	if err := w.call(); err != nil {
		w.fail(err.Error())
		return
	}
	w.ok++
	w.hist.Record(time.Since(start))
}

func (w *worker) fail(msg string) {
	w.failed++
	if w.failure == "" {
		w.failure = msg
	}
}

func merge(workers []*worker, elapsed time.Duration) *Result {
	r := &Result{Hist: NewHistogram(), Elapsed: elapsed}
	for _, w := range workers {
		r.OK += w.ok
		r.Failed += w.failed
		if r.FirstFailure == "" {
			r.FirstFailure = w.failure
		}
		r.Hist.Merge(w.hist)
	}
	return r
}

// ClosedLoop runs workers that each send a request as soon as the previous
// one is answered, for d or until maxRequests were sent, whichever comes
// first. Its throughput is the most the system can serve at this
// concurrency.
func ClosedLoop(ctx context.Context, client *http.Client, t Target, workers int, d time.Duration, maxRequests int64) (*Result, error) {
	ctx, cancel := context.WithTimeout(ctx, d+30*time.Second)
	defer cancel()
	ws, err := httpWorkers(ctx, client, t, workers)
	if err != nil {
		return nil, err
	}
	return closedLoop(ctx, ws, d, maxRequests)
}

// closedLoop runs ws closed loop for d or maxRequests, within ctx.
func closedLoop(ctx context.Context, ws []*worker, d time.Duration, maxRequests int64) (*Result, error) {
	var budget atomic.Int64
	budget.Store(maxRequests)
	var wg sync.WaitGroup
	start := time.Now()
	deadline := start.Add(d)
	for _, w := range ws {
		wg.Go(func() {
			for ctx.Err() == nil && budget.Add(-1) >= 0 {
				now := time.Now()
				if !now.Before(deadline) {
					return
				}
				w.do(now)
			}
		})
	}
	wg.Wait()
	return merge(ws, time.Since(start)), ctx.Err()
}

// OpenLoop sends requests at a constant arrival rate for d, whatever the
// answers' speed, from a pool of workers. Each request's latency counts from
// the moment it was due, not from when a worker got to it, so a system that
// falls behind shows it in the latencies (no coordinated omission). The
// arrivals are released in batches every millisecond. An arrival that finds
// the queue full is dropped and counted.
func OpenLoop(ctx context.Context, client *http.Client, t Target, workers int, rate float64, d time.Duration) (*Result, error) {
	if rate <= 0 {
		return nil, fmt.Errorf("open loop: rate %v must be positive", rate)
	}
	ctx, cancel := context.WithTimeout(ctx, d+30*time.Second)
	defer cancel()
	ws, err := httpWorkers(ctx, client, t, workers)
	if err != nil {
		return nil, err
	}
	return openLoop(ctx, ws, rate, d)
}

// openLoop runs ws open loop at rate for d, within ctx.
func openLoop(ctx context.Context, ws []*worker, rate float64, d time.Duration) (*Result, error) {
	total := int64(rate * d.Seconds())
	// Room for a quarter second of arrivals (at least one per worker): past
	// that the generator is hopelessly behind and drops.
	queue := make(chan time.Time, max(int(rate/4), len(ws)))
	var wg sync.WaitGroup
	for _, w := range ws {
		wg.Go(func() {
			for due := range queue {
				if ctx.Err() != nil {
					continue
				}
				w.do(due)
			}
		})
	}
	var dropped uint64
	start := time.Now()
	tick := time.NewTicker(time.Millisecond)
	var sent int64
	for sent < total && ctx.Err() == nil {
		<-tick.C
		due := min(int64(time.Since(start).Seconds()*rate), total)
		for ; sent < due; sent++ {
			at := start.Add(time.Duration(float64(sent) / rate * float64(time.Second)))
			select {
			case queue <- at:
			default:
				dropped++
			}
		}
	}
	tick.Stop()
	close(queue)
	wg.Wait()
	r := merge(ws, time.Since(start))
	r.Dropped = dropped
	return r, ctx.Err()
}
