package e2e

import (
	"context"
	"crypto/tls"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/authsidecar/authsidecar/internal/certtest"
	"github.com/authsidecar/authsidecar/internal/grpctest"
)

// grpcApp is app B: a grpc-go server with the health service and the
// echo service, on h2c.
type grpcApp struct {
	addr string
	echo *grpctest.Server
}

func startGRPCApp(t testing.TB) *grpcApp {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer()
	a := &grpcApp{addr: ln.Addr().String(), echo: &grpctest.Server{}}
	grpctest.Register(s, a.echo)
	healthpb.RegisterHealthServer(s, health.NewServer())
	go s.Serve(ln)
	t.Cleanup(s.Stop)
	return a
}

func grpcConn(t testing.TB, target string, opts ...grpc.DialOption) *grpc.ClientConn {
	t.Helper()
	cc, err := grpc.NewClient(target, append([]grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

func withToken(ctx context.Context, tok string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tok)
}

func wantCode(t testing.TB, what string, err error, code codes.Code, msg string) {
	t.Helper()
	st, _ := status.FromError(err)
	if st.Code() != code || !strings.Contains(st.Message(), msg) {
		t.Errorf("%s: %v (%s), want %s with %q", what, st.Code(), st.Message(), code, msg)
	}
}

// TestGRPCThroughTwoSidecars: the orders app's gRPC client calls the
// payments gRPC server through sidecar A (route by authority) and sidecar
// B, with tokens from the real oidc-provider.
func TestGRPCThroughTwoSidecars(t *testing.T) {
	t.Parallel()
	idp := startIDP(t, chainIDPConfig())
	app := startGRPCApp(t)
	bAddrs := freeSidecarAddrs(t)
	b := startSidecar(t, mergeEnv(bAddrs.Env(), map[string]string{
		"AUTHSIDECAR_INBOUND_ISSUERS":         idp.Issuer,
		"AUTHSIDECAR_INBOUND_AUDIENCES":       paymentsRS,
		"AUTHSIDECAR_INBOUND_REQUIRED_SCOPES": "payments:write",
		"AUTHSIDECAR_INBOUND_UPSTREAM":        "http://" + app.addr,
		"AUTHSIDECAR_LOG_LEVEL":               "debug",
	}))
	tap := startTokenTap(t, idp, 0)
	a := startOutbound(t, idp, basicClient, basicSecret, "client_secret_basic", tap.TokenURL(), outboundRoute{
		Name: "payments", URL: "http://" + bAddrs.Inbound, Resource: paymentsRS, Scopes: "payments:read payments:write",
	})
	b.WaitReady(t, bAddrs.AdminURL())
	a.WaitReady(t, a.Addrs.AdminURL())
	// The app's client knows only the sidecar and the route's name.
	cc := grpcConn(t, a.Addrs.Outbound, grpc.WithAuthority("payments"))
	echo := grpctest.NewClient(cc)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	t.Run("unary, server streaming and bidirectional calls carry the caller's identity", func(t *testing.T) {
		check := func(what string, s grpctest.Seen) {
			t.Helper()
			if s.Subject != basicClient || s.ClientID != basicClient || scopeSet(s.Scopes) != "payments:read payments:write" || s.Authorization != "" {
				t.Errorf("%s: the server saw %+v, want %s's identity and no authorization", what, s, basicClient)
			}
		}
		seen, err := echo.Unary(ctx, "hello")
		if err != nil || seen.Message != "hello" {
			t.Fatalf("Unary: %+v %v", seen, err)
		}
		check("unary", seen)
		parts, err := echo.ServerStream(ctx, 5)
		if err != nil || len(parts) != 5 || parts[4].Index != 4 {
			t.Fatalf("ServerStream: %d parts, %v", len(parts), err)
		}
		check("server streaming", parts[0])
		echoes, err := echo.Bidi(ctx, []string{"a", "b", "c"})
		if err != nil || len(echoes) != 3 || echoes[2].Message != "c" {
			t.Fatalf("Bidi: %+v %v", echoes, err)
		}
		check("bidirectional", echoes[1])
		hc := healthpb.NewHealthClient(cc)
		if resp, err := hc.Check(ctx, &healthpb.HealthCheckRequest{}); err != nil || resp.Status != healthpb.HealthCheckResponse_SERVING {
			t.Errorf("health check through both sidecars: %v %v", resp, err)
		}
	})
	t.Run("a hundred calls cost one token", func(t *testing.T) {
		var wg sync.WaitGroup
		for range 100 {
			wg.Go(func() {
				if _, err := echo.Unary(ctx, "many"); err != nil {
					t.Errorf("Unary: %v", err)
				}
			})
		}
		wg.Wait()
		if n := len(tap.Requests()); n != 1 {
			t.Errorf("%d token requests, want 1", n)
		}
	})
	t.Run("an upstream refusing the token once costs one new token, and the call succeeds", func(t *testing.T) {
		before := len(tap.Requests())
		app.echo.Refuse.Store(1)
		if _, err := echo.Unary(ctx, "after the refusal"); err != nil {
			t.Fatalf("Unary after one UNAUTHENTICATED: %v", err)
		}
		if n := len(tap.Requests()) - before; n != 1 {
			t.Errorf("%d new token requests, want 1", n)
		}
	})
	t.Run("a deadline is the call's bound", func(t *testing.T) {
		before := app.echo.Cancelled.Load()
		dctx, dcancel := context.WithTimeout(ctx, 300*time.Millisecond)
		defer dcancel()
		start := time.Now()
		_, err := echo.Unary(dctx, "sleep:5s")
		wantCode(t, "a call past its deadline", err, codes.DeadlineExceeded, "")
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("the call ended after %s", d)
		}
		eventually(t, 5*time.Second, "the server's call is cancelled", func() (bool, string) {
			n := app.echo.Cancelled.Load() - before
			return n == 1, strconv.FormatInt(n, 10) + " cancelled"
		})
	})
	t.Run("no token is UNAUTHENTICATED, a missing scope PERMISSION_DENIED, and the server never runs", func(t *testing.T) {
		calls := app.echo.Calls.Load()
		direct := grpctest.NewClient(grpcConn(t, bAddrs.Inbound))
		_, err := direct.Unary(ctx, "no token")
		wantCode(t, "no token", err, codes.Unauthenticated, "a bearer token is required")
		reader := idp.ClientCredentialsToken(t, readerClient, readerSecret, paymentsRS, "payments:read").AccessToken
		_, err = direct.Unary(withToken(ctx, reader), "read only")
		wantCode(t, "a token without payments:write", err, codes.PermissionDenied, "the token lacks a required scope")
		_, err = direct.Unary(withToken(ctx, tamperClaims(t, reader, func(c map[string]any) { c["scope"] = "payments:write" })), "tampered")
		wantCode(t, "a tampered token", err, codes.Unauthenticated, "the token signature is invalid")
		if n := app.echo.Calls.Load() - calls; n != 0 {
			t.Errorf("the server ran %d refused calls", n)
		}
	})
	t.Run("a wrong client secret is UNAVAILABLE and sends nothing", func(t *testing.T) {
		calls := app.echo.Calls.Load()
		bad := startOutbound(t, idp, basicClient, "not-the-secret", "client_secret_basic", "", outboundRoute{
			Name: "payments", URL: "http://" + bAddrs.Inbound, Resource: paymentsRS, Scopes: "payments:write",
		})
		bad.WaitReady(t, bad.Addrs.AdminURL())
		_, err := grpctest.NewClient(grpcConn(t, bad.Addrs.Outbound, grpc.WithAuthority("payments"))).Unary(ctx, "x")
		wantCode(t, "a route without a token", err, codes.Unavailable, "no access token could be obtained")
		if n := app.echo.Calls.Load() - calls; n != 0 {
			t.Errorf("the server ran %d calls", n)
		}
	})
}

// TestGRPCOverInboundTLS: a caller negotiates h2 by ALPN with an inbound
// sidecar serving TLS, which passes the call to the app as h2c.
func TestGRPCOverInboundTLS(t *testing.T) {
	t.Parallel()
	idp := startIDP(t, chainIDPConfig())
	app := startGRPCApp(t)
	ca := certtest.NewCA(t, "payments CA")
	dir := t.TempDir()
	certFile, keyFile := ca.Issue(t, certtest.Options{CommonName: "payments", DNSNames: []string{"payments.test"}}).WriteFiles(t, dir, "tls")
	addrs := freeSidecarAddrs(t)
	b := startSidecar(t, mergeEnv(addrs.Env(), map[string]string{
		"AUTHSIDECAR_INBOUND_ISSUERS":       idp.Issuer,
		"AUTHSIDECAR_INBOUND_AUDIENCES":     paymentsRS,
		"AUTHSIDECAR_INBOUND_UPSTREAM":      "http://" + app.addr,
		"AUTHSIDECAR_INBOUND_TLS_CERT_FILE": certFile,
		"AUTHSIDECAR_INBOUND_TLS_KEY_FILE":  keyFile,
	}))
	b.WaitReady(t, addrs.AdminURL())
	creds := credentials.NewTLS(&tls.Config{RootCAs: ca.Pool(), ServerName: "payments.test"})
	cc, err := grpc.NewClient(addrs.Inbound, grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	tok := idp.ClientCredentialsToken(t, basicClient, basicSecret, paymentsRS, "payments:read").AccessToken
	ctx, cancel := context.WithTimeout(withToken(context.Background(), tok), 10*time.Second)
	defer cancel()
	seen, err := grpctest.NewClient(cc).Unary(ctx, "over TLS")
	if err != nil || seen.Subject != basicClient {
		t.Fatalf("Unary over TLS: %+v %v", seen, err)
	}
	parts, err := grpctest.NewClient(cc).ServerStream(ctx, 3)
	if err != nil || len(parts) != 3 {
		t.Fatalf("ServerStream over TLS: %d %v", len(parts), err)
	}
}
