package e2e

// The sidecars when things go wrong around them: keys rotated at the
// identity provider, the provider down after start or not up at start, and
// SIGTERM with a request in flight.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// unknownKidCooldown is how long after a JWKS fetch a token with an
// unknown kid makes the sidecar fetch again (SPEC: at most once per 10 s).
const unknownKidCooldown = 10 * time.Second

// jwksRefreshes returns B's successful and failed JWKS fetches.
func jwksRefreshes(t testing.TB, b *inboundSidecar, issuer string) (ok, failed float64) {
	t.Helper()
	m := scrape(t, b.Addrs.AdminURL())
	return sumMetric(m, "authsidecar_jwks_refreshes_total", "issuer", issuer, "result", "success"),
		sumMetric(m, "authsidecar_jwks_refreshes_total", "issuer", issuer, "result", "error")
}

// sleepUntil sleeps until at, if it is in the future.
func sleepUntil(at time.Time) {
	if d := time.Until(at); d > 0 {
		time.Sleep(d)
	}
}

// forgedLike returns a token with raw's claims, signed by a key the
// provider never had (so with a kid it never published).
func forgedLike(t testing.TB, raw string) string {
	t.Helper()
	return signToken(t, newRSAKey(t, "rsa-forged-"+randomID(t)), tokenClaims(t, raw))
}

func TestRotatedIDPKeysAreAcceptedWithoutRestart(t *testing.T) {
	t.Parallel()
	oldRSA := newRSAKey(t, "rsa-old-"+randomID(t))
	ec := newECKey(t, "ec-"+randomID(t))
	cfg := chainIDPConfig()
	cfg.Keys = []*IDPKey{oldRSA, ec}
	idp := startIDP(t, cfg)
	appB := startApp(t)
	b := startInbound(t, idp, paymentsRS, "payments:read", appB, nil)
	b.WaitReady(t, b.Addrs.AdminURL())
	// B's first JWKS fetch began before it was ready, so its cooldown ends
	// before readyAt+10s.
	readyAt := time.Now()
	inB := b.Addrs.InboundURL() + "/orders/7"
	if ok, failed := jwksRefreshes(t, b, idp.Issuer); ok != 1 || failed != 0 {
		t.Fatalf("B made %v successful and %v failed JWKS fetches at start, want 1 and 0", ok, failed)
	}

	oldTok := idp.ClientCredentialsToken(t, basicClient, basicSecret, paymentsRS, "payments:read").AccessToken
	if kid := tokenKID(t, oldTok); kid != oldRSA.KID {
		t.Fatalf("token signed by %q, want the old key %q", kid, oldRSA.KID)
	}
	if r := call(t, http.MethodGet, inB, nil, bearer(oldTok)); r.Status != http.StatusOK {
		t.Fatalf("a token signed by the old key before rotation: %s", r)
	}

	// Rotation: the new key comes first and signs, the old one is still
	// published for the tokens it signed.
	newRSA := newRSAKey(t, "rsa-new-"+randomID(t))
	idp.Restart(t, []*IDPKey{newRSA, oldRSA, ec})
	newTok := idp.ClientCredentialsToken(t, postClient, postSecret, paymentsRS, "payments:read").AccessToken
	if kid := tokenKID(t, newTok); kid != newRSA.KID {
		t.Fatalf("token signed by %q after rotation, want the new key %q", kid, newRSA.KID)
	}

	if time.Since(readyAt) < unknownKidCooldown-2*time.Second {
		// Too soon after B's last fetch: the unknown kid is refused
		// without asking the provider.
		r := call(t, http.MethodGet, inB, nil, bearer(newTok))
		if r.Status != http.StatusUnauthorized || r.errorCode() != "invalid_token" {
			t.Errorf("new kid within the cooldown: %s; want 401 invalid_token", r)
		}
		if ok, _ := jwksRefreshes(t, b, idp.Issuer); ok != 1 {
			t.Errorf("B fetched the JWKS again within %s of its last fetch (%v fetches)", unknownKidCooldown, ok)
		}
	} else {
		t.Logf("rotation took until %s after readiness: not checking the cooldown", time.Since(readyAt).Round(time.Millisecond))
	}

	// Forged tokens for the burst below, made now: 20 RSA keys take
	// seconds under -race on a busy machine, and the cooldown wait is
	// idle time anyway.
	forged := make([]string, 20)
	for i := range forged {
		forged[i] = forgedLike(t, newTok)
	}

	// Once the cooldown is over, the next token with the new kid makes B
	// fetch the JWKS once, and passes.
	sleepUntil(readyAt.Add(unknownKidCooldown))
	appB.Reset()
	fetchAt := time.Now() // no later than B's second fetch began
	eventually(t, 10*time.Second, "a token signed by the rotated key passes", func() (bool, string) {
		fetchAt = time.Now()
		r := call(t, http.MethodGet, inB, nil, bearer(newTok))
		return r.Status == http.StatusOK, r.String()
	})
	if reqs := appB.Requests(); len(reqs) != 1 {
		t.Errorf("app B saw %d requests, want the 1 that passed", len(reqs))
	} else {
		checkIdentity(t, reqs[0], idp.Issuer, postClient, "payments:read")
	}
	if ok, failed := jwksRefreshes(t, b, idp.Issuer); ok != 2 || failed != 0 {
		t.Errorf("B made %v successful and %v failed JWKS fetches in all, want 2 and 0", ok, failed)
	}
	if r := call(t, http.MethodGet, inB, nil, bearer(oldTok)); r.Status != http.StatusOK {
		t.Errorf("a token signed by the old, still published key after rotation: %s", r)
	}

	// A burst of forged kids right after that fetch: all refused, none
	// makes B ask the provider.
	appB.Reset()
	var wg sync.WaitGroup
	for _, tok := range forged {
		wg.Go(func() {
			r, err := tryCall(http.MethodGet, inB, nil, bearer(tok))
			if err != nil || r.Status != http.StatusUnauthorized {
				t.Errorf("forged kid: %v %v; want 401", r, err)
			}
		})
	}
	wg.Wait()
	checkAppSawNothing(t, appB, "forged kids")
	ok, failed := jwksRefreshes(t, b, idp.Issuer)
	switch {
	case time.Since(fetchAt) < unknownKidCooldown && (ok != 2 || failed != 0):
		t.Errorf("after 20 forged kids B made %v successful and %v failed JWKS fetches, want still 2 and 0", ok, failed)
	case ok > 3 || failed != 0:
		// The burst outlasted the cooldown (a very busy machine): one
		// more fetch is allowed, not one per kid.
		t.Errorf("after 20 forged kids, %s after the last fetch, B made %v successful and %v failed JWKS fetches, want at most 3 and 0",
			time.Since(fetchAt).Round(time.Millisecond), ok, failed)
	}
	if b.Exited() {
		t.Errorf("B exited; rotation must need no restart")
	}
}

