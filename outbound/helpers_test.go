package outbound

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/authsidecar/authsidecar/metrics"
)

// waitLimit bounds every wait in these tests: a hang is a failure, not a
// timeout of the whole run.
const waitLimit = 10 * time.Second

const (
	testClientID = "orders-service"
	// testSecret has the characters RFC 6749 2.3.1 makes clients
	// form-encode in the Basic header.
	testSecret = "s3cr:t/+%&=ü"
)

// fakeClock is the caches' clock and timers; Advance fires due timers and
// armed reports every timer the refresh loop sets, so tests wait on it.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []fakeTimer
	armed  chan time.Duration
}

type fakeTimer struct {
	at      time.Time
	ch      chan time.Time // After's
	f       func()         // AfterFunc's
	stopped *atomic.Bool
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), armed: make(chan time.Duration, 1000)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	ch := make(chan time.Time, 1)
	c.timers = append(c.timers, fakeTimer{at: c.now.Add(d), ch: ch})
	c.mu.Unlock()
	c.armed <- d
	return ch
}

// AfterFunc is not reported on armed: only the refresh loop's timers are.
func (c *fakeClock) AfterFunc(d time.Duration, f func()) func() bool {
	stopped := new(atomic.Bool)
	c.mu.Lock()
	c.timers = append(c.timers, fakeTimer{at: c.now.Add(d), f: f, stopped: stopped})
	c.mu.Unlock()
	return func() bool { return !stopped.Swap(true) }
}

// Advance moves the clock and fires the timers due, AfterFunc's first.
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	now := c.now
	var due, kept []fakeTimer
	for _, t := range c.timers {
		if t.at.After(now) {
			kept = append(kept, t)
		} else {
			due = append(due, t)
		}
	}
	c.timers = kept
	c.mu.Unlock()
	for _, t := range due {
		if t.f != nil && !t.stopped.Swap(true) {
			t.f()
		}
	}
	for _, t := range due {
		if t.ch != nil {
			t.ch <- now
		}
	}
}

// nextArmed waits for the refresh loop to set its next timer.
func (c *fakeClock) nextArmed(t *testing.T) time.Duration {
	t.Helper()
	select {
	case d := <-c.armed:
		return d
	case <-time.After(waitLimit):
		t.Fatal("the refresh loop set no timer")
		return 0
	}
}

// tokenServer is a token endpoint (RFC 6749 4.4) that checks the protocol
// and counts calls.
type tokenServer struct {
	*httptest.Server
	t     *testing.T
	calls atomic.Int64

	mu        sync.Mutex
	secret    string
	style     string // "basic" or "post"
	status    int    // when not 0 and not 200: fail with it
	expiresIn int    // 0: no expires_in
	gate      chan struct{}
	forms     []url.Values // each request's parameters, client_secret removed
	issued    map[string]bool
	// authenticate, when set, replaces the client secret checks: the
	// endpoint of a client that authenticates another way.
	authenticate func(r *http.Request, form url.Values) error

	arrived chan struct{} // one value per request, as it arrives
}

func newTokenServer(t *testing.T) *tokenServer { return newTokenServerTLS(t, nil) }

// newTokenServerTLS serves over TLS with tlsConf (its certificate is
// httptest's), or plain HTTP when tlsConf is nil.
func newTokenServerTLS(t *testing.T, tlsConf *tls.Config) *tokenServer {
	ts := &tokenServer{t: t, secret: testSecret, style: "basic", expiresIn: 100,
		issued: map[string]bool{}, arrived: make(chan struct{}, 10000)}
	ts.Server = httptest.NewUnstartedServer(http.HandlerFunc(ts.serve))
	if tlsConf != nil {
		ts.TLS = tlsConf
		ts.Config.ErrorLog = log.New(io.Discard, "", 0) // refused handshakes are expected
		ts.StartTLS()
	} else {
		ts.Start()
	}
	t.Cleanup(ts.Close)
	t.Cleanup(ts.release) // before Close: let blocked requests end
	return ts
}

func (ts *tokenServer) set(f func(ts *tokenServer)) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	f(ts)
}

