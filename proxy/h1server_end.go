package proxy

import (
	"context"
	"sync"
)

// requestEnd is what runs when a request the front serves ends: its
// context's cancel, then the hooks h1Client registered through afterDone.
//
// context.AfterFunc on the request's context costs a context of its own
// and, on the request context, a map of children made for that one
// child: about 380 bytes a request, a sixteenth of the sidecar's
// garbage. Here the connection keeps two slots for the hooks of the
// request it serves.
type requestEnd struct {
	mu     sync.Mutex
	done   <-chan struct{} // the running request's ctx.Done()
	cancel context.CancelFunc
	ended  bool
	hooks  [2]endSlot
	// seq numbers the connection's hooks, so that a Stop finds its own
	// in a slot, never one that took the slot after it.
	seq uint64
}

type endSlot struct {
	id uint64
	f  func()
}

// frontConnKey is the key of the *frontConn in its requests' contexts.
type frontConnKey struct{}

// begin makes ctx, with cancel, the running request's context.
func (e *requestEnd) begin(ctx context.Context, cancel context.CancelFunc) {
	done := ctx.Done()
	e.mu.Lock()
	e.done, e.cancel, e.ended = done, cancel, false
	e.mu.Unlock()
}

// end cancels the running request's context and runs its hooks, once.
func (e *requestEnd) end() {
	e.mu.Lock()
	if e.ended {
		e.mu.Unlock()
		return
	}
	e.ended = true
	cancel, hooks := e.cancel, e.hooks
	e.hooks = [2]endSlot{}
	e.mu.Unlock()
	// The context first: a hook may look at its Err, as one that
	// context.AfterFunc runs can.
	cancel()
	for _, h := range hooks {
		if h.f != nil {
			h.f()
		}
	}
}

// endHook is a registration of afterDone: in a connection's slots (e
// set), or with context.AfterFunc (stop set).
type endHook struct {
	e    *requestEnd
	id   uint64
	slot int // -1: the context had ended, f ran at once
	stop func() bool
}

// afterDone arranges for f to run once ctx is done, as
// context.AfterFunc(ctx, f) does, except that f may run on the goroutine
// that ends the context. When ctx ends with a request the front serves
// (it is that request's context, or one that only adds values to it), f
// takes one of the connection's slots; otherwise context.AfterFunc runs
// it.
func afterDone(ctx context.Context, f func()) endHook {
	if c, ok := ctx.Value(frontConnKey{}).(*frontConn); ok {
		if h, ok := c.end.hook(ctx.Done(), f); ok {
			return h
		}
	}
	return endHook{stop: context.AfterFunc(ctx, f)}
}

// hook takes a slot for f when done is the running request's: only then
// does the context end when the request does, and with nothing else.
func (e *requestEnd) hook(done <-chan struct{}, f func()) (endHook, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if done == nil || done != e.done {
		return endHook{}, false
	}
	if e.ended {
		go f()
		return endHook{e: e, slot: -1}, true
	}
	for i := range e.hooks {
		if e.hooks[i].f == nil {
			e.seq++
			e.hooks[i] = endSlot{id: e.seq, f: f}
			return endHook{e: e, id: e.seq, slot: i}, true
		}
	}
	return endHook{}, false
}

// Stop stops f from running. It reports false when f has run or runs
// now: the context ended.
func (h endHook) Stop() bool {
	if h.e == nil {
		return h.stop()
	}
	e := h.e
	e.mu.Lock()
	defer e.mu.Unlock()
	if h.slot < 0 || e.hooks[h.slot].id != h.id {
		return false // ran, or stopped before
	}
	e.hooks[h.slot] = endSlot{}
	return true
}
