package e2e

// A rollout as the kubelet does it: SIGTERM, then the endpoint is withdrawn
// some time later, while callers keep opening new connections. With
// AUTHSIDECAR_SHUTDOWN_DELAY every listener keeps serving for the delay
// with /readyz at 503; then the in-flight requests drain and the process
// exits 0.

import (
	"net/http"
	"sync"
	"syscall"
	"testing"
	"time"
)

func TestARolloutDropsNothing(t *testing.T) {
	t.Parallel()
	// Callers start new requests until margin before the delay ends, so
	// that even on a loaded machine each is answered before the listeners
	// close: a connection still unanswered then is the kind the delay
	// exists to avoid, and in a real rollout it is one the endpoint
	// withdrawal has already stopped sending.
	const delay, margin = 3 * time.Second, time.Second
	idp := startIDP(t, chainIDPConfig())
	app := startApp(t)
	started, release := make(chan struct{}), make(chan struct{})
	var startOnce, releaseOnce sync.Once
	t.Cleanup(func() { releaseOnce.Do(func() { close(release) }) })
	app.Respond(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			startOnce.Do(func() { close(started) })
			<-release
		}
		_, _ = w.Write([]byte("ok"))
	})
	// One sidecar with both directions: inbound in front of the app, and
	// an outbound route to the app's own inbound port, as a service that
	// calls itself would have.
	addrs := freeSidecarAddrs(t)
	s := startSidecar(t, mergeEnv(addrs.Env(), map[string]string{
		"AUTHSIDECAR_INBOUND_ISSUERS":                idp.Issuer,
		"AUTHSIDECAR_INBOUND_AUDIENCES":              paymentsRS,
		"AUTHSIDECAR_INBOUND_UPSTREAM":               app.URL,
		"AUTHSIDECAR_OUTBOUND_ROUTES":                "self",
		"AUTHSIDECAR_OUTBOUND_TOKEN_URL":             idp.TokenURL(),
		"AUTHSIDECAR_OUTBOUND_CLIENT_ID":             basicClient,
		"AUTHSIDECAR_OUTBOUND_CLIENT_SECRET":         basicSecret,
		"AUTHSIDECAR_ROUTE_SELF_URL":                 addrs.InboundURL(),
		"AUTHSIDECAR_ROUTE_SELF_RESOURCE":            paymentsRS,
		"AUTHSIDECAR_ROUTE_SELF_SCOPES":              "payments:write",
		"AUTHSIDECAR_SHUTDOWN_DELAY":                 delay.String(),
		"AUTHSIDECAR_SHUTDOWN_GRACE":                 "10s",
		"AUTHSIDECAR_OUTBOUND_READY_REQUIRES_TOKENS": "true",
	}))
	s.WaitReady(t, addrs.AdminURL())
	tok := bearer(idp.ClientCredentialsToken(t, basicClient, basicSecret, paymentsRS, "payments:write").AccessToken)

	inFlight := make(chan reply, 1)
	go func() {
		r, err := tryCall(http.MethodGet, addrs.InboundURL()+"/slow", nil, tok)
		if err != nil {
			r = reply{Body: []byte(err.Error())}
		}
		inFlight <- r
	}()
	<-started

	// Callers on new connections, both ports, until the delay is over.
	type attempt struct {
		at     time.Duration
		port   string
		status int
		err    error
	}
	var (
		mu       sync.Mutex
		attempts []attempt
	)
	var callers sync.WaitGroup
	fresh := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	var signalled time.Time
	sigAt := make(chan struct{}) // closed once signalled is set
	for _, target := range []struct{ port, url string }{
		{"inbound", addrs.InboundURL() + "/x"}, {"outbound", addrs.OutboundURL() + "/self/x"},
	} {
		callers.Go(func() {
			<-sigAt
			for time.Since(signalled) < delay-margin {
				req, _ := http.NewRequest(http.MethodGet, target.url, nil)
				if target.port == "inbound" {
					req.Header.Set("Authorization", tok["Authorization"])
				}
				resp, err := fresh.Do(req)
				a := attempt{at: time.Since(signalled), port: target.port, err: err}
				if err == nil {
					a.status = resp.StatusCode
					resp.Body.Close()
				}
				mu.Lock()
				attempts = append(attempts, a)
				mu.Unlock()
				time.Sleep(20 * time.Millisecond)
			}
		})
	}
	if err := s.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	signalled = time.Now()
	close(sigAt)
	eventually(t, time.Second, "/readyz turns 503", func() (bool, string) {
		st, body := getStatus(addrs.AdminURL() + "/readyz")
		return st == http.StatusServiceUnavailable, body
	})
	readyz := 0
	for time.Since(signalled) < delay-margin {
		if st, _ := getStatus(addrs.AdminURL() + "/readyz"); st != http.StatusServiceUnavailable {
			t.Errorf("%s after SIGTERM /readyz answered %d, want 503 throughout the delay", time.Since(signalled).Round(time.Millisecond), st)
		}
		readyz++
		time.Sleep(100 * time.Millisecond)
	}
	callers.Wait()
	if waited := time.Since(signalled); waited >= delay {
		t.Fatalf("the callers' last requests took until %s after SIGTERM, past the %s delay: the machine is too slow for this test", waited, delay)
	}

	served := map[string]int{}
	for _, a := range attempts {
		if a.err != nil || a.status != http.StatusOK {
			t.Errorf("%s after SIGTERM, a new connection to the %s port: status %d, %v; want 200", a.at.Round(time.Millisecond), a.port, a.status, a.err)
			continue
		}
		served[a.port]++
	}
	t.Logf("during the %s delay: %d new connections served (%v), 0 refused; /readyz 503 on %d polls", delay, len(attempts), served, readyz)
	if served["inbound"] < 10 || served["outbound"] < 10 {
		t.Errorf("served %v new connections during the delay, want at least 10 per port", served)
	}

	// The delay over, the listeners close and the request in flight drains.
	time.Sleep(delay)
	if s.Exited() {
		t.Fatal("the sidecar exited with a request in flight")
	}
	releaseOnce.Do(func() { close(release) })
	if r := <-inFlight; r.Status != http.StatusOK || string(r.Body) != "ok" {
		t.Errorf("the request in flight at SIGTERM: %s; want 200 ok", r)
	}
	if code, inTime := s.WaitTimeout(10 * time.Second); code != 0 || !inTime {
		t.Errorf("exit code %d (by itself: %v), want 0", code, inTime)
	}
}
