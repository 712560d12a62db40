package proxy

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync/atomic"
	"testing"
	"time"
)

type ctxKey string

// TestAfterDoneTakesTheConnectionsSlots checks afterDone on the contexts of
// requests the front serves: a hook on the request's context, or on one
// that only adds values, takes a slot of the connection and runs when the
// request ends; a context that can end on its own, a third hook and a
// hook on an earlier request's context go to context.AfterFunc; and Stop
// reports false exactly when the hook ran.
func TestAfterDoneTakesTheConnectionsSlots(t *testing.T) {
	type finding struct{ what, err string }
	findings := make(chan finding, 64)
	check := func(what string, ok bool, format string, args ...any) {
		if !ok {
			findings <- finding{what, fmt.Sprintf(format, args...)}
		}
	}
	var earlier context.Context
	var earlierRan atomic.Int32
	var ranAtEnd atomic.Int32
	_, addr := listenFront(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := context.WithValue(r.Context(), ctxKey("k"), "v")
		switch r.URL.Path {
		case "/first":
			earlier = ctx
			h := afterDone(ctx, func() { earlierRan.Add(1) })
			check("first", h.e != nil, "a hook on a value context of the request went to context.AfterFunc")
		case "/second":
			check("earlier", earlierRan.Load() == 1, "the first request's hook ran %d times at its end", earlierRan.Load())
			// A goroutine of the first request's, calling out late.
			ran := make(chan struct{})
			h := afterDone(earlier, func() { close(ran) })
			check("earlier", h.e == nil, "a hook on an ended request's context took a slot of the next one")
			<-ran // the first request's context is done: it runs at once

			stopped := afterDone(ctx, func() { check("stopped", false, "a stopped hook ran") })
			check("stopped", stopped.e != nil && stopped.Stop(), "Stop before the end did not stop the hook")
			check("stopped", !stopped.Stop(), "a second Stop reported true")
			// The freed slot goes to the next hook, which the first
			// hook's Stop must leave alone.
			next := afterDone(ctx, func() { ranAtEnd.Add(1) })
			check("stopped", next.slot == stopped.slot && !stopped.Stop(), "a stale Stop took the hook that came after it")
			check("stopped", next.Stop(), "the later hook was not in its slot")

			a := afterDone(ctx, func() { ranAtEnd.Add(1) })
			b := afterDone(r.Context(), func() { ranAtEnd.Add(1) })
			full := afterDone(ctx, func() { ranAtEnd.Add(1) })
			check("slots", a.e != nil && b.e != nil, "two hooks did not take the two slots")
			check("slots", full.e == nil, "a third hook took a slot")

			own, cancel := context.WithCancel(ctx)
			defer cancel()
			check("own", afterDone(own, func() {}).e == nil, "a hook on a context that ends on its own took a slot")
		}
	}))
	c := dialRaw(t, addr)
	for _, path := range []string{"/first", "/second"} {
		c.send("GET " + path + " HTTP/1.1\r\nHost: a\r\n\r\n")
		if resp, _ := c.read(http.MethodGet); resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: %d", path, resp.StatusCode)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for ranAtEnd.Load() < 3 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if n := ranAtEnd.Load(); n != 3 {
		t.Errorf("%d of the 3 hooks ran at the request's end", n)
	}
	close(findings)
	for f := range findings {
		t.Errorf("%s: %s", f.what, f.err)
	}
}

// TestACallerThatLeavesEndsTheCallToTheApp: the front's hook is what
// unblocks the sidecar's HTTP/1.1 client when a caller leaves while the
// app is slow to answer; the app sees its connection go.
func TestACallerThatLeavesEndsTheCallToTheApp(t *testing.T) {
	appSaw := make(chan error, 1)
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
			appSaw <- r.Context().Err()
		case <-time.After(10 * time.Second):
			appSaw <- nil
		}
	}))
	t.Cleanup(app.Close)
	target, _ := url.Parse(app.URL)
	rp := NewReverseProxy(target, ReverseProxyOptions{Transport: NewTransport(TransportOptions{})})
	returned := make(chan time.Duration, 1)
	_, addr := listenFront(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rp.ServeHTTP(w, r)
		returned <- time.Since(start)
	}))

	c := dialRaw(t, addr)
	c.send("GET /slow HTTP/1.1\r\nHost: a\r\n\r\n")
	time.Sleep(20 * callerWatchDelay)
	_ = c.conn.Close()
	select {
	case err := <-appSaw:
		if err == nil {
			t.Fatal("the caller left and the app's request went on")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the caller left and the app's request went on")
	}
	if d := <-returned; d > 5*time.Second {
		t.Errorf("the handler returned %v after the caller left", d)
	}
}