func TestIDPOutageKeepsLoadedKeysAndCachedTokens(t *testing.T) {
	t.Parallel()
	// A second resource whose tokens live 8 s: A's refresh of it falls
	// due (at 80%) during the outage.
	const shortLived = "http://payments-short.example"
	cfg := chainIDPConfig()
	cfg.Resources[shortLived] = IDPResource{Scopes: []string{"payments:write"}, TTL: 8 * time.Second}
	idp := startIDP(t, cfg)
	appB := startApp(t)
	b := startInbound(t, idp, paymentsRS+","+shortLived, "payments:write", appB, nil)
	a := startOutbound(t, idp, basicClient, basicSecret, "client_secret_basic", "",
		outboundRoute{Name: "payments", URL: b.Addrs.InboundURL(), Resource: paymentsRS, Scopes: "payments:read payments:write"},
		outboundRoute{Name: "payments-short", URL: b.Addrs.InboundURL(), Resource: shortLived, Scopes: "payments:write"},
	)
	b.WaitReady(t, b.Addrs.AdminURL())
	readyAt := time.Now()
	a.WaitReady(t, a.Addrs.AdminURL())

	viaA := a.Addrs.OutboundURL() + "/payments/charges?via=a"
	viaShort := a.Addrs.OutboundURL() + "/payments-short/charges?via=short"
	inB := b.Addrs.InboundURL() + "/charges?via=direct"
	if r := call(t, http.MethodPost, viaA, []byte("before"), nil); r.Status != http.StatusOK {
		t.Fatalf("through A before the outage: %s", r)
	}
	if r := call(t, http.MethodPost, viaShort, []byte("before"), nil); r.Status != http.StatusOK {
		t.Fatalf("through A's short-lived route before the outage: %s", r)
	}
	direct := idp.ClientCredentialsToken(t, postClient, postSecret, paymentsRS, "payments:write").AccessToken
	if r := call(t, http.MethodPost, inB, []byte("before"), bearer(direct)); r.Status != http.StatusOK {
		t.Fatalf("directly to B before the outage: %s", r)
	}
	forged := forgedLike(t, direct)
	escalated := tamperClaims(t, direct, func(c map[string]any) {
		c["client_id"], c["sub"] = "svc-admin", "svc-admin"
	})

	idp.Stop()
	appB.Reset()
	check := func(when string) {
		t.Helper()
		if r := call(t, http.MethodPost, viaA, []byte(when), nil); r.Status != http.StatusOK {
			t.Errorf("%s: through A with its cached token: %s", when, r)
		} else {
			seen := appB.Last(t)
			if seen.RawQuery != "via=a" || string(seen.Body) != when {
				t.Errorf("%s: app B saw %s with body %q, want A's call", when, seen.RequestURI, seen.Body)
			}
			checkIdentity(t, seen, idp.Issuer, basicClient, "payments:read payments:write")
		}
		if r := call(t, http.MethodPost, inB, []byte(when), bearer(direct)); r.Status != http.StatusOK {
			t.Errorf("%s: a token obtained before the outage: %s", when, r)
		} else {
			seen := appB.Last(t)
			if seen.RawQuery != "via=direct" || string(seen.Body) != when {
				t.Errorf("%s: app B saw %s with body %q, want the direct call", when, seen.RequestURI, seen.Body)
			}
			checkIdentity(t, seen, idp.Issuer, postClient, "payments:write")
		}
		n := len(appB.Requests())
		for name, tok := range map[string]string{"unknown kid": forged, "tampered claims": escalated} {
			r := call(t, http.MethodPost, inB, []byte(when), bearer(tok))
			if r.Status != http.StatusUnauthorized || r.errorCode() != "invalid_token" {
				t.Errorf("%s: %s: %s; want 401 invalid_token", when, name, r)
			}
		}
		if got := len(appB.Requests()); got != n {
			t.Errorf("%s: a refused token reached app B", when)
		}
		if st, body := getStatus(b.Addrs.AdminURL() + "/readyz"); st != http.StatusOK {
			t.Errorf("%s: B /readyz %d %s; keys are loaded, want 200", when, st, body)
		}
	}
	check("right after the IdP stopped")

	// The short-lived token's refresh fails; until it expires A keeps
	// using it, and after that A answers 503 and sends nothing.
	eventually(t, 12*time.Second, "A's refresh of the short-lived token fails", func() (bool, string) {
		v := metric(t, a.Addrs.AdminURL(), "authsidecar_token_fetches_total", "route", "payments-short", "result", "error")
		return v >= 1, fmt.Sprint(v, " failed fetches")
	})
	expiry := time.UnixMilli(int64(1000 * metric(t, a.Addrs.AdminURL(), "authsidecar_token_expiry_timestamp_seconds", "route", "payments-short")))
	if time.Until(expiry) > 500*time.Millisecond {
		if r := call(t, http.MethodPost, viaShort, []byte("refresh failed"), nil); r.Status != http.StatusOK {
			t.Errorf("short-lived route after a failed refresh, %s before expiry: %s; want 200 with the current token",
				time.Until(expiry).Round(time.Millisecond), r)
		}
	} else {
		t.Logf("the failed refresh was seen only %s before expiry: not checking the token stays in use", time.Until(expiry))
	}
	sleepUntil(expiry.Add(300 * time.Millisecond))
	if r := call(t, http.MethodPost, viaShort, []byte("expired"), nil); r.Status != http.StatusServiceUnavailable || r.errorCode() != "token_unavailable" {
		t.Errorf("short-lived route after its token expired with the IdP down: %s; want 503 token_unavailable", r)
	}
	for _, r := range appB.Requests() {
		if r.RawQuery == "via=short" && string(r.Body) != "refresh failed" {
			t.Errorf("app B saw the short-lived route's call %q during the outage", r.Body)
		}
	}

	// Past B's cooldown the unknown kid makes B ask the provider, which
	// is down: the fetch fails and B keeps the keys it has.
	sleepUntil(readyAt.Add(unknownKidCooldown + 200*time.Millisecond))
	if r := call(t, http.MethodGet, inB, nil, bearer(forged)); r.Status != http.StatusUnauthorized {
		t.Errorf("unknown kid with the IdP down: %s; want 401", r)
	}
	if ok, failed := jwksRefreshes(t, b, idp.Issuer); ok != 1 || failed != 1 {
		t.Errorf("B made %v successful and %v failed JWKS fetches, want 1 and 1", ok, failed)
	}
	check("after a failed JWKS fetch")
	// The failed fetch counts for the cooldown too: check's unknown kid
	// made no second attempt.
	if ok, failed := jwksRefreshes(t, b, idp.Issuer); ok != 1 || failed != 1 {
		t.Errorf("B made %v successful and %v failed JWKS fetches, want still 1 and 1", ok, failed)
	}

	am, bm := scrape(t, a.Addrs.AdminURL()), scrape(t, b.Addrs.AdminURL())
	if ok, failed := sumMetric(am, "authsidecar_token_fetches_total", "route", "payments", "result", "success"),
		sumMetric(am, "authsidecar_token_fetches_total", "route", "payments", "result", "error"); ok != 1 || failed != 0 {
		t.Errorf("A made %v successful and %v failed token fetches, want 1 and 0: the cached token serves", ok, failed)
	}
	if v := sumMetric(bm, "authsidecar_inbound_token_rejections_total", "reason", "bad_signature"); v != 2 {
		t.Errorf("B counted %v bad_signature rejections, want 2", v)
	}
	if v := sumMetric(bm, "authsidecar_inbound_token_rejections_total", "reason", "unknown_key"); v != 3 {
		t.Errorf("B counted %v unknown_key rejections, want 3", v)
	}
	var got int
	for _, r := range appB.Requests() {
		if r.RawQuery != "via=short" {
			got++
		}
	}
	if got != 4 {
		t.Errorf("app B saw %d requests during the outage, want 4", got)
	}
}