// block makes requests wait until release.
func (ts *tokenServer) block() { ts.set(func(ts *tokenServer) { ts.gate = make(chan struct{}) }) }

func (ts *tokenServer) release() {
	ts.set(func(ts *tokenServer) {
		if ts.gate != nil {
			close(ts.gate)
			ts.gate = nil
		}
	})
}

func (ts *tokenServer) waitArrival(t *testing.T) {
	t.Helper()
	select {
	case <-ts.arrived:
	case <-time.After(waitLimit):
		t.Fatal("no token request arrived")
	}
}

func (ts *tokenServer) valid(tok string) bool {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return ts.issued[tok]
}

// allForms returns every request's parameters, in order.
func (ts *tokenServer) allForms() []url.Values {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return append([]url.Values(nil), ts.forms...)
}

func (ts *tokenServer) lastForm() url.Values {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if len(ts.forms) == 0 {
		return nil
	}
	return ts.forms[len(ts.forms)-1]
}

func (ts *tokenServer) serve(w http.ResponseWriter, r *http.Request) {
	n := ts.calls.Add(1)
	ts.arrived <- struct{}{}
	ts.mu.Lock()
	gate := ts.gate
	ts.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-r.Context().Done():
			return
		}
	}
	form, err := ts.checkRequest(r)
	ts.mu.Lock()
	defer ts.mu.Unlock()
	ts.forms = append(ts.forms, form)
	switch {
	case err != nil:
		writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "invalid_client", "error_description": err.Error()})
	case ts.status != 0 && ts.status != http.StatusOK:
		writeJSON(w, ts.status, map[string]string{"error": "server_error"})
	default:
		tok := fmt.Sprintf("tok-%d", n)
		ts.issued[tok] = true
		body := map[string]any{"access_token": tok, "token_type": "Bearer"}
		if ts.expiresIn > 0 {
			body["expires_in"] = ts.expiresIn
		}
		writeJSON(w, http.StatusOK, body)
	}
}

// checkRequest checks the grant and the client authentication, and
// returns the parameters without the secret.
func (ts *tokenServer) checkRequest(r *http.Request) (url.Values, error) {
	if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/x-www-form-urlencoded" {
		ts.t.Errorf("token request: %s with Content-Type %q, want a form POST", r.Method, r.Header.Get("Content-Type"))
	}
	if err := r.ParseForm(); err != nil {
		return nil, err
	}
	form := r.PostForm
	switch got := form.Get("grant_type"); got {
	case "client_credentials":
	case grantTokenExchange:
		if form.Get("subject_token") == "" || form.Get("subject_token_type") != tokenTypeAccess {
			ts.t.Errorf("token exchange with subject_token %q of type %q", form.Get("subject_token"), form.Get("subject_token_type"))
		}
	default:
		ts.t.Errorf("grant_type = %q, want client_credentials or token exchange", got)
	}
	ts.mu.Lock()
	style, want, authenticate := ts.style, ts.secret, ts.authenticate
	ts.mu.Unlock()
	if authenticate != nil {
		return maps.Clone(form), authenticate(r, form)
	}
	id, secret, basic := r.BasicAuth()
	switch {
	case style == "basic" && !basic:
		return form, fmt.Errorf("want client_secret_basic, got no Basic header")
	case style == "basic":
		if form.Has("client_secret") {
			ts.t.Errorf("client_secret_basic: secret also in the body")
		}
		id, _ = url.QueryUnescape(id) // RFC 6749 2.3.1
		secret, _ = url.QueryUnescape(secret)
	case basic || r.Header.Get("Authorization") != "":
		return form, fmt.Errorf("want client_secret_post, got an Authorization header")
	default:
		id, secret = form.Get("client_id"), form.Get("client_secret")
	}
	form = maps.Clone(form)
	form.Del("client_secret")
	if id != testClientID || secret != want {
		return form, fmt.Errorf("bad client credentials")
	}
	return form, nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// upstream checks that every call carries a token the token server issued
// and records what it got; handle, when set, answers instead of the echo.
type upstream struct {
	*httptest.Server
	t      *testing.T
	ts     *tokenServer
	calls  atomic.Int64
	handle func(w http.ResponseWriter, r *http.Request, body []byte)

	mu   sync.Mutex
	seen []seenCall
}

