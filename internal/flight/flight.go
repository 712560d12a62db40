// Package flight shares one fetch among every caller that needs its result
// at the same time: one token request, one key set download, one
// introspection call, however many requests wait for it.
package flight

import (
	"context"
	"time"

	"golang.org/x/sync/singleflight"
)

// Group coalesces calls by key. The zero Group is ready to use.
type Group[T any] struct {
	g singleflight.Group
	// Joined, when set, is called once a caller has started or joined the
	// call for its key: tests use it to know that every caller is in.
	Joined func()
}

// Do runs fn once for all callers of key that overlap, and returns its
// result to each. fn runs on a context of its own: it keeps ctx's values
// but not its cancellation, since one caller giving up must not fail the
// others waiting for the same result, and it is bounded by timeout. ctx
// bounds only this caller's wait; when it ends first, Do returns ctx's
// error and fn goes on for the others.
func (g *Group[T]) Do(ctx context.Context, key string, timeout time.Duration, fn func(context.Context) (T, error)) (T, error) {
	ch := g.g.DoChan(key, func() (any, error) {
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
		defer cancel()
		return fn(fctx)
	})
	if g.Joined != nil {
		g.Joined()
	}
	select {
	case res := <-ch:
		v, _ := res.Val.(T)
		return v, res.Err
	case <-ctx.Done():
		var zero T
		return zero, ctx.Err()
	}
}
