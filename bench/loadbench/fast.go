package loadbench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttpadaptor"

	"github.com/authsidecar/authsidecar/config"
	"github.com/authsidecar/authsidecar/inbound"
)

// The fasthttp prototypes answer one question of the data-path work: what
// a fasthttp server for HTTP/1.1 callers would buy. They are measured, not
// shipped: the sidecar binary has no fasthttp in it.
//
//   - fasthttp-bare: a fasthttp server forwarding every request with a
//     fasthttp.HostClient, no authentication, X-Forwarded-For set. The
//     ceiling of a fasthttp data path on this machine.
//   - fasthttp-inbound: the sidecar's own inbound handler (inbound.New from
//     the same AUTHSIDECAR_* variables, its verifier, rules, identity
//     headers and its HTTP/1.1 client to the app) behind a fasthttp server
//     through fasthttpadaptor: what putting fasthttp in front of the
//     existing code, and changing nothing else, would give.

// fastServer is a fasthttp server with the limits the sidecar's own
// server has where fasthttp has them.
func fastServer(h fasthttp.RequestHandler) *fasthttp.Server {
	return &fasthttp.Server{
		Handler:               h,
		ReadBufferSize:        16 << 10, // request line and headers must fit
		IdleTimeout:           120 * time.Second,
		ReadTimeout:           60 * time.Second,
		NoDefaultServerHeader: true,
		NoDefaultDate:         true,
	}
}

// fastBare forwards to upstream with a pooled fasthttp client.
func fastBare(upstream *url.URL) fasthttp.RequestHandler {
	hc := &fasthttp.HostClient{Addr: upstream.Host, MaxConns: 1024, MaxIdleConnDuration: 90 * time.Second}
	return func(ctx *fasthttp.RequestCtx) {
		req := &ctx.Request
		req.Header.Add("X-Forwarded-For", ctx.RemoteIP().String())
		if err := hc.Do(req, &ctx.Response); err != nil {
			ctx.Error("bad gateway", fasthttp.StatusBadGateway)
		}
	}
}

// fastInbound builds the sidecar's inbound direction from the AUTHSIDECAR_*
// variables of the environment and waits, up to a bound, for its keys.
func fastInbound(ctx context.Context) (fasthttp.RequestHandler, error) {
	env := map[string]string{}
	for _, kv := range os.Environ() {
		if k, v, _ := strings.Cut(kv, "="); strings.HasPrefix(k, "AUTHSIDECAR_") {
			env[k] = v
		}
	}
	cfg, err := config.Load(env)
	if err != nil {
		return nil, err
	}
	if cfg.InboundOptions == nil {
		return nil, errors.New("no inbound configured")
	}
	opts := *cfg.InboundOptions
	opts.Logger = slog.New(slog.DiscardHandler)
	in, err := inbound.New(opts)
	if err != nil {
		return nil, err
	}
	go in.Run(ctx)
	deadline := time.Now().Add(20 * time.Second)
	for {
		var notReady error
		for name, check := range in.Checks() {
			if err := check(); err != nil {
				notReady = fmt.Errorf("%s: %w", name, err)
			}
		}
		if notReady == nil {
			return fasthttpadaptor.NewFastHTTPHandler(in.Handler()), nil
		}
		if time.Now().After(deadline) {
			return nil, notReady
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// fastHandler builds role's handler; ctx bounds the inbound direction's
// background work.
func fastHandler(ctx context.Context, role, upstream string) (fasthttp.RequestHandler, error) {
	if role == RoleFastInbound {
		return fastInbound(ctx)
	}
	u, err := url.Parse(upstream)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("bad upstream %q", upstream)
	}
	return fastBare(u), nil
}

// serveFast serves h with fasthttp on ln until stop reaches EOF.
func serveFast(h fasthttp.RequestHandler, ln net.Listener, stop io.Reader) error {
	srv := fastServer(h)
	return serveUntilEOF(func() error { return srv.Serve(ln) }, stop, func() { _ = srv.Shutdown() })
}
