package inbound_test

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"path"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/authsidecar/authsidecar/proxy"
)

// FuzzHandlerNeverLetsForgeriesThrough writes raw bytes to a real
// net/http server in front of the inbound handler, as an attacker writes
// to the socket: control characters, obs-fold, repeated and conflicting
// headers, odd request-targets and pipelined requests all reach the
// server, which a well-behaved client would never send. In the bytes,
// {A} and {B} stand for two valid tokens with different identities, {E}
// for an expired one, {W} for one with another audience and {C} for one
// whose subject tries to inject a header, all signed by the issuer's key.
//
// What must hold, for every input:
//   - a request reaches the app only with a valid token, and the app sees
//     exactly that token's identity in X-Auth-* (no other X-Auth-* header
//     in any spelling) and no Authorization header;
//   - the rules hold for the path and headers the app receives;
//   - the sidecar never answers 5xx: its keys are loaded and the app is
//     up, so a malformed request could always have been refused with 4xx.
func FuzzHandlerNeverLetsForgeriesThrough(f *testing.F) {
	rs := newRawSidecar(f)
	for _, seed := range rawRequestSeeds {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		rs.check(t, raw)
	})
}

// rawRequestSeeds are requests as real clients send them, and as attacks
// on header parsing and proxying write them.
var rawRequestSeeds = []string{
	"GET /orders HTTP/1.1\r\nHost: payments\r\nAuthorization: Bearer {A}\r\n\r\n",
	"GET /orders?id=7 HTTP/1.1\r\nHost: payments\r\nAuthorization: Bearer {B}\r\nX-Request-Id: r1\r\nAccept: */*\r\n\r\n",
	"POST /payments/charge HTTP/1.1\r\nHost: payments\r\nAuthorization: Bearer {A}\r\nContent-Type: application/json\r\nContent-Length: 13\r\n\r\n{\"amount\":42}",
	"POST /payments/charge HTTP/1.1\r\nHost: payments\r\nAuthorization: Bearer {B}\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
	"DELETE /payments/7 HTTP/1.1\r\nHost: payments\r\nAuthorization: bearer   {B}\r\n\r\n",
	"GET /admin/users HTTP/1.1\r\nHost: payments\r\nAuthorization: Bearer {A}\r\n\r\n",
	"GET /x/../admin/users HTTP/1.1\r\nHost: payments\r\nAuthorization: Bearer {A}\r\n\r\n",
	"GET /%61dmin//users HTTP/1.1\r\nHost: payments\r\nAuthorization: Bearer {A}\r\n\r\n",
	"GET http://payments/admin HTTP/1.1\r\nHost: other\r\nAuthorization: Bearer {A}\r\n\r\n",
	"GET /tenants/7/orders/1 HTTP/1.1\r\nHost: payments\r\nAuthorization: Bearer {A}\r\nX-Tenant: acme\r\n\r\n",
	"GET /tenants/7/orders/1 HTTP/1.1\r\nHost: payments\r\nAuthorization: Bearer {A}\r\nX-Tenant: acme\r\nX-Tenant: evil\r\n\r\n",
	"GET /tenants/7/orders/1 HTTP/1.1\r\nHost: payments\r\nAuthorization: Bearer {A}\r\nX-Tenant: acme\r\nX_Tenant: evil\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: payments\r\nAuthorization: Bearer {A}\r\nAuthorization: Bearer {B}\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: payments\r\nAuthorization: Bearer {A}\r\nX-Auth-Subject: admin\r\nX_Auth_Client_Id: root\r\nx-auth-scopes: admin\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: payments\r\nAuthorization: Bearer {B}\r\nConnection: keep-alive, X-Auth-Subject, X-Auth-Client-Id\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: payments\r\nAuthorization: Bearer\r\n {A}\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: payments\r\nAuthorization: Bearer {A}\x1b\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: payments\r\nAuthorization: Bearer {E}\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: payments\r\nAuthorization: Bearer {W}\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: payments\r\nAuthorization: Bearer {C}\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: payments\r\nAuthorization: Basic dXNlcjpwYXNz\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: payments\r\n\r\n",
	"GET / HTTP/1.0\r\n\r\n",
	"OPTIONS * HTTP/1.1\r\nHost: payments\r\nAuthorization: Bearer {A}\r\n\r\n",
	"CONNECT payments:443 HTTP/1.1\r\nHost: payments:443\r\nAuthorization: Bearer {A}\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: payments\r\nAuthorization: Bearer {A}\r\n\r\nGET /admin HTTP/1.1\r\nHost: payments\r\nAuthorization: Bearer {B}\r\n\r\n",
	"GET / HTTP/1.1\nHost: payments\nAuthorization: Bearer {B}\n\n",
	"GET / HTTP/2.0\r\nHost: payments\r\nAuthorization: Bearer {A}\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: payments\r\nAuthorization: Bearer {A}\r\nTransfer-Encoding: gzip\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: payments\r\nAuthorization: Bearer {A}\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
	"GET / HTTP/1.1\r\nHost: payments\r\nAuthorization: Bearer {A}\r\nX-HTTP-Method-Override: DELETE\r\nX-Original-URL: /admin\r\n\r\n",
}

