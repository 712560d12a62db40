package main

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/authsidecar/authsidecar/internal/devissuer"
)

// TestOutboundServesWhileInboundDrains: after SIGTERM the app is finishing
// its own requests and may still call out, so the outbound port must keep
// working until inbound has drained.
func TestOutboundServesWhileInboundDrains(t *testing.T) {
	issuer, err := devissuer.Start("127.0.0.1:0", map[string]string{"orders": "s3cret"})
	if err != nil {
		t.Fatal(err)
	}
	defer issuer.Close()
	started, release := make(chan struct{}), make(chan struct{})
	slowApp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(started)
		<-release
		fmt.Fprint(w, "slow done")
	}))
	defer slowApp.Close()
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "upstream ok")
	}))
	defer upstream.Close()

	env, p := baseEnv(t, issuer.URL, slowApp.URL)
	outboundAddr := freeAddr(t)
	for k, v := range map[string]string{
		"AUTHSIDECAR_OUTBOUND_LISTEN": outboundAddr, "AUTHSIDECAR_OUTBOUND_ROUTES": "self,plain",
		"AUTHSIDECAR_OUTBOUND_ISSUER": issuer.URL, "AUTHSIDECAR_OUTBOUND_CLIENT_ID": "orders",
		"AUTHSIDECAR_OUTBOUND_CLIENT_SECRET": "s3cret",
		"AUTHSIDECAR_ROUTE_SELF_URL":         "http://" + p.inbound, "AUTHSIDECAR_ROUTE_SELF_AUDIENCE": "payments",
		"AUTHSIDECAR_ROUTE_PLAIN_URL": upstream.URL,
	} {
		env[k] = v
	}
	cancel, logs := startRun(t, env)
	waitFor(t, "readiness", 10*time.Second, func() bool { c, _ := get(t, "http://"+p.admin+"/readyz", nil); return c == 200 })

	slow := make(chan int, 1)
	go func() {
		c, _ := get(t, "http://"+outboundAddr+"/self/work", nil)
		slow <- c
	}()
	<-started
	done := make(chan error, 1)
	go func() { done <- cancel() }()
	waitFor(t, "readiness to turn 503", 5*time.Second, func() bool {
		c, _ := get(t, "http://"+p.admin+"/readyz", nil)
		return c == 503
	})
	if c, body := get(t, "http://"+outboundAddr+"/plain/x", nil); c != 200 || body != "upstream ok" {
		t.Errorf("outbound call during the inbound drain: %d %q, want 200", c, body)
	}
	close(release)
	if c := <-slow; c != 200 {
		t.Errorf("the in-flight call through both directions: %d, want 200", c)
	}
	if err := <-done; err != nil {
		t.Errorf("run() = %v\nlogs:\n%s", err, logs)
	}
}
