// Package sidecar assembles authsidecar from its parts: it builds the
// inbound and outbound directions and the admin endpoints from a loaded
// configuration, serves them, and drains them on shutdown.
package sidecar

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/authsidecar/authsidecar/config"
	"github.com/authsidecar/authsidecar/inbound"
	"github.com/authsidecar/authsidecar/internal/clock"
	"github.com/authsidecar/authsidecar/internal/handoff"
	"github.com/authsidecar/authsidecar/internal/reload"
	"github.com/authsidecar/authsidecar/internal/tracing"
	"github.com/authsidecar/authsidecar/metrics"
	"github.com/authsidecar/authsidecar/outbound"
	"github.com/authsidecar/authsidecar/proxy"
)

// sidecar is the running program: its servers and background work.
type sidecar struct {
	cfg     *config.Config
	log     *slog.Logger
	metrics *metrics.Metrics
	ready   *metrics.Readiness
	tracer  *tracing.Tracing // nil: tracing is off
	servers []*proxy.Server
	// background runs until the context ends: key refresh, token
	// prefetch, file watching.
	background []func(context.Context)
}

// Run builds every part of the sidecar configured by cfg, binds every
// listener, serves until ctx ends, then drains: readiness turns 503 first,
// then in-flight requests get AUTHSIDECAR_SHUTDOWN_GRACE to finish. Logs
// go to logOut; version is reported in logs and authsidecar_build_info.
func Run(ctx context.Context, cfg *config.Config, version string, logOut io.Writer) error {
	reg := metrics.NewRegistry()
	s := &sidecar{cfg: cfg, log: newLogger(cfg.General, logOut), ready: metrics.NewReadiness(),
		metrics: metrics.New(reg, version)}
	if cfg.Tracing.Enabled {
		t, err := tracing.New(ctx, cfg.Tracing, version)
		if err != nil {
			return err
		}
		s.tracer, s.log = t, tracing.Logger(s.log)
		defer s.flushTraces()
	}
	handlers, err := s.build()
	if err != nil {
		return err
	}
	if err := s.listen(handlers); err != nil {
		s.closeAll()
		return err
	}
	adminOpts := s.serverOptions()
	adminOpts.WriteTimeout = 30 * time.Second // its answers are small; a stuck scraper must not pin it
	admin, err := proxy.Listen("admin", cfg.General.AdminListen, metrics.NewAdminHandler(reg, s.ready), adminOpts)
	if err != nil {
		s.closeAll()
		return err
	}
	s.log.Info("authsidecar starting", "version", version,
		"inbound", cfg.Inbound.Enabled(), "outbound", cfg.Outbound.Enabled())
	return s.run(ctx, admin)
}

// build creates the inbound and outbound parts from their options and
// returns the handler of each listener by name.
func (s *sidecar) build() (map[string]http.Handler, error) {
	handlers := map[string]http.Handler{}
	callers := s.handoff()
	if o := s.cfg.InboundOptions; o != nil {
		opts := *o
		opts.Metrics, opts.Logger, opts.Tracer, opts.Handoff = s.metrics, s.log, s.tracer, callers
		in, err := inbound.New(opts)
		if err != nil {
			return nil, err
		}
		handlers["inbound"] = in.Handler()
		for name, check := range in.Checks() {
			s.ready.Add(name, check)
		}
		s.background = append(s.background, in.Run)
	}
	if o := s.cfg.OutboundOptions; o != nil {
		opts := *o
		opts.Metrics, opts.Logger, opts.Tracer, opts.Handoff = s.metrics, s.log, s.tracer, callers
		out, err := outbound.New(opts)
		if err != nil {
			return nil, err
		}
		handlers["outbound"] = out.Handler()
		for name, check := range out.Checks() {
			s.ready.Add(name, check)
		}
		for _, r := range out.Routes() {
			handlers["route "+r.Name] = r.Handler()
		}
		s.background = append(s.background, out.Run)
	}
	watcher := reload.NewWatcher(clock.Real, s.onReload, s.cfg.Watched...)
	s.background = append(s.background, watcher.Run)
	return handlers, nil
}

// handoffSize is the least number of callers' tokens kept for token
// exchange, one per caller seen within its token's lifetime: the store
// holds as many as the inbound token cache, and never fewer than this
// (the cache may be small, or off, and exchange still needs the caller's
// token).
const handoffSize = 10_000

// handoff is the store through which inbound hands callers' tokens to the
// token-exchange routes; nil when there is none.
func (s *sidecar) handoff() *handoff.Store {
	in, out := s.cfg.InboundOptions, s.cfg.OutboundOptions
	if in == nil || out == nil {
		return nil
	}
	for _, r := range out.Routes {
		if r.Grant == outbound.GrantTokenExchange {
			return handoff.New(max(in.TokenCacheSize, handoffSize))
		}
	}
	return nil
}

