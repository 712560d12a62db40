// Command grpc shows two gRPC services talking through two sidecars, in
// one process and on loopback only:
//
//	orders (grpc-go client) ──h2c──▶ sidecar A (outbound :4000-like port) ──h2c + token──▶ sidecar B (inbound) ──h2c──▶ payments (grpc-go server)
//	  grpc.WithAuthority("payments")      │ client credentials                         │ JWT checked locally
//	                                      ▼                                            ▼
//	                                development issuer  ◀───────────── JWKS ───────────┘
//
// The orders client knows only the sidecar's address and the route's name,
// which it passes as the authority: a gRPC method path, /pkg.Service/Method,
// has no room for a route prefix.
//
// Run it with: go run ./examples/grpc
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/authsidecar/authsidecar/config"
	"github.com/authsidecar/authsidecar/internal/devissuer"
	"github.com/authsidecar/authsidecar/internal/freeport"
	"github.com/authsidecar/authsidecar/internal/grpctest"
	"github.com/authsidecar/authsidecar/internal/sidecar"
)

func main() {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := run(ctx, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "grpc example:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, out io.Writer) error {
	issuer, err := devissuer.Start("127.0.0.1:0", map[string]string{"orders": "orders-secret"})
	if err != nil {
		return err
	}
	defer issuer.Close()

	// payments: a plain grpc-go server, h2c on loopback.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	server := grpc.NewServer()
	payments := &grpctest.Server{}
	grpctest.Register(server, payments)
	go func() { _ = server.Serve(ln) }()
	defer server.Stop()

	addrs, err := freeAddrs(4)
	if err != nil {
		return err
	}
	bInbound, bAdmin, aOutbound, aAdmin := addrs[0], addrs[1], addrs[2], addrs[3]
	sidecarB := map[string]string{ // beside payments
		"AUTHSIDECAR_INBOUND_ISSUERS":         issuer.URL,
		"AUTHSIDECAR_INBOUND_AUDIENCES":       "payments",
		"AUTHSIDECAR_INBOUND_REQUIRED_SCOPES": "payments:charge",
		// gRPC requests go to the app as h2c (UPSTREAM_PROTOCOL auto).
		"AUTHSIDECAR_INBOUND_UPSTREAM": "http://" + ln.Addr().String(),
		"AUTHSIDECAR_INBOUND_LISTEN":   bInbound,
		"AUTHSIDECAR_ADMIN_LISTEN":     bAdmin,
		"AUTHSIDECAR_LOG_LEVEL":        "error",
	}
	sidecarA := map[string]string{ // beside orders
		"AUTHSIDECAR_OUTBOUND_ROUTES":         "payments",
		"AUTHSIDECAR_OUTBOUND_ISSUER":         issuer.URL,
		"AUTHSIDECAR_OUTBOUND_CLIENT_ID":      "orders",
		"AUTHSIDECAR_OUTBOUND_CLIENT_SECRET":  "orders-secret",
		"AUTHSIDECAR_OUTBOUND_LISTEN":         aOutbound,
		"AUTHSIDECAR_ROUTE_PAYMENTS_URL":      "http://" + bInbound,
		"AUTHSIDECAR_ROUTE_PAYMENTS_AUDIENCE": "payments",
		"AUTHSIDECAR_ROUTE_PAYMENTS_SCOPES":   "payments:charge",
		"AUTHSIDECAR_ADMIN_LISTEN":            aAdmin,
		"AUTHSIDECAR_LOG_LEVEL":               "error",
	}
	sidecarCtx, stopSidecars := context.WithCancel(ctx)
	var wg sync.WaitGroup
	errc := make(chan error, 2)
	for _, env := range []map[string]string{sidecarB, sidecarA} {
		cfg, err := config.Load(env)
		if err != nil {
			stopSidecars()
			return err
		}
		wg.Go(func() { errc <- sidecar.Run(sidecarCtx, cfg, "grpc-example", io.Discard) })
	}
	defer func() { stopSidecars(); wg.Wait() }()
	if err := waitReady(ctx, errc, "http://"+bAdmin+"/readyz", "http://"+aAdmin+"/readyz"); err != nil {
		return err
	}
	return tellStory(ctx, out, issuer, payments, aOutbound, bInbound)
}

func tellStory(ctx context.Context, out io.Writer, issuer *devissuer.Issuer, payments *grpctest.Server, aOutbound, bInbound string) error {
	fmt.Fprintf(out, "1. orders dials the sidecar, %s, with grpc.WithAuthority(\"payments\"): no token, no TLS.\n", aOutbound)
	cc, err := grpc.NewClient(aOutbound, grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithAuthority("payments"))
	if err != nil {
		return err
	}
	defer cc.Close()
	orders := grpctest.NewClient(cc)
	seen, err := orders.Unary(ctx, "charge 42 EUR")
	if err != nil {
		return fmt.Errorf("the unary call through the sidecars: %w", err)
	}
	fmt.Fprintf(out, "   unary call → payments saw message %q from subject %q, client %q, scopes %q, authorization %q\n",
		seen.Message, seen.Subject, seen.ClientID, seen.Scopes, seen.Authorization)

	parts, err := orders.ServerStream(ctx, 3)
	if err != nil {
		return fmt.Errorf("the streaming call: %w", err)
	}
	echoes, err := orders.Bidi(ctx, []string{"hold", "capture"})
	if err != nil {
		return fmt.Errorf("the bidirectional call: %w", err)
	}
	fmt.Fprintf(out, "   server streaming → %d answers; bidirectional → %d echoes, each with the same identity\n", len(parts), len(echoes))
	fmt.Fprintf(out, "\n2. The issuer saw %d token request for %d calls.\n", len(issuer.Requests()), payments.Calls.Load())

	fmt.Fprintf(out, "\n3. A client that skips sidecar A calls sidecar B, %s, directly:\n", bInbound)
	direct, err := grpc.NewClient(bInbound, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer direct.Close()
	calls := payments.Calls.Load()
	_, err = grpctest.NewClient(direct).Unary(ctx, "charge 1000 EUR")
	st, _ := status.FromError(err)
	fmt.Fprintf(out, "   → %s: %s; payments ran %d more calls\n", st.Code(), st.Message(), payments.Calls.Load()-calls)
	if st.Code() != codes.Unauthenticated {
		return errors.New("the call without a token was not refused with UNAUTHENTICATED")
	}
	fmt.Fprintln(out, "\nDone: the gRPC calls with a token got through, the one without never reached payments.")
	return nil
}

func waitReady(ctx context.Context, errc <-chan error, urls ...string) error {
	for _, u := range urls {
		for {
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
			if err != nil {
				return err
			}
			resp, err := http.DefaultClient.Do(req)
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					break
				}
			}
			select {
			case err := <-errc:
				return fmt.Errorf("a sidecar stopped: %w", err)
			case <-ctx.Done():
				return errors.New("the sidecars did not become ready in time")
			case <-time.After(20 * time.Millisecond):
			}
		}
	}
	return nil
}

// freeAddrs returns n loopback addresses free at the time of the call.
func freeAddrs(n int) ([]string, error) {
	var addrs []string
	for range n {
		addr, err := freeport.Addr()
		if err != nil {
			return nil, err
		}
		addrs = append(addrs, addr)
	}
	return addrs, nil
}