func TestIssuerUnreachableAtStartThenComingUp(t *testing.T) {
	t.Parallel()
	idp := startIDP(t, chainIDPConfig())
	tok := idp.ClientCredentialsToken(t, basicClient, basicSecret, paymentsRS, "payments:write").AccessToken
	idp.Stop() // its port is known; nothing listens there now

	appB := startApp(t)
	b := startInbound(t, idp, paymentsRS, "payments:write", appB, nil)
	a := startOutbound(t, idp, postClient, postSecret, "client_secret_post", "", outboundRoute{
		Name: "payments", URL: b.Addrs.InboundURL(), Resource: paymentsRS, Scopes: "payments:write",
	})
	for _, admin := range []string{b.Addrs.AdminURL(), a.Addrs.AdminURL()} {
		eventually(t, 20*time.Second, admin+"/healthz answers 200", func() (bool, string) {
			st, body := getStatus(admin + "/healthz")
			return st == http.StatusOK, body
		})
	}
	inB := b.Addrs.InboundURL() + "/charges"
	viaA := a.Addrs.OutboundURL() + "/payments/charges"

	st, body := getStatus(b.Addrs.AdminURL() + "/readyz")
	var ready struct {
		NotReady []string `json:"not_ready"`
	}
	_ = json.Unmarshal([]byte(body), &ready)
	if st != http.StatusServiceUnavailable || !strings.Contains(strings.Join(ready.NotReady, ","), idp.Issuer) {
		t.Errorf("B /readyz with the issuer down: %d %s; want 503 naming %s", st, body, idp.Issuer)
	}
	if r := call(t, http.MethodPost, inB, []byte("x"), bearer(tok)); r.Status != http.StatusServiceUnavailable {
		t.Errorf("B with no keys loaded: %s; want 503", r)
	}
	if r := call(t, http.MethodPost, viaA, []byte("x"), nil); r.Status != http.StatusServiceUnavailable || r.errorCode() != "token_unavailable" {
		t.Errorf("A with no token to be had: %s; want 503 token_unavailable", r)
	}
	checkAppSawNothing(t, appB, "issuer down")
	eventually(t, 5*time.Second, "B counts its failed JWKS fetch", func() (bool, string) {
		_, failed := jwksRefreshes(t, b, idp.Issuer)
		return failed >= 1, ""
	})

	// A's refresh loop retries with backoff (1 s, 2 s, 4 s, 8 s, …); let
	// it reach 8 s, far longer than a recovery may take.
	eventually(t, 20*time.Second, "A's fourth failed token fetch", func() (bool, string) {
		v := metric(t, a.Addrs.AdminURL(), "authsidecar_token_fetches_total", "route", "payments", "result", "error")
		return v >= 4, fmt.Sprint(v, " failed fetches")
	})

	idp.Start(t)
	returned := time.Now()
	// The next call that waits fetches at once instead of waiting out the
	// backoff, in A for its token and in B for its keys: a caller polling
	// every 50 ms is through both within 1 s.
	var recovered time.Duration
	for {
		r := call(t, http.MethodPost, viaA, []byte("via a"), nil)
		if r.Status == http.StatusOK {
			recovered = time.Since(returned)
			break
		}
		if r.Status != http.StatusServiceUnavailable || r.Header.Get("Retry-After") != "1" {
			t.Fatalf("A while the issuer comes back: %s %v; want 503 with Retry-After: 1", r, r.Header)
		}
		if code := r.Header.Get("X-Authsidecar-Error"); code != "token_unavailable" && code != "" {
			t.Fatalf("A while the issuer comes back: X-Authsidecar-Error %q; want A's token_unavailable or B's answer, which carries none", code)
		}
		if time.Since(returned) > 10*time.Second {
			t.Fatalf("A has no token 10 s after the issuer returned: %s", r)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if recovered > time.Second {
		t.Errorf("the first call through A succeeded %s after the issuer returned, want within 1s", recovered.Round(time.Millisecond))
	}
	t.Logf("the first call through A succeeded %s after the issuer returned", recovered.Round(time.Millisecond))
	seen := appB.Last(t)
	if string(seen.Body) != "via a" {
		t.Errorf("app B last saw body %q, want A's call", seen.Body)
	}
	checkIdentity(t, seen, idp.Issuer, postClient, "payments:write")
	b.WaitReady(t, b.Addrs.AdminURL())
	if r := call(t, http.MethodPost, inB, []byte("direct"), bearer(tok)); r.Status != http.StatusOK {
		t.Errorf("B once the issuer is up: %s; want 200", r)
	} else {
		checkIdentity(t, appB.Last(t), idp.Issuer, basicClient, "payments:write")
	}
	if got := len(appB.Requests()); got != 2 {
		t.Errorf("app B saw %d requests, want 2: none while the issuer was down", got)
	}
	am := scrape(t, a.Addrs.AdminURL())
	if ok := sumMetric(am, "authsidecar_token_fetches_total", "route", "payments", "result", "success"); ok != 1 {
		t.Errorf("A made %v successful token fetches, want 1", ok)
	}
	if failed := sumMetric(am, "authsidecar_token_fetches_total", "route", "payments", "result", "error"); failed < 1 {
		t.Errorf("A counted %v failed token fetches while the issuer was down, want at least 1", failed)
	}
}

func TestSIGTERMDrainsAnInFlightRequest(t *testing.T) {
	t.Parallel()
	idp := startIDP(t, chainIDPConfig())
	t.Run("directly to B, B stopped", func(t *testing.T) {
		t.Parallel()
		testDrain(t, idp, false)
	})
	t.Run("through A and B, both stopped", func(t *testing.T) {
		t.Parallel()
		testDrain(t, idp, true)
	})
}

// testDrain sends a slow call to app B, directly or through sidecar A,
// and SIGTERMs every sidecar on its way while app B is still working on it.
func testDrain(t *testing.T, idp *IDP, viaA bool) {
	appB := startApp(t)
	started, release := make(chan struct{}), make(chan struct{})
	var startOnce, releaseOnce sync.Once
	t.Cleanup(func() { releaseOnce.Do(func() { close(release) }) }) // before the app closes
	appB.Respond(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			startOnce.Do(func() { close(started) })
			select {
			case <-release:
			case <-time.After(15 * time.Second):
			}
		}
		_, _ = io.WriteString(w, "slow done")
	})
	grace := map[string]string{"AUTHSIDECAR_SHUTDOWN_GRACE": "10s"}
	b := startInbound(t, idp, paymentsRS, "payments:write", appB, grace)
	b.WaitReady(t, b.Addrs.AdminURL())
	type stoppable struct {
		name  string
		s     *Sidecar
		admin string
	}
	sidecars := []stoppable{{"B", b.Sidecar, b.Addrs.AdminURL()}}
	callURL := b.Addrs.InboundURL() + "/slow?n=1"
	header := bearer(idp.ClientCredentialsToken(t, basicClient, basicSecret, paymentsRS, "payments:write").AccessToken)
	if viaA {
		addrs := freeSidecarAddrs(t)
		a := startSidecar(t, mergeEnv(addrs.Env(), grace, map[string]string{
			"AUTHSIDECAR_OUTBOUND_ROUTES":         "payments",
			"AUTHSIDECAR_OUTBOUND_TOKEN_URL":      idp.TokenURL(),
			"AUTHSIDECAR_OUTBOUND_CLIENT_ID":      basicClient,
			"AUTHSIDECAR_OUTBOUND_CLIENT_SECRET":  basicSecret,
			"AUTHSIDECAR_ROUTE_PAYMENTS_URL":      b.Addrs.InboundURL(),
			"AUTHSIDECAR_ROUTE_PAYMENTS_RESOURCE": paymentsRS,
			"AUTHSIDECAR_ROUTE_PAYMENTS_SCOPES":   "payments:write",
		}))
		a.WaitReady(t, addrs.AdminURL())
		sidecars = append(sidecars, stoppable{"A", a, addrs.AdminURL()})
		callURL = addrs.OutboundURL() + "/payments/slow?n=1"
		header = nil
	}

	type result struct {
		r   reply
		err error
	}
	done := make(chan result, 1)
	go func() {
		r, err := tryCall(http.MethodPost, callURL, []byte("in flight"), header)
		done <- result{r, err}
	}()
	select {
	case <-started:
	case res := <-done:
		t.Fatalf("the slow call ended before reaching the app: %v %v", res.r, res.err)
	case <-time.After(10 * time.Second):
		t.Fatal("the slow call did not reach the app within 10s")
	}

	for _, sc := range sidecars {
		if err := sc.s.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
	}
	for _, sc := range sidecars {
		eventually(t, 5*time.Second, sc.name+" /readyz turns 503 during the drain", func() (bool, string) {
			st, body := getStatus(sc.admin + "/readyz")
			return st == http.StatusServiceUnavailable && strings.Contains(body, "shutdown"), body
		})
	}
	time.Sleep(300 * time.Millisecond)
	for _, sc := range sidecars {
		if sc.s.Exited() {
			t.Fatalf("%s exited with a request in flight; output:\n%s", sc.name, sc.s.Output())
		}
	}
	select {
	case res := <-done:
		t.Fatalf("the in-flight call was answered before the app finished: %v %v", res.r, res.err)
	default:
	}

	releaseOnce.Do(func() { close(release) })
	select {
	case res := <-done:
		if res.err != nil || res.r.Status != http.StatusOK || string(res.r.Body) != "slow done" {
			t.Errorf("the in-flight call: %v %v; want 200 slow done", res.r, res.err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the in-flight call was not answered within 10s of the app finishing")
	}
	for _, sc := range sidecars {
		if code, inTime := sc.s.WaitTimeout(10 * time.Second); code != 0 || !inTime {
			t.Errorf("%s exit code %d (exited by itself: %v), want 0", sc.name, code, inTime)
		}
		var msgs []string
		for _, rec := range sc.s.LogLines() {
			if m, _ := rec["msg"].(string); m != "" {
				msgs = append(msgs, m)
			}
		}
		if !strings.Contains(strings.Join(msgs, "|"), "shutting down") {
			t.Errorf("%s logged %q, want a shutting down record", sc.name, msgs)
		}
	}
	reqs := appB.Requests()
	if len(reqs) != 1 || reqs[0].RequestURI != "/slow?n=1" || string(reqs[0].Body) != "in flight" {
		t.Fatalf("app B saw %d requests (%+v), want the one slow call", len(reqs), reqs)
	}
	checkIdentity(t, reqs[0], idp.Issuer, basicClient, "payments:write")
}

// TestEmergencyKeyRotationRetriesWithAFreshToken: the provider drops the
// key that signed A's cached token (a compromised key is removed, not
// kept). B refuses that token; A drops it, gets one signed by the new key
// and sends the call again, streamed body and all, so app B sees it once,
// whole, and app A never sees the refusal.
func TestEmergencyKeyRotationRetriesWithAFreshToken(t *testing.T) {
	t.Parallel()
	idp := startIDP(t, chainIDPConfig())
	appB := startApp(t)
	bAddrs := freeSidecarAddrs(t) // B starts after the rotation; A needs its address now
	a := startOutbound(t, idp, basicClient, basicSecret, "client_secret_basic", "", outboundRoute{
		Name: "payments", URL: "http://" + bAddrs.Inbound, Resource: paymentsRS, Scopes: "payments:write",
	})
	a.WaitReady(t, a.Addrs.AdminURL())
	eventually(t, 10*time.Second, "A fetches its token", func() (bool, string) {
		v := metric(t, a.Addrs.AdminURL(), "authsidecar_token_fetches_total", "route", "payments", "result", "success")
		return v == 1, fmt.Sprint(v, " fetches")
	})

	oldKID := idp.Keys()[0].KID
	idp.Restart(t, nil) // a fresh key set: the old keys are gone
	b := startSidecar(t, mergeEnv(bAddrs.Env(), map[string]string{
		"AUTHSIDECAR_INBOUND_ISSUERS":         idp.Issuer,
		"AUTHSIDECAR_INBOUND_AUDIENCES":       paymentsRS,
		"AUTHSIDECAR_INBOUND_REQUIRED_SCOPES": "payments:write",
		"AUTHSIDECAR_INBOUND_UPSTREAM":        appB.URL,
	}))
	b.WaitReady(t, bAddrs.AdminURL())

	// A streamed body (no Content-Length) larger than what a server
	// discards for a request it refuses unread.
	body := bytes.Repeat([]byte("0123456789abcdef"), 20<<10) // 320 KiB
	req, err := http.NewRequest(http.MethodPut, a.Addrs.OutboundURL()+"/payments/batches/9?part=1", io.MultiReader(bytes.NewReader(body)))
	if err != nil {
		t.Fatal(err)
	}
	if req.ContentLength != 0 {
		t.Fatal("the request would not be streamed")
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err := callClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	answer, _ := readAllLimited(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("app A got %d %s; want 200 after A retried with a fresh token", resp.StatusCode, truncate(answer, 300))
	}

	reqs := appB.Requests()
	if len(reqs) != 1 {
		t.Fatalf("app B saw %d requests, want 1", len(reqs))
	}
	seen := reqs[0]
	if seen.Method != http.MethodPut || seen.RequestURI != "/batches/9?part=1" || !bytes.Equal(seen.Body, body) {
		t.Errorf("app B saw %s %s with %d body bytes, want PUT /batches/9?part=1 with the %d bytes sent",
			seen.Method, seen.RequestURI, len(seen.Body), len(body))
	}
	checkIdentity(t, seen, idp.Issuer, basicClient, "payments:write")

	if v := metric(t, a.Addrs.AdminURL(), "authsidecar_token_fetches_total", "route", "payments", "result", "success"); v != 2 {
		t.Errorf("A made %v token fetches, want 2: the first, and one after B refused it", v)
	}
	if v := metric(t, bAddrs.AdminURL(), "authsidecar_inbound_token_rejections_total", "reason", "unknown_key"); v != 1 {
		t.Errorf("B refused %v tokens for an unknown key, want 1 (A's old token, signed by %s)", v, oldKID)
	}
	expectMetric(t, bAddrs.AdminURL(), "B's allowed requests", 1, "authsidecar_inbound_requests_total", "result", "allowed")
}
