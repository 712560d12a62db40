// Package sidecar assembles authsidecar from its parts: it builds the
// inbound and outbound handlers and the admin endpoints from a validated
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
	"github.com/authsidecar/authsidecar/metrics"
	"github.com/authsidecar/authsidecar/proxy"
)

// sidecar is the running program: its servers and background work.
type sidecar struct {
	version string
	cfg     *config.Config
	log     *slog.Logger
	metrics *metrics.Metrics
	ready   *metrics.Readiness
	servers []*proxy.Server
	// background runs until the context ends: key refresh, token prefetch.
	background []func(context.Context)
}

// Run builds every part of the sidecar configured by cfg, binds every
// listener, serves until ctx ends, then drains: readiness turns 503 first,
// then in-flight requests get AUTHSIDECAR_SHUTDOWN_GRACE to finish. Logs
// go to logOut; version is reported in logs and authsidecar_build_info.
func Run(ctx context.Context, cfg *config.Config, version string, logOut io.Writer) error {
	s := &sidecar{version: version, cfg: cfg, log: newLogger(cfg.General, logOut), ready: metrics.NewReadiness()}
	reg := metrics.NewRegistry()
	s.metrics = metrics.New(reg, s.version)
	if err := s.build(ctx); err != nil {
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
	s.log.Info("authsidecar starting", "version", s.version,
		"inbound", cfg.Inbound.Enabled(), "outbound", cfg.Outbound.Enabled())
	return s.run(ctx, admin)
}

// build creates the inbound and outbound parts and binds their listeners.
func (s *sidecar) build(ctx context.Context) error {
	if s.cfg.Inbound.Enabled() {
		if err := s.buildInbound(); err != nil {
			return err
		}
	}
	if s.cfg.Outbound.Enabled() {
		if err := s.buildOutbound(ctx); err != nil {
			return err
		}
	}
	return nil
}

func (s *sidecar) listen(name, addr string, h http.Handler, opts proxy.ServerOptions) error {
	srv, err := proxy.Listen(name, addr, h, opts)
	if err != nil {
		return err
	}
	s.servers = append(s.servers, srv)
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
		s.log.Info("shutting down", "grace", s.cfg.General.ShutdownGrace.String())
	case failed = <-errc:
		s.log.Error("server failed", "error", failed.Error())
	}
	s.ready.SetStopping()
	drainErr := s.drain()
	_ = admin.Close()
	stopBackground()
	bg.Wait()
	s.log.Info("stopped")
	return errors.Join(failed, drainErr)
}

// drain shuts the servers down within SHUTDOWN_GRACE: inbound first, then
// outbound. The app is usually stopping too and may still call out while it
// finishes its own requests, so the outbound listeners keep accepting until
// inbound has drained.
func (s *sidecar) drain() error {
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.General.ShutdownGrace)
	defer cancel()
	var inbound, outbound []*proxy.Server
	for _, srv := range s.servers {
		if srv.Name() == "inbound" {
			inbound = append(inbound, srv)
		} else {
			outbound = append(outbound, srv)
		}
	}
	errs := shutdownAll(ctx, inbound)
	errs = append(errs, shutdownAll(ctx, outbound)...)
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
	var level slog.Level
	_ = level.UnmarshalText([]byte(g.LogLevel))
	opts := &slog.HandlerOptions{Level: level}
	if g.LogFormat == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

// httpClient is the client for identity providers: bounded in time, never
// following a proxy from the environment into a sidecar's own port.
func httpClient(timeout time.Duration) *http.Client {
	return &http.Client{Timeout: timeout, Transport: proxy.NewTransport(5*time.Second, timeout)}
}