// Identities the tokens stand for, as the app must see them.
var (
	identityA = map[string]string{"X-Auth-Subject": "svc-orders", "X-Auth-Client-Id": "orders", "X-Auth-Scopes": "payments:read payments:write"}
	identityB = map[string]string{"X-Auth-Subject": "svc-billing", "X-Auth-Client-Id": "billing", "X-Auth-Scopes": "payments:read"}
)

// fuzzRules protects paths whose tokens the fuzzer holds no scope for, and
// a path with a header condition, so that the property covers the rules
// as the app's view of the request meets them.
const fuzzRules = `
rules:
  - paths: ["/admin/**"]
    scopes: [admin]
  - paths: ["/payments/**"]
    methods: [POST, PUT, DELETE]
    scopes: [payments:write]
  - paths: ["/tenants/*/orders/**"]
    when: 'request.headers["x-tenant"] == "acme"'
`

// rawSidecar is the inbound direction served by a real net/http server,
// with the limits the sidecar's own servers have, in front of a real app.
// Every request sent on to the app is recorded as it leaves, so what one
// input caused is known once the server has closed its connection.
type rawSidecar struct {
	fx     *fixture
	addr   string
	tokens map[string]string // placeholder → token
	want   map[string]map[string]string

	mu      sync.Mutex
	sent    []sentRequest
	handled int
	panics  []string
	closed  map[string]chan struct{} // by the client's address
}

// sentRequest is a request as the sidecar sent it to the app.
type sentRequest struct {
	method, path, rawPath string
	header                http.Header
	bodyErr               *atomic.Value // error reading the caller's body, if any
}

// recordingTransport records each request the proxy sends to the app.
type recordingTransport struct {
	rs   *rawSidecar
	next http.RoundTripper
}

func (rt recordingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	s := sentRequest{method: r.Method, path: r.URL.Path, rawPath: r.URL.RawPath, header: r.Header.Clone(), bodyErr: new(atomic.Value)}
	if r.Body != nil && r.Body != http.NoBody {
		r.Body = &errRecorder{ReadCloser: r.Body, err: s.bodyErr}
	}
	rt.rs.mu.Lock()
	rt.rs.sent = append(rt.rs.sent, s)
	rt.rs.mu.Unlock()
	return rt.next.RoundTrip(r)
}

// errRecorder notes an error reading the caller's body: a 502 then is the
// caller's doing (a body shorter than announced), not the sidecar's.
type errRecorder struct {
	io.ReadCloser
	err *atomic.Value
}

func (e *errRecorder) Read(p []byte) (int, error) {
	n, err := e.ReadCloser.Read(p)
	if err != nil && err != io.EOF {
		e.err.Store(err)
	}
	return n, err
}

