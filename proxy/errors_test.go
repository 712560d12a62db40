package proxy

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"net/textproto"
	"net/url"
	"strings"
	"testing"
	"time"
)

func TestTheSidecarsOwnAnswersSaySo(t *testing.T) {
	for _, tc := range []struct {
		name       string
		status     int
		code       string
		grpc       bool
		preset     string // a Retry-After the caller set
		retryAfter string
	}{
		{"401", http.StatusUnauthorized, "invalid_token", false, "", ""},
		{"503", http.StatusServiceUnavailable, "token_unavailable", false, "", "1"},
		{"503 with its own Retry-After", http.StatusServiceUnavailable, "temporarily_unavailable", false, "7", "7"},
		{"503 to gRPC", http.StatusServiceUnavailable, "token_unavailable", true, "", "1"},
		{"502", http.StatusBadGateway, "upstream_unavailable", false, "", ""},
		{"504 to gRPC", http.StatusGatewayTimeout, "upstream_timeout", true, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest("POST", "/x", nil)
			if tc.grpc {
				r.Header.Set("Content-Type", "application/grpc")
			}
			w := httptest.NewRecorder()
			if tc.preset != "" {
				w.Header().Set("Retry-After", tc.preset)
			}
			WriteError(w, r, tc.status, tc.code, "why")
			h := w.Result().Header
			if got := h.Get(ErrorHeader); got != tc.code {
				t.Errorf("%s = %q, want %q", ErrorHeader, got, tc.code)
			}
			if got := h.Get("Retry-After"); got != tc.retryAfter {
				t.Errorf("Retry-After = %q, want %q", got, tc.retryAfter)
			}
			if !tc.grpc && !strings.Contains(w.Body.String(), `"error":"`+tc.code+`"`) {
				t.Errorf("body %s does not carry error %q", w.Body, tc.code)
			}
		})
	}
}

// TestAnUpstreamCannotSpeakInTheSidecarsName: an app or upstream that
// sets X-Authsidecar-Error (or a 503 without Retry-After) passes as it
// is, less the header that would make its answer look like the sidecar's.
func TestAnUpstreamCannotSpeakInTheSidecarsName(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set(ErrorHeader, "token_unavailable")
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = io.WriteString(w, "the app is busy")
	}))
	t.Cleanup(up.Close)
	resp, body := throughProxy(t, up.URL, NewTransport(TransportOptions{DialTimeout: time.Second}), nil)
	if resp.StatusCode != 503 || body != "the app is busy" || resp.Header.Get(ErrorHeader) != "" || resp.Header.Get("Retry-After") != "" {
		t.Errorf("got %d %v %q, want the app's 503 without %s and without Retry-After", resp.StatusCode, resp.Header, body, ErrorHeader)
	}
}

func TestASlowUpstreamIsA504AndAnAbsentOneA502(t *testing.T) {
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/slow-headers":
			select {
			case <-release:
			case <-r.Context().Done():
			}
		case "/slow-body": // headers at once, the body later: never cut off
			w.WriteHeader(http.StatusOK)
			w.(http.Flusher).Flush()
			time.Sleep(600 * time.Millisecond)
			_, _ = io.WriteString(w, "late but whole")
		}
	})
	cleartext := serve(t, handler, DefaultServerOptions(nil))
	const timeout = 300 * time.Millisecond
	for _, tc := range []struct {
		name     string
		protocol Protocol
		grpc     bool
	}{
		{"HTTP/1.1", ProtocolHTTP1, false},
		{"h2c", ProtocolH2C, false},
		{"gRPC over auto", ProtocolAuto, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			transport := NewTransport(TransportOptions{Protocol: tc.protocol, DialTimeout: time.Second, ResponseHeaderTimeout: timeout})
			header := http.Header{}
			if tc.grpc {
				header.Set("Content-Type", "application/grpc")
			}
			began := time.Now()
			resp, _ := throughProxy(t, "http://"+cleartext+"/slow-headers", transport, header)
			elapsed := time.Since(began)
			code := resp.Header.Get(ErrorHeader)
			if tc.grpc {
				if resp.StatusCode != 200 || resp.Header.Get("Grpc-Status") != "4" || code != "upstream_timeout" {
					t.Errorf("slow headers: %d %v, want grpc-status 4 (DEADLINE_EXCEEDED)", resp.StatusCode, resp.Header)
				}
			} else if resp.StatusCode != http.StatusGatewayTimeout || code != "upstream_timeout" {
				t.Errorf("slow headers: %d %s, want 504 upstream_timeout", resp.StatusCode, code)
			}
			if elapsed < timeout || elapsed > timeout+2*time.Second {
				t.Errorf("the 504 came after %s, want just past %s", elapsed, timeout)
			}
			if tc.grpc {
				return
			}
			resp, body := throughProxy(t, "http://"+cleartext+"/slow-body", transport, nil)
			if resp.StatusCode != 200 || body != "late but whole" {
				t.Errorf("a body slower than the timeout: %d %q, want 200 and all of it", resp.StatusCode, body)
			}
		})
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()
	resp, _ := throughProxy(t, "http://"+closed+"/", NewTransport(TransportOptions{DialTimeout: time.Second, ResponseHeaderTimeout: timeout}), nil)
	if resp.StatusCode != http.StatusBadGateway || resp.Header.Get(ErrorHeader) != "upstream_unavailable" {
		t.Errorf("nothing listening: %d %v, want 502 upstream_unavailable", resp.StatusCode, resp.Header)
	}
}

