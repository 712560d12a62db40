package loadbench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/authsidecar/authsidecar/internal/grpctest"
)

// GRPCMethod is the unary method every gRPC case calls: internal/grpctest's
// echo, which answers with what it saw of the call (a JSON of about 100
// bytes through the sidecar, which adds the caller's identity).
const GRPCMethod = "/" + grpctest.ServiceName + "/Unary"

// GRPCPayload is the request message of every call.
const GRPCPayload = "ping"

// serveGRPCApp is the gRPC app: grpc-go's own server (its HTTP/2
// transport, not net/http's) with the echo service, on ln, until stop
// reaches EOF.
func serveGRPCApp(ln net.Listener, stop io.Reader) error {
	s := grpc.NewServer()
	grpctest.Register(s, &grpctest.Server{})
	err := serveUntilEOF(func() error { return s.Serve(ln) }, stop, s.Stop)
	if errors.Is(err, grpc.ErrServerStopped) {
		return nil
	}
	return err
}

// GRPCBareProxy is the gRPC baseline: an httputil.ReverseProxy to upstream
// (Rewrite = SetURL + SetXForwarded) over an http.Transport that speaks h2c
// only (Protocols = UnencryptedHTTP2), as any Go h2c reverse proxy would.
// httputil flushes a gRPC answer at once (it has no Content-Length) and
// passes trailers on. opts.BufferPool applies as for BareProxy.
func GRPCBareProxy(upstream *url.URL, opts BareOptions) http.Handler {
	ps := new(http.Protocols)
	ps.SetUnencryptedHTTP2(true)
	return bareProxy(upstream, opts, ps)
}

// h2cServerProtocols are the bare h2c proxy's: HTTP/1.1 and h2c with prior
// knowledge, as the sidecar's listeners without TLS.
func h2cServerProtocols() *http.Protocols {
	ps := new(http.Protocols)
	ps.SetHTTP1(true)
	ps.SetUnencryptedHTTP2(true)
	return ps
}

// GRPCTarget is what a gRPC load run sends: unary calls of GRPCMethod on
// Conns (worker i on Conns[i % len(Conns)]), with Token, when set, as
// "authorization: Bearer …" metadata.
type GRPCTarget struct {
	Conns []*grpc.ClientConn
	Token string
}

// DialGRPC returns n client connections to addr, each its own HTTP/2
// (h2c) connection: grpc-go opens one transport per ClientConn. They
// connect on first use.
func DialGRPC(addr string, n int) ([]*grpc.ClientConn, error) {
	conns := make([]*grpc.ClientConn, 0, n)
	for range n {
		cc, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			CloseGRPC(conns)
			return nil, err
		}
		conns = append(conns, cc)
	}
	return conns, nil
}

// CloseGRPC closes conns.
func CloseGRPC(conns []*grpc.ClientConn) {
	for _, cc := range conns {
		_ = cc.Close()
	}
}

// grpcCaller returns the caller of worker id for t: one call on its
// connection, the metadata set once in its context, request and answer
// messages reused.
func grpcCaller(ctx context.Context, t GRPCTarget, id int) caller {
	cc := t.Conns[id%len(t.Conns)]
	if t.Token != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+t.Token)
	}
	in, out := wrapperspb.String(GRPCPayload), new(wrapperspb.StringValue)
	return func() error {
		if err := cc.Invoke(ctx, GRPCMethod, in, out); err != nil {
			return err
		}
		if out.GetValue() == "" {
			return errors.New("an empty answer")
		}
		return nil
	}
}

func grpcWorkers(ctx context.Context, t GRPCTarget, n int) ([]*worker, error) {
	if len(t.Conns) == 0 {
		return nil, errors.New("grpc: no connections")
	}
	return newWorkers(n, func(id int) (caller, error) { return grpcCaller(ctx, t, id), nil })
}

// GRPCClosedLoop is ClosedLoop for unary gRPC calls: workers each make
// their next call as soon as the previous one is answered.
func GRPCClosedLoop(ctx context.Context, t GRPCTarget, workers int, d time.Duration, maxRequests int64) (*Result, error) {
	ctx, cancel := context.WithTimeout(ctx, d+30*time.Second)
	defer cancel()
	ws, err := grpcWorkers(ctx, t, workers)
	if err != nil {
		return nil, err
	}
	return closedLoop(ctx, ws, d, maxRequests)
}

// GRPCOpenLoop is OpenLoop for unary gRPC calls.
func GRPCOpenLoop(ctx context.Context, t GRPCTarget, workers int, rate float64, d time.Duration) (*Result, error) {
	if rate <= 0 {
		return nil, fmt.Errorf("open loop: rate %v must be positive", rate)
	}
	ctx, cancel := context.WithTimeout(ctx, d+30*time.Second)
	defer cancel()
	ws, err := grpcWorkers(ctx, t, workers)
	if err != nil {
		return nil, err
	}
	return openLoop(ctx, ws, rate, d)
}

// checkGRPC makes one call on every connection of t and checks what the
// app saw: with a token, a verified caller's identity and no
// authorization metadata (the sidecar removes it); without, no identity.
func checkGRPC(ctx context.Context, t GRPCTarget) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if t.Token != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+t.Token)
	}
	for _, cc := range t.Conns {
		seen, err := grpctest.NewClient(cc).Unary(ctx, GRPCPayload)
		if err != nil {
			return fmt.Errorf("a first call: %w", err)
		}
		switch {
		case seen.Message != GRPCPayload:
			return fmt.Errorf("the app echoed %q, want %q", seen.Message, GRPCPayload)
		case t.Token != "" && (seen.Subject == "" || seen.Authorization != ""):
			return fmt.Errorf("the app saw subject %q and authorization %q, want a subject and no authorization", seen.Subject, seen.Authorization)
		case t.Token == "" && seen.Subject != "":
			return fmt.Errorf("the app saw subject %q without a token", seen.Subject)
		}
	}
	return nil
}

// checkGRPCGate is checkGate for gRPC: a call without a token and one
// with an altered signature fail, and one with the valid token reaches
// the app with the caller's identity and without the token.
func checkGRPCGate(ctx context.Context, name, addr, valid string) error {
	conns, err := DialGRPC(addr, 1)
	if err != nil {
		return err
	}
	defer CloseGRPC(conns)
	for _, c := range []struct{ what, token string }{{"no token", ""}, {"an altered signature", alterSignature(valid)}} {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		if c.token != "" {
			cctx = metadata.AppendToOutgoingContext(cctx, "authorization", "Bearer "+c.token)
		}
		_, err := grpctest.NewClient(conns[0]).Unary(cctx, GRPCPayload)
		cancel()
		if err == nil {
			return fmt.Errorf("%s lets a call with %s through", name, c.what)
		}
	}
	if err := checkGRPC(ctx, GRPCTarget{Conns: conns, Token: valid}); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}