// flushTraces exports the spans still buffered: those of the drain too.
func (s *sidecar) flushTraces() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.tracer.Shutdown(ctx); err != nil {
		s.log.Warn("spans not exported at shutdown", "error", err.Error())
	}
}

// onReload logs and counts the re-read of a changed file.
func (s *sidecar) onReload(file string, err error) {
	if err != nil {
		s.metrics.ConfigReloads.WithLabelValues(file, "error").Inc()
		s.log.Error("a changed file was refused; the last good version stays in force", "file", file, "error", err.Error())
		return
	}
	s.metrics.ConfigReloads.WithLabelValues(file, "success").Inc()
	s.metrics.ConfigReloadSuccess.WithLabelValues(file).SetToCurrentTime()
	s.log.Info("reloaded a changed file", "file", file)
}

// listen binds every listener before anything is served, so that a port
// conflict is a start-up error.
func (s *sidecar) listen(handlers map[string]http.Handler) error {
	for _, l := range s.cfg.Listeners {
		opts := s.serverOptions()
		opts.TLS = l.TLS
		srv, err := proxy.Listen(l.Name, l.Addr, handlers[l.Name], opts)
		if err != nil {
			return err
		}
		s.servers = append(s.servers, srv)
	}
	return nil
}

func (s *sidecar) serverOptions() proxy.ServerOptions {
	opts := proxy.DefaultServerOptions(s.log)
	opts.MaxHeaderBytes = s.cfg.General.MaxHeaderBytes
	return opts
}

func (s *sidecar) closeAll() {
	for _, srv := range s.servers {
		_ = srv.Close()
	}
}

// run serves until ctx ends or a server fails, then drains: readiness
// turns 503 first, then in-flight requests get SHUTDOWN_GRACE to finish.
func (s *sidecar) run(ctx context.Context, admin *proxy.Server) error {
	bgCtx, stopBackground := context.WithCancel(context.Background())
	defer stopBackground()
	var bg sync.WaitGroup
	for _, f := range s.background {
		bg.Go(func() { f(bgCtx) })
	}
	errc := make(chan error, len(s.servers)+1)
	for _, srv := range append([]*proxy.Server{admin}, s.servers...) {
		go func() { errc <- srv.Serve() }()
	}
	var failed error
	select {
	case <-ctx.Done():
		s.log.Info("shutting down", "delay", s.cfg.General.ShutdownDelay.String(), "grace", s.cfg.General.ShutdownGrace.String())
		s.ready.SetStopping()
		s.delay(errc)
	case failed = <-errc:
		s.log.Error("server failed", "error", failed.Error())
		s.ready.SetStopping()
	}
	drainErr := s.drain()
	_ = admin.Close()
	stopBackground()
	bg.Wait()
	s.log.Info("stopped")
	return errors.Join(failed, drainErr)
}

// delay keeps every listener serving for SHUTDOWN_DELAY with /readyz at
// 503, so that load balancers and Kubernetes endpoints stop sending new
// connections before the listeners close; a rollout then drops nothing.
func (s *sidecar) delay(errc <-chan error) {
	if s.cfg.General.ShutdownDelay <= 0 {
		return
	}
	select {
	case <-time.After(s.cfg.General.ShutdownDelay):
	case err := <-errc:
		s.log.Error("server failed while draining", "error", err.Error())
	}
}

// drain shuts the servers down within SHUTDOWN_GRACE: inbound first, then
// outbound. The app is usually stopping too and may still call out while it
// finishes its own requests, so the outbound listeners keep accepting until
// inbound has drained.
func (s *sidecar) drain() error {
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.General.ShutdownGrace)
	defer cancel()
	var in, out []*proxy.Server
	for _, srv := range s.servers {
		if srv.Name() == "inbound" {
			in = append(in, srv)
		} else {
			out = append(out, srv)
		}
	}
	errs := shutdownAll(ctx, in)
	errs = append(errs, shutdownAll(ctx, out)...)
	if len(errs) > 0 {
		return fmt.Errorf("drain not finished within %s: %w", s.cfg.General.ShutdownGrace, errors.Join(errs...))
	}
	return nil
}

func shutdownAll(ctx context.Context, servers []*proxy.Server) []error {
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	for _, srv := range servers {
		wg.Go(func() {
			if err := srv.Shutdown(ctx); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return errs
}

func newLogger(g config.General, w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: g.LogLevel.Level}
	if g.LogFormat == config.LogText {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}