func newRawSidecar(f testing.TB) *rawSidecar {
	rs := &rawSidecar{closed: map[string]chan struct{}{}}
	rs.fx = newFixtureWith(f, fixtureOptions{
		rules:     fuzzRules,
		transport: recordingTransport{rs: rs, next: proxy.NewTransport(proxy.TransportOptions{DialTimeout: 5 * time.Second, ResponseHeaderTimeout: 10 * time.Second})},
	})
	rs.fx.app.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("X-App", "yes")
		_, _ = io.WriteString(w, "hello from app")
	})
	rs.fx.app.Config.ErrorLog = log.New(io.Discard, "", 0)
	day := time.Now().Add(24 * time.Hour).Unix() // outlives any campaign
	rs.tokens = map[string]string{
		"{A}": rs.fx.token(f, map[string]any{"exp": day}),
		"{B}": rs.fx.token(f, map[string]any{"exp": day, "sub": "svc-billing", "client_id": "billing", "scope": "payments:read"}),
		"{E}": rs.fx.token(f, map[string]any{"sub": "svc-expired", "exp": time.Now().Add(-time.Hour).Unix()}),
		"{W}": rs.fx.token(f, map[string]any{"exp": day, "sub": "svc-elsewhere", "aud": "inventory"}),
		"{C}": rs.fx.token(f, map[string]any{"exp": day, "sub": "svc-orders\r\nX-Auth-Scopes: admin"}),
	}
	rs.want = map[string]map[string]string{"{A}": identityA, "{B}": identityB}
	for _, id := range rs.want {
		id["X-Auth-Issuer"] = rs.fx.idp.Issuer
	}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rs.mu.Lock()
		rs.handled++
		rs.mu.Unlock()
		// The server recovers a panic and only closes the connection,
		// which the caller would take for an answer it need not check.
		defer func() {
			if p := recover(); p != nil {
				if p != http.ErrAbortHandler {
					rs.mu.Lock()
					rs.panics = append(rs.panics, fmt.Sprint(p))
					rs.mu.Unlock()
				}
				panic(p)
			}
		}()
		rs.fx.in.Handler().ServeHTTP(w, r)
	})
	// The sidecar's own server, as the inbound port has it: the HTTP/1.1
	// front, and net/http's server behind it.
	opts := proxy.DefaultServerOptions(nil)
	opts.ConnClosed = func(c net.Conn) { close(rs.closedChan(c.RemoteAddr().String())) }
	srv, err := proxy.Listen("inbound", "127.0.0.1:0", h, opts)
	if err != nil {
		f.Fatal(err)
	}
	go func() { _ = srv.Serve() }()
	f.Cleanup(func() { _ = srv.Close() })
	rs.addr = srv.Addr().String()
	return rs
}

// closedChan is closed once the server is done with the connection from
// addr: every handler it ran has returned.
func (rs *rawSidecar) closedChan(addr string) chan struct{} {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	ch, ok := rs.closed[addr]
	if !ok {
		ch = make(chan struct{})
		rs.closed[addr] = ch
	}
	return ch
}

// sentinel ends every input: once the server has answered it, it closes
// the connection, so the end of an input is seen without waiting for a
// timeout. Bytes that leave a request unfinished swallow it.
const sentinel = "GET /fuzz-end HTTP/1.1\r\nHost: sentinel\r\nConnection: close\r\n\r\n"

// expand replaces the placeholders in raw by their tokens.
func (rs *rawSidecar) expand(raw []byte) []byte {
	for p, tok := range rs.tokens {
		raw = bytes.ReplaceAll(raw, []byte(p), []byte(tok))
	}
	return raw
}

// exchange sends raw and returns the answers, the requests the app was
// sent, and how many requests the handler was given.
func (rs *rawSidecar) exchange(t *testing.T, raw []byte) ([]*http.Response, []sentRequest, int) {
	t.Helper()
	rs.mu.Lock()
	rs.sent, rs.handled, rs.panics = nil, 0, nil
	rs.mu.Unlock()
	conn, err := net.Dial("tcp", rs.addr)
	if err != nil {
		t.Fatal(err)
	}
	closed := rs.closedChan(conn.LocalAddr().String())
	defer func() {
		rs.mu.Lock()
		delete(rs.closed, conn.LocalAddr().String())
		rs.mu.Unlock()
	}()
	responses := rs.readAll(conn, raw)
	conn.Close()
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatalf("the server still serves a connection 10 s after the caller closed it")
	}
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if len(rs.panics) > 0 {
		t.Fatalf("the handler panicked: %q", rs.panics)
	}
	return responses, append([]sentRequest(nil), rs.sent...), rs.handled
}

