// Command quickstart shows authsidecar doing its job, in one process and
// on loopback only:
//
//	orders app ──▶ sidecar A (outbound :4000-like port) ──▶ sidecar B (inbound) ──▶ payments app
//	                     │ client-credentials token               │ JWT checked locally
//	                     ▼                                        ▼
//	               development issuer  ◀──────── JWKS ────────────┘
//
// Run it with: go run ./examples/quickstart
package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/authsidecar/authsidecar/config"
	"github.com/authsidecar/authsidecar/internal/devissuer"
	"github.com/authsidecar/authsidecar/internal/freeport"
	"github.com/authsidecar/authsidecar/internal/sidecar"
)

func main() {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := run(ctx, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "quickstart:", err)
		os.Exit(1)
	}
}

// payments is the demo app behind sidecar B: it remembers the identity
// headers of the last request it served.
type payments struct {
	mu   sync.Mutex
	seen http.Header
}

func (p *payments) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	p.seen = r.Header.Clone()
	p.mu.Unlock()
	fmt.Fprintf(w, `{"charged":true,"caller":%q}`, r.Header.Get("X-Auth-Client-Id"))
}

func run(ctx context.Context, out io.Writer) error {
	issuer, err := devissuer.Start("127.0.0.1:0", map[string]string{"orders": "orders-secret"})
	if err != nil {
		return err
	}
	defer issuer.Close()
	app := &payments{}
	appAddr, stopApp, err := serve(app)
	if err != nil {
		return err
	}
	defer stopApp()

	addrs, err := freeAddrs(5)
	if err != nil {
		return err
	}
	bInbound, bAdmin, aOutbound, aAdmin := addrs[0], addrs[1], addrs[2], addrs[3]
	sidecarB := map[string]string{
		"AUTHSIDECAR_INBOUND_ISSUERS":         issuer.URL,
		"AUTHSIDECAR_INBOUND_AUDIENCES":       "payments",
		"AUTHSIDECAR_INBOUND_REQUIRED_SCOPES": "payments:charge",
		"AUTHSIDECAR_INBOUND_UPSTREAM":        "http://" + appAddr,
		"AUTHSIDECAR_INBOUND_LISTEN":          bInbound,
		"AUTHSIDECAR_ADMIN_LISTEN":            bAdmin,
		"AUTHSIDECAR_LOG_LEVEL":               "error",
	}
	sidecarA := map[string]string{
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
		wg.Go(func() { errc <- sidecar.Run(sidecarCtx, cfg, "quickstart", io.Discard) })
	}
	defer func() { stopSidecars(); wg.Wait() }()

	fmt.Fprintf(out, "authsidecar quickstart: a development issuer at %s, the payments app behind sidecar B,\n", issuer.URL)
	fmt.Fprintln(out, "and the orders app calling payments through sidecar A.")
	fmt.Fprintln(out)
	if err := waitReady(ctx, errc, "http://"+bAdmin+"/readyz", "http://"+aAdmin+"/readyz"); err != nil {
		return err
	}
	return tellStory(ctx, out, issuer, app, aOutbound, bInbound, aAdmin, bAdmin)
}

func tellStory(ctx context.Context, out io.Writer, issuer *devissuer.Issuer, app *payments, aOutbound, bInbound, aAdmin, bAdmin string) error {
	fmt.Fprintf(out, "1. orders calls  POST http://%s/payments/charge  (plain HTTP, no token)\n", aOutbound)
	status, body, _, err := call(ctx, http.MethodPost, "http://"+aOutbound+"/payments/charge", "")
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "   → %d %s\n", status, body)
	if status != http.StatusOK {
		return fmt.Errorf("the call through the sidecars got %d, want 200", status)
	}
	reqs := issuer.Requests()
	fmt.Fprintf(out, "\n2. sidecar A asked the issuer for a token (%d request):\n", len(reqs))
	for _, r := range reqs {
		fmt.Fprintf(out, "   grant_type=client_credentials client_id=%s auth=%s audience=%s scope=%q granted=%v\n",
			r.ClientID, r.AuthMethod, r.Audience, r.Scope, r.Granted)
	}
	fmt.Fprintln(out, "\n3. sidecar B verified the JWT locally; the payments app saw these identity headers:")
	app.mu.Lock()
	for _, h := range []string{"X-Auth-Subject", "X-Auth-Issuer", "X-Auth-Client-Id", "X-Auth-Scopes"} {
		fmt.Fprintf(out, "   %s: %s\n", h, app.seen.Get(h))
	}
	fmt.Fprintf(out, "   Authorization: %q (the token stops at the sidecar)\n", app.seen.Get("Authorization"))
	app.mu.Unlock()

	fmt.Fprintf(out, "\n4. A second call reuses the cached token: ")
	if status, _, _, err = call(ctx, http.MethodPost, "http://"+aOutbound+"/payments/charge", ""); err != nil {
		return err
	}
	fmt.Fprintf(out, "%d, and the issuer still saw %d token request(s).\n", status, len(issuer.Requests()))

	fmt.Fprintf(out, "\n5. A caller that skips sidecar A calls sidecar B directly, without a token:\n")
	status, body, hdr, err := call(ctx, http.MethodPost, "http://"+bInbound+"/charge", "")
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "   → %d %s   WWW-Authenticate: %s\n", status, strings.TrimSpace(body), hdr.Get("WWW-Authenticate"))
	if status != http.StatusUnauthorized {
		return fmt.Errorf("the call without a token got %d, want 401", status)
	}
	fmt.Fprintln(out, "\n6. What the sidecars' /metrics say:")
	for _, m := range []struct{ admin, prefix string }{
		{aAdmin, "authsidecar_token_fetches_total"},
		{aAdmin, "authsidecar_outbound_requests_total"},
		{bAdmin, "authsidecar_inbound_requests_total{result=\"allowed\"}"},
		{bAdmin, "authsidecar_inbound_requests_total{result=\"unauthenticated\"}"},
		{bAdmin, "authsidecar_inbound_token_rejections_total{reason=\"missing\"}"},
	} {
		lines, err := metricLines(ctx, "http://"+m.admin+"/metrics", m.prefix)
		if err != nil {
			return err
		}
		for _, l := range lines {
			fmt.Fprintln(out, "   "+l)
		}
	}
	fmt.Fprintln(out, "\nDone: the call with a token got through, the call without one never reached the app.")
	return nil
}

func call(ctx context.Context, method, url, body string) (int, string, http.Header, error) {
	req, err := http.NewRequestWithContext(ctx, method, url, strings.NewReader(body))
	if err != nil {
		return 0, "", nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, "", nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(b)), resp.Header, err
}

func metricLines(ctx context.Context, url, prefix string) ([]string, error) {
	_, body, _, err := call(ctx, http.MethodGet, url, "")
	if err != nil {
		return nil, err
	}
	var out []string
	sc := bufio.NewScanner(strings.NewReader(body))
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), prefix) {
			out = append(out, sc.Text())
		}
	}
	sort.Strings(out)
	return out, nil
}

func waitReady(ctx context.Context, errc <-chan error, urls ...string) error {
	for _, u := range urls {
		for {
			if status, _, _, err := call(ctx, http.MethodGet, u, ""); err == nil && status == http.StatusOK {
				break
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

func serve(h http.Handler) (string, func(), error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	return ln.Addr().String(), func() { _ = srv.Close() }, nil
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