type seenCall struct {
	token, requestURI string
	body              []byte
	header            http.Header
}

func newUpstream(t *testing.T, ts *tokenServer) *upstream {
	u := &upstream{t: t, ts: ts}
	u.Server = httptest.NewUnstartedServer(http.HandlerFunc(u.serve))
	// HTTP/1.1 and h2c, as a gRPC upstream speaks it.
	p := new(http.Protocols)
	p.SetHTTP1(true)
	p.SetUnencryptedHTTP2(true)
	u.Server.Config.Protocols = p
	u.Server.Start()
	t.Cleanup(u.Close)
	return u
}

func (u *upstream) serve(w http.ResponseWriter, r *http.Request) {
	u.calls.Add(1)
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || !u.ts.valid(tok) {
		u.t.Errorf("upstream got a call without a valid token: Authorization %q", r.Header.Get("Authorization"))
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	var body []byte
	if u.handle == nil {
		body, _ = io.ReadAll(r.Body)
	}
	u.mu.Lock()
	u.seen = append(u.seen, seenCall{token: tok, requestURI: r.RequestURI, body: body, header: r.Header.Clone()})
	u.mu.Unlock()
	if u.handle != nil {
		u.handle(w, r, body)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"uri": r.RequestURI})
}

func (u *upstream) last() seenCall {
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.seen) == 0 {
		u.t.Fatal("upstream saw no call")
	}
	return u.seen[len(u.seen)-1]
}

// env returns the variables of one route "payments" to upstreamURL with
// tokens from ts, with extra added (an empty value deletes a variable).
func env(ts *tokenServer, upstreamURL string, extra map[string]string) map[string]string {
	e := map[string]string{
		"AUTHSIDECAR_OUTBOUND_ROUTES":        "payments",
		"AUTHSIDECAR_OUTBOUND_TOKEN_URL":     ts.URL + "/token",
		"AUTHSIDECAR_OUTBOUND_CLIENT_ID":     testClientID,
		"AUTHSIDECAR_OUTBOUND_CLIENT_SECRET": testSecret,
		"AUTHSIDECAR_ROUTE_PAYMENTS_URL":     upstreamURL,
	}
	for k, v := range extra {
		if v == "" {
			delete(e, k)
			continue
		}
		e[k] = v
	}
	return e
}

// harness is a built Outbound with its metrics and log.
type harness struct {
	*Outbound
	reg   *prometheus.Registry
	m     *metrics.Metrics
	log   *syncBuffer
	clock *fakeClock
}

// build loads environ as the sidecar would and builds the outbound
// direction on clock (nil: real time), logging at debug level.
func build(t *testing.T, environ map[string]string, clock *fakeClock) *harness {
	t.Helper()
	return buildWith(t, environ, clock, nil)
}

// buildWith is build with the options changed by change first.
func buildWith(t *testing.T, environ map[string]string, clock *fakeClock, change func(*Options)) *harness {
	t.Helper()
	opts, err := loadOptions(environ)
	if err != nil {
		t.Fatalf("config.Load: %v", err)
	}
	if change != nil {
		change(opts)
	}
	h := &harness{reg: prometheus.NewRegistry(), log: &syncBuffer{}, clock: clock}
	h.m = metrics.New(h.reg, "test")
	opts.Metrics = h.m
	opts.Logger = slog.New(slog.NewJSONHandler(h.log, &slog.HandlerOptions{Level: slog.LevelDebug}))
	if clock != nil {
		opts.Clock = clock
	}
	h.Outbound, err = New(*opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return h
}

// start runs the routes' refresh loops until the test ends.
func (h *harness) start(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { h.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
}

func (h *harness) route(name string) *Route {
	for _, r := range h.Routes() {
		if r.Name == name {
			return r
		}
	}
	panic("no route " + name)
}

// do sends a request through the shared handler.
func (h *harness) do(t *testing.T, method, target string, body io.Reader) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequestWithContext(t.Context(), method, target, body)
	rec := httptest.NewRecorder()
	h.Handler().ServeHTTP(rec, req)
	return rec
}

// syncBuffer is a log destination written from many goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
