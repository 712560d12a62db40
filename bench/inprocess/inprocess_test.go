package inprocess

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"github.com/authsidecar/authsidecar/bench/loadbench"
	"github.com/authsidecar/authsidecar/config"
	"github.com/authsidecar/authsidecar/internal/sidecar"
)

// world is the app, the bare proxy and a sidecar (assembled exactly as the
// binary assembles it, by sidecar.Run) in this process.
type world struct {
	issuer  *loadbench.Issuer
	app     *httptest.Server
	bare    *httptest.Server
	inbound string
	out     string
}

func newWorld(b *testing.B, extraEnv map[string]string) *world {
	b.Helper()
	w := &world{}
	var err error
	if w.issuer, err = loadbench.StartIssuer(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = w.issuer.Close() })
	w.app = httptest.NewServer(loadbench.AppHandler())
	b.Cleanup(w.app.Close)
	appURL, _ := url.Parse(w.app.URL)
	w.bare = httptest.NewServer(loadbench.BareProxy(appURL, loadbench.BareOptions{}))
	b.Cleanup(w.bare.Close)

	var admin string
	for _, p := range []*string{&w.inbound, &w.out, &admin} {
		if *p, err = loadbench.FreePort(); err != nil {
			b.Fatal(err)
		}
	}
	env := map[string]string{
		"AUTHSIDECAR_INBOUND_LISTEN":         w.inbound,
		"AUTHSIDECAR_OUTBOUND_LISTEN":        w.out,
		"AUTHSIDECAR_ADMIN_LISTEN":           admin,
		"AUTHSIDECAR_INBOUND_UPSTREAM":       w.app.URL,
		"AUTHSIDECAR_INBOUND_ISSUERS":        w.issuer.URL,
		"AUTHSIDECAR_INBOUND_AUDIENCES":      loadbench.Audience,
		"AUTHSIDECAR_LOG_LEVEL":              "error",
		"AUTHSIDECAR_SHUTDOWN_GRACE":         "1s",
		"AUTHSIDECAR_OUTBOUND_ROUTES":        "app",
		"AUTHSIDECAR_OUTBOUND_TOKEN_URL":     w.issuer.URL + "/token",
		"AUTHSIDECAR_OUTBOUND_CLIENT_ID":     loadbench.OutboundClientID,
		"AUTHSIDECAR_OUTBOUND_CLIENT_SECRET": loadbench.OutboundClientSecret,
		"AUTHSIDECAR_ROUTE_APP_URL":          w.app.URL,
	}
	for k, v := range extraEnv {
		env[k] = v
	}
	cfg, err := config.Load(env)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sidecar.Run(ctx, cfg, "bench", io.Discard) }()
	b.Cleanup(func() {
		cancel()
		<-done
	})
	waitReady(b, "http://"+admin+"/readyz", done)
	return w
}

func waitReady(b *testing.B, u string, done <-chan error) {
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get(u)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		select {
		case err := <-done:
			b.Fatalf("the sidecar stopped: %v", err)
		case <-time.After(20 * time.Millisecond):
		}
	}
	b.Fatal("the sidecar did not get ready")
}

// drive sends b.N GETs to target from parallel goroutines over keep-alive
// connections and fails on any non-200. Besides ns/op (wall time, which
// other work on the machine inflates) it reports cpu-ns/op: the process's
// CPU time per request, client, proxy and app together.
func drive(b *testing.B, target loadbench.Target) {
	client := loadbench.NewClient(64, 10*time.Second)
	defer client.CloseIdleConnections()
	b.SetParallelism(8) // 8 × GOMAXPROCS concurrent requests, as a closed-loop load
	b.ReportAllocs()
	cpu0, cpuErr := loadbench.SelfCPU()
	defer func() {
		b.StopTimer()
		if cpu1, err := loadbench.SelfCPU(); err == nil && cpuErr == nil && b.N > 0 {
			b.ReportMetric(float64(cpu1-cpu0)/float64(b.N), "cpu-ns/op")
		}
	}()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		req, _ := http.NewRequest(http.MethodGet, target.URL, nil)
		i := 0
		for pb.Next() {
			if n := len(target.Tokens); n > 0 {
				req.Header["Authorization"] = []string{"Bearer " + target.Tokens[i%n]}
				i += 7919 // a prime: goroutines walk the tokens in different orders
			}
			resp, err := client.Do(req)
			if err != nil {
				b.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				b.Fatalf("status %d", resp.StatusCode)
			}
		}
	})
}

const path = "/api/orders/42?view=summary"

// BenchmarkProxies is one request through each proxy to the app, all in
// this process over loopback: ns/op is the whole round trip (client,
// proxy, app), so the difference between two cases is what the sidecar
// adds. Profile one case with, for example:
//
//	go test -run '^$' -bench 'Proxies/inbound-rs256$' -benchtime 5s -cpuprofile cpu.out ./bench/inprocess/
//	go tool pprof -top cpu.out
func BenchmarkProxies(b *testing.B) {
	w := newWorld(b, nil)
	in := "http://" + w.inbound + path
	cases := []struct {
		name   string
		target func(b *testing.B) loadbench.Target
	}{
		{"direct", plain(w.app.URL + path)},
		{"bare-proxy", plain(w.bare.URL + path)},
		{"inbound-rs256", signed(in, w.issuer.SignRS256, 1)},
		{"inbound-es256", signed(in, w.issuer.SignES256, 1)},
		{"inbound-rs256-mix2000", signed(in, w.issuer.SignRS256, 2000)},
		{"outbound", plain("http://" + w.out + "/app" + path)},
	}
	for _, c := range cases {
		// Tokens are signed inside the case, so a profile of one case
		// holds no other case's signing.
		b.Run(c.name, func(b *testing.B) { drive(b, c.target(b)) })
	}
}

func plain(u string) func(*testing.B) loadbench.Target {
	return func(*testing.B) loadbench.Target { return loadbench.Target{URL: u} }
}

func signed(u string, sign func(int) ([]string, error), n int) func(*testing.B) loadbench.Target {
	return func(b *testing.B) loadbench.Target {
		tokens, err := sign(n)
		if err != nil {
			b.Fatal(err)
		}
		return loadbench.Target{URL: u, Tokens: tokens}
	}
}

// BenchmarkInboundUncached is inbound with the verified-token cache off
// (AUTHSIDECAR_INBOUND_TOKEN_CACHE_SIZE=0): every request pays the full
// signature check, as every first sight of a token does.
func BenchmarkInboundUncached(b *testing.B) {
	w := newWorld(b, map[string]string{"AUTHSIDECAR_INBOUND_TOKEN_CACHE_SIZE": "0"})
	in := "http://" + w.inbound + path
	b.Run("rs256", func(b *testing.B) { drive(b, signed(in, w.issuer.SignRS256, 1)(b)) })
	b.Run("es256", func(b *testing.B) { drive(b, signed(in, w.issuer.SignES256, 1)(b)) })
}
