package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"
)

// ServerOptions are the hardening limits every listener gets.
type ServerOptions struct {
	// MaxHeaderBytes caps request line plus headers; past it the caller
	// gets 431 Request Header Fields Too Large. net/http reads up to a
	// few KiB of buffer slack past the cap before it notices. It is the
	// HTTP/2 header list size limit too.
	MaxHeaderBytes    int
	ReadHeaderTimeout time.Duration
	IdleTimeout       time.Duration
	// WriteTimeout bounds a whole response; 0 means none, for streaming.
	WriteTimeout time.Duration
	// TLS, when set, makes the server speak TLS with this configuration.
	TLS    *tls.Config
	Logger *slog.Logger
	// ConnClosed, when set, is called once the server is done with a
	// caller's connection: every handler it ran has returned, and the
	// connection is closed.
	ConnClosed func(net.Conn)
}

// DefaultServerOptions are the limits used when the configuration says
// nothing more specific.
func DefaultServerOptions(logger *slog.Logger) ServerOptions {
	return ServerOptions{
		MaxHeaderBytes:    32 << 10,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       120 * time.Second,
		WriteTimeout:      0,
		Logger:            logger,
	}
}

// Server owns one listener and what serves it: on a cleartext listener
// the HTTP/1.1 front (see h1Front), which hands what it does not serve to
// an http.Server; on a TLS listener the http.Server alone. The listener
// is bound by Listen, before serving, so that a port conflict is a
// start-up error and tests can bind port 0 and read the address.
type Server struct {
	name  string
	ln    net.Listener
	srv   *http.Server
	front *h1Front // nil on a TLS listener
	log   *slog.Logger
}

// Listen binds addr for the server called name (used in logs and errors).
func Listen(name, addr string, h http.Handler, opts ServerOptions) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("proxy: %s listener: %w", name, err)
	}
	if opts.TLS != nil {
		ln = tls.NewListener(ln, opts.TLS)
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	srv := &http.Server{
		Handler:           h,
		MaxHeaderBytes:    opts.MaxHeaderBytes,
		ReadHeaderTimeout: opts.ReadHeaderTimeout,
		IdleTimeout:       opts.IdleTimeout,
		WriteTimeout:      opts.WriteTimeout,
		ErrorLog:          slog.NewLogLogger(logger.With("server", name).Handler(), slog.LevelDebug),
		ConnState:         connClosedHook(opts.ConnClosed),
		Protocols:         serverProtocols(),
		HTTP2: &http.HTTP2Config{
			MaxConcurrentStreams: MaxConcurrentStreams,
			// net/http's HTTP/2 server already survives rapid reset
			// (CVE-2023-44487): it runs at most MaxConcurrentStreams
			// handlers per connection and queues the rest behind them.
		},
	}
	s := &Server{name: name, ln: ln, srv: srv, log: logger}
	if opts.TLS == nil {
		s.front = newH1Front(h, srv, opts, logger.With("server", name), ln.Addr())
	}
	return s, nil
}

// connClosedHook is net/http's ConnState for ServerOptions.ConnClosed.
func connClosedHook(closed func(net.Conn)) func(net.Conn, http.ConnState) {
	if closed == nil {
		return nil
	}
	return func(c net.Conn, s http.ConnState) {
		if s == http.StateClosed || s == http.StateHijacked {
			closed(c)
		}
	}
}

// MaxConcurrentStreams is how many HTTP/2 streams a connection may have
// open at once: gRPC clients multiplex every call on one connection, and
// 100 is what RFC 9113 recommends as the least to allow.
const MaxConcurrentStreams = 100

// serverProtocols are what every listener speaks: HTTP/1.1, HTTP/2 over
// TLS (by ALPN, on a TLS listener), and HTTP/2 over cleartext with prior
// knowledge (h2c), as gRPC clients speak it to a sidecar on loopback.
func serverProtocols() *http.Protocols {
	p := new(http.Protocols)
	p.SetHTTP1(true)
	p.SetHTTP2(true)
	p.SetUnencryptedHTTP2(true)
	return p
}

// Name returns the server's name.
func (s *Server) Name() string { return s.name }

// Addr returns the bound address, useful when listening on port 0.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Serve serves until Shutdown; it returns nil after a clean shutdown.
func (s *Server) Serve() error {
	s.log.Info("listening", "server", s.name, "addr", s.ln.Addr().String())
	if s.front == nil {
		return s.serveNetHTTP(s.ln)
	}
	handedOff := make(chan error, 1)
	go func() { handedOff <- s.serveNetHTTP(s.front.handoff) }()
	err := s.front.serve(s.ln)
	if err != nil {
		err = fmt.Errorf("proxy: %s server: %w", s.name, err)
		_ = s.srv.Close()
	}
	return errors.Join(err, <-handedOff)
}

func (s *Server) serveNetHTTP(ln net.Listener) error {
	if err := s.srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("proxy: %s server: %w", s.name, err)
	}
	return nil
}

// Shutdown stops accepting connections and waits for in-flight requests
// until ctx ends; then it closes what is left.
func (s *Server) Shutdown(ctx context.Context) error {
	var frontErr error
	frontDone := make(chan struct{})
	go func() {
		defer close(frontDone)
		if s.front != nil {
			frontErr = s.front.shutdown(ctx)
		}
	}()
	err := s.srv.Shutdown(ctx)
	if err != nil {
		_ = s.srv.Close()
	}
	<-frontDone
	if err = errors.Join(err, frontErr); err != nil {
		return fmt.Errorf("proxy: %s drain: %w", s.name, err)
	}
	return nil
}

// Close closes the listener and every connection at once.
func (s *Server) Close() error {
	if s.front != nil {
		s.front.close()
	}
	return s.srv.Close()
}