// throughProxy sends a GET with header to target through NewReverseProxy
// over transport and returns the answer with its body read.
func throughProxy(t *testing.T, target string, transport http.RoundTripper, header http.Header) (*http.Response, string) {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	rp := NewReverseProxy(&url.URL{Scheme: u.Scheme, Host: u.Host}, ReverseProxyOptions{Transport: transport})
	front := httptest.NewServer(rp)
	t.Cleanup(front.Close)
	method := http.MethodGet
	if strings.HasPrefix(header.Get("Content-Type"), "application/grpc") {
		method = http.MethodPost // gRPC is POST only
	}
	req, _ := http.NewRequest(method, front.URL+u.RequestURI(), nil)
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := front.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// TestAnUpstreamCannotSpeakInTheSidecarsNameInTrailersOrEarlyHints: the
// header is removed from trailers, declared or not (gRPC clients read a
// trailers-only answer's metadata as trailers), and from a 103.
func TestAnUpstreamCannotSpeakInTheSidecarsNameInTrailersOrEarlyHints(t *testing.T) {
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Link", "</x>; rel=preload")
		w.Header().Set(ErrorHeader, "forged_in_103")
		w.WriteHeader(http.StatusEarlyHints)
		w.Header().Del("Link")
		w.Header().Set("Trailer", ErrorHeader+", Grpc-Status")
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write([]byte("body"))
		w.Header().Set(ErrorHeader, "token_unavailable")
		w.Header().Set("Grpc-Status", "14")
		w.Header().Set(http.TrailerPrefix+"x-authsidecar-error", "undeclared")
	}))
	t.Cleanup(app.Close)
	u, _ := url.Parse(app.URL)
	rp := NewReverseProxy(u, ReverseProxyOptions{})
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sw := NewStatusWriter(w)
		defer sw.Release()
		rp.ServeHTTP(sw, r)
	}))
	t.Cleanup(front.Close)
	var early string
	req, _ := http.NewRequest(http.MethodGet, front.URL, nil)
	req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
		Got1xxResponse: func(_ int, h textproto.MIMEHeader) error { early = h.Get(ErrorHeader); return nil },
	}))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if got := resp.Trailer.Get(ErrorHeader); got != "" || resp.Trailer.Get("Grpc-Status") != "14" {
		t.Errorf("trailers %v: want %s removed and the others kept", resp.Trailer, ErrorHeader)
	}
	if early != "" {
		t.Errorf("the 103 carried %s %q", ErrorHeader, early)
	}
}

func TestACallersRequestIDIsKeptOnlyIfItLooksLikeOne(t *testing.T) {
	for id, kept := range map[string]bool{
		"5e0c1a3e-7d2b-4c1f-9c3e-0a1b2c3d4e5f": true,
		"req-42":                               true,
		strings.Repeat("x", 129):               false,
		"two words":                            false,
		"":                                     false,
	} {
		h := http.Header{RequestIDHeader: {id}}
		EnsureRequestID(h)
		if got := h.Get(RequestIDHeader); (got == id) != kept || len(got) == 0 || len(got) > 128 {
			t.Errorf("%q: became %q, want kept %v", id, got, kept)
		}
	}
	h := http.Header{RequestIDHeader: {"a", "b"}}
	EnsureRequestID(h)
	if len(h.Values(RequestIDHeader)) != 1 {
		t.Errorf("two ids: %q, want one new", h.Values(RequestIDHeader))
	}
}

// TestATLSHandshakeThatTimesOutIsAnUnreachableUpstream: an upstream that
// takes the connection and never answers the TLS handshake was never
// spoken to: 502 upstream_unavailable, as the README says, not 504.
func TestATLSHandshakeThatTimesOutIsAnUnreachableUpstream(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close() // silent: never a ServerHello
		}
	}()
	target, _ := url.Parse("https://" + ln.Addr().String())
	rt := &http.Transport{TLSHandshakeTimeout: 100 * time.Millisecond}
	rp := NewReverseProxy(target, ReverseProxyOptions{Transport: rt})
	rec := httptest.NewRecorder()
	rp.ServeHTTP(rec, httptest.NewRequestWithContext(t.Context(), "GET", "/", nil))
	if rec.Code != http.StatusBadGateway || !strings.Contains(rec.Body.String(), "upstream_unavailable") {
		t.Errorf("%d %s, want 502 upstream_unavailable", rec.Code, rec.Body)
	}
}