// readAll writes raw and the sentinel and reads answers until the server
// closes. A request that waits for bytes never sent (a body longer than
// what follows) is ended by closing the write side after a while.
func (rs *rawSidecar) readAll(conn net.Conn, raw []byte) []*http.Response {
	go func() {
		_, _ = conn.Write(append(raw, sentinel...))
	}()
	method := "GET"
	if m, _, ok := bytes.Cut(raw, []byte(" ")); ok {
		method = string(m)
	}
	br := bufio.NewReader(conn)
	_ = conn.SetReadDeadline(time.Now().Add(time.Second))
	halfClosed := false
	var responses []*http.Response
	for {
		resp, err := http.ReadResponse(br, &http.Request{Method: method})
		var ne net.Error
		switch {
		case errors.As(err, &ne) && ne.Timeout() && !halfClosed:
			halfClosed = true
			_ = conn.(*net.TCPConn).CloseWrite()
			_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			continue
		case err != nil:
			return responses
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode >= 200 {
			responses = append(responses, resp)
			method = "GET" // the sentinel, or what the fuzzer pipelined
		}
	}
}

func (rs *rawSidecar) check(t *testing.T, raw []byte) {
	t.Helper()
	expanded := rs.expand(raw)
	responses, sent, handled := rs.exchange(t, expanded)
	for _, s := range sent {
		rs.checkSent(t, string(raw), string(expanded), s)
	}
	for _, resp := range responses {
		if resp.StatusCode < 500 {
			continue
		}
		// net/http's own answers before any handler runs: 501 for a
		// transfer coding it does not know, 505 for an HTTP version it
		// does not speak, as RFC 9112 says.
		fromNetHTTP := resp.Header.Get("Content-Type") == "text/plain; charset=utf-8" &&
			resp.Header.Get("X-App") == "" && resp.Header.Get("Cache-Control") == ""
		if (resp.StatusCode == 501 || resp.StatusCode == 505) && fromNetHTTP {
			continue
		}
		if resp.StatusCode == http.StatusBadGateway && callerBodyFailed(sent) {
			continue
		}
		t.Fatalf("answered %d (%d requests handled, %d sent to the app) to %q", resp.StatusCode, handled, len(sent), raw)
	}
}

func callerBodyFailed(sent []sentRequest) bool {
	for _, s := range sent {
		if s.bodyErr.Load() != nil {
			return true
		}
	}
	return false
}

// checkSent checks one request the app was sent against the input, raw
// as the fuzzer wrote it and expanded as it was sent.
func (rs *rawSidecar) checkSent(t *testing.T, raw, expanded string, s sentRequest) {
	t.Helper()
	got := map[string][]string{}
	for k, v := range s.header {
		norm := strings.ToLower(strings.ReplaceAll(k, "_", "-"))
		switch {
		case norm == "authorization":
			t.Fatalf("the app was sent Authorization %q for %q", v, raw)
		case strings.HasPrefix(norm, "x-auth-"):
			got[k] = v
		}
	}
	var who string
	for p, id := range rs.want {
		if sameIdentity(got, id) {
			who = p
		}
	}
	if who == "" {
		t.Fatalf("the app was sent %s %q with identity headers %q, which are no valid token's, for %q", s.method, s.path, got, raw)
	}
	// Only the valid token itself may pass; base64 has equivalent
	// spellings of its last character.
	if tok := rs.tokens[who]; !strings.Contains(expanded, tok[:len(tok)-1]) {
		t.Fatalf("the app was sent %s's identity for %q, which does not hold its token", who, raw)
	}
	rs.checkRules(t, raw, who, s)
}

func sameIdentity(got map[string][]string, want map[string]string) bool {
	if len(got) != len(want) {
		return false
	}
	for k, v := range want {
		if g := got[k]; len(g) != 1 || g[0] != v {
			return false
		}
	}
	return true
}

// checkRules holds the request the app received to fuzzRules, by the
// path as sent and as the app may resolve it.
func (rs *rawSidecar) checkRules(t *testing.T, raw, who string, s sentRequest) {
	t.Helper()
	for _, p := range []string{s.path, path.Clean("/" + s.path)} {
		segs := strings.Split(strings.TrimPrefix(p, "/"), "/")
		switch {
		case segs[0] == "admin":
			t.Fatalf("the app was sent %s %q for %s, which has no admin scope; input %q", s.method, p, who, raw)
		case segs[0] == "payments" && who == "{B}" && isWrite(s.method):
			t.Fatalf("the app was sent %s %q for %s, which has no payments:write scope; input %q", s.method, p, who, raw)
		case len(segs) >= 3 && segs[0] == "tenants" && segs[1] != "" && segs[2] == "orders": // "*" is one non-empty segment
			if v := headerValues(s.header, "x-tenant"); len(v) != 1 || v[0] != "acme" {
				t.Fatalf("the app was sent %s %q with x-tenant %q, but the rule wants exactly acme; input %q", s.method, p, v, raw)
			}
		}
	}
}

func isWrite(method string) bool {
	for _, m := range []string{"POST", "PUT", "DELETE"} {
		if strings.EqualFold(method, m) {
			return true
		}
	}
	return false
}

// headerValues collects every value of name in h under any spelling an app
// may read as name: any case, "_" for "-".
func headerValues(h http.Header, name string) []string {
	var out []string
	for k, v := range h {
		if strings.ToLower(strings.ReplaceAll(k, "_", "-")) == name {
			out = append(out, v...)
		}
	}
	return out
}

// TestRawRequestsReachTheAppOnlyWhenAllowed keeps the fuzz target honest:
// a target whose requests never reached the app would check nothing.
func TestRawRequestsReachTheAppOnlyWhenAllowed(t *testing.T) {
	rs := newRawSidecar(t)
	for _, tc := range []struct {
		raw    string
		status []int // one per answer, the sentinel's 401 last
		sent   int
	}{
		{rawRequestSeeds[0], []int{200, 401}, 1},
		{rawRequestSeeds[2], []int{200, 401}, 1},
		{"POST /orders HTTP/1.1\r\nHost: p\r\nAuthorization: Bearer {B}\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", []int{200, 401}, 1},
		{rawRequestSeeds[3], []int{403}, 0}, // a refused request's body is not read: the connection closes
		{"GET /admin/users HTTP/1.1\r\nHost: p\r\nAuthorization: Bearer {A}\r\n\r\n", []int{403, 401}, 0},
		{"GET / HTTP/1.1\r\nHost: p\r\nAuthorization: Bearer {E}\r\n\r\n", []int{401, 401}, 0},
		{"GET / HTTP/1.1\r\nHost: p\r\nAuthorization: Bearer {C}\r\n\r\n", []int{401, 401}, 0},
		{"GET / HTTP/1.1\r\nHost: p\r\nAuthorization: Bearer {A}\x1b\r\n\r\n", []int{400}, 0},
		{"GET / HTTP/1.1\r\nHost: p\r\nAuthorization: Bearer {A}\r\n\r\nGET / HTTP/1.1\r\nHost: p\r\nAuthorization: Bearer {B}\r\n\r\n", []int{200, 200, 401}, 2},
		{"POST / HTTP/1.1\r\nHost: p\r\nAuthorization: Bearer {A}\r\nContent-Length: 10\r\n\r\nshort", nil, 1},
	} {
		responses, sent, _ := rs.exchange(t, rs.expand([]byte(tc.raw)))
		var status []int
		for _, r := range responses {
			status = append(status, r.StatusCode)
		}
		if tc.status != nil && fmt.Sprint(status) != fmt.Sprint(tc.status) {
			t.Errorf("%q: answers %v, want %v", tc.raw, status, tc.status)
		}
		if len(sent) != tc.sent {
			t.Errorf("%q: %d requests sent to the app, want %d", tc.raw, len(sent), tc.sent)
		}
		rs.check(t, []byte(tc.raw))
	}
}
