package proxy

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

func TestRefusalsOfGRPCRequestsAreGRPCShaped(t *testing.T) {
	for _, tc := range []struct {
		status    int
		code      string
		grpcState string
	}{
		{401, "invalid_token", "16"}, {403, "insufficient_scope", "7"}, {404, "unknown_route", "12"},
		{405, "method_not_allowed", "12"}, {502, "upstream_unavailable", "14"}, {503, "token_unavailable", "14"},
		{504, "upstream_timeout", "4"}, {408, "request_timeout", "4"}, {400, "invalid_request", "13"},
	} {
		for _, ct := range []string{"application/grpc", "application/grpc+proto", "application/grpc; charset=x"} {
			r := httptest.NewRequest("POST", "/pkg.Svc/Method", nil)
			r.Header.Set("Content-Type", ct)
			w := httptest.NewRecorder()
			w.Header().Set("WWW-Authenticate", `Bearer realm="authsidecar"`)
			WriteError(w, r, tc.status, tc.code, "the token is 100% bad\nreally: é")
			h := w.Result().Header
			if w.Code != 200 || h.Get("Content-Type") != "application/grpc" || h.Get("Grpc-Status") != tc.grpcState ||
				h.Get("Grpc-Message") != "the token is 100%25 bad%0Areally: %C3%A9" || w.Body.Len() != 0 ||
				h.Get("WWW-Authenticate") != `Bearer realm="authsidecar"` {
				t.Errorf("%d for %s: %d %v body %q", tc.status, ct, w.Code, h, w.Body.String())
			}
		}
	}
	get := httptest.NewRequest("GET", "/pkg.Svc/Method", nil)
	get.Header.Set("Content-Type", "application/grpc") // gRPC is POST only: an HTTP refusal
	w0 := httptest.NewRecorder()
	WriteError(w0, get, 401, "invalid_token", "no")
	if w0.Code != 401 || w0.Header().Get("Grpc-Status") != "" {
		t.Errorf("GET with a gRPC content-type: %d %v, want a plain 401", w0.Code, w0.Header())
	}
	r := httptest.NewRequest("POST", "/x", nil)
	r.Header.Set("Content-Type", "application/grpc-web+proto") // made for HTTP/1.1 clients: JSON as usual
	w := httptest.NewRecorder()
	WriteError(w, r, 401, "invalid_token", "no")
	if w.Code != 401 || w.Header().Get("Grpc-Status") != "" {
		t.Errorf("gRPC-Web: %d %v, want a plain 401", w.Code, w.Header())
	}
}

func TestGRPCTimeouts(t *testing.T) {
	for v, want := range map[string]time.Duration{
		"1H": time.Hour, "2M": 2 * time.Minute, "3S": 3 * time.Second, "100m": 100 * time.Millisecond,
		"5u": 5 * time.Microsecond, "7n": 7, "99999999S": 99999999 * time.Second,
	} {
		if got, ok := grpcTimeout(v); !ok || got != want {
			t.Errorf("grpcTimeout(%q) = %v %v, want %v", v, got, ok, want)
		}
	}
	for _, v := range []string{"", "S", "1", "1s", "-1S", "123456789S", "1.5S", " 1S", "99999999H", "3000000H"} {
		if _, ok := grpcTimeout(v); ok {
			t.Errorf("grpcTimeout(%q) accepted", v)
		}
	}
}

func TestProtocolChoice(t *testing.T) {
	rt := NewTransport(TransportOptions{DialTimeout: time.Second}).(*autoTransport)
	for _, tc := range []struct {
		url, ct string
		want    http.RoundTripper
	}{
		{"http://app/x", "application/json", rt.h1},
		{"http://app/pkg.Svc/M", "application/grpc", rt.h2},
		{"http://app/pkg.Svc/M", "application/grpc+proto", rt.h2},
		{"http://app/pkg.Svc/M", "application/grpc-web", rt.h1},
		{"https://app/x", "application/json", rt.alpn},
		{"https://app/pkg.Svc/M", "application/grpc", rt.alpn},
	} {
		r := httptest.NewRequest("POST", tc.url, nil)
		r.Header.Set("Content-Type", tc.ct)
		if got := rt.pick(r); got != tc.want {
			t.Errorf("%s %s: picked %p, want %p", tc.url, tc.ct, got, tc.want)
		}
	}
	h1 := NewTransport(TransportOptions{Protocol: ProtocolHTTP1, DialTimeout: time.Second}).(*h1Client)
	if tr := h1.fallback.(*http.Transport); !tr.Protocols.HTTP1() || tr.Protocols.HTTP2() || tr.Protocols.UnencryptedHTTP2() {
		t.Errorf("http1: the fallback's protocols %v", tr.Protocols)
	}
	if tr := NewTransport(TransportOptions{Protocol: ProtocolH2C, DialTimeout: time.Second}).(*http.Transport); tr.Protocols.HTTP1() || !tr.Protocols.UnencryptedHTTP2() {
		t.Errorf("h2c: protocols %v", tr.Protocols)
	}
	for in, want := range map[string]Protocol{"auto": ProtocolAuto, "http1": ProtocolHTTP1, "h2c": ProtocolH2C} {
		if got, err := ParseProtocol(in); err != nil || got != want {
			t.Errorf("ParseProtocol(%q) = %v %v", in, got, err)
		}
	}
	if _, err := ParseProtocol("h2"); err == nil || err.Error() != `want auto, http1 or h2c, got "h2"` {
		t.Errorf("ParseProtocol(h2): %v", err)
	}
}

func FuzzEncodeGRPCMessage(f *testing.F) {
	for _, s := range []string{"", "plain", "100%", "é", "\x00\n\r\t", "%%25", "\xff\xfe"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		enc := encodeGRPCMessage(s)
		for i := range len(enc) {
			if c := enc[i]; c < 0x20 || c > 0x7e {
				t.Fatalf("encodeGRPCMessage(%q) = %q holds byte %#x", s, enc, c)
			}
		}
		if got := decodeGRPCMessage(enc); got != s {
			t.Fatalf("decoding %q gives %q, want %q", enc, got, s)
		}
		if utf8.ValidString(s) && !strings.Contains(s, "%") && strings.IndexFunc(s, func(r rune) bool { return r < 0x20 || r > 0x7e }) < 0 && enc != s {
			t.Fatalf("printable %q was encoded to %q", s, enc)
		}
	})
}

// decodeGRPCMessage is what a gRPC client does with grpc-message.
func decodeGRPCMessage(s string) string {
	var b []byte
	for i := 0; i < len(s); i++ {
		if s[i] == '%' && i+2 < len(s) && isHex(s[i+1]) && isHex(s[i+2]) {
			b = append(b, unhex(s[i+1])<<4|unhex(s[i+2]))
			i += 2
			continue
		}
		b = append(b, s[i])
	}
	return string(b)
}

func unhex(c byte) byte {
	switch {
	case c <= '9':
		return c - '0'
	case c <= 'F':
		return c - 'A' + 10
	}
	return c - 'a' + 10
}

// TestAGRPCRefusalIsNotCacheable: a refusal the gRPC way is a 200, which a
// cache in front of the sidecar may keep and serve to others, as it would
// never keep a 401. Any caller can ask for that shape by its content-type,
// so it says no-store like the JSON answers. (A GET gets no gRPC shape:
// gRPC is POST only.)
func TestAGRPCRefusalIsNotCacheable(t *testing.T) {
	r := httptest.NewRequest("POST", "/account", nil)
	r.Header.Set("Content-Type", "application/grpc")
	w := httptest.NewRecorder()
	WriteError(w, r, http.StatusUnauthorized, "invalid_token", "no token")
	if w.Code != 200 || w.Header().Get("Cache-Control") != "no-store" {
		t.Errorf("got %d Cache-Control %q, want 200 and no-store", w.Code, w.Header().Get("Cache-Control"))
	}
}

// TestAGRPCTimeoutIsDigitsOnly: the value is 1 to 8 digits and a unit
// (gRPC over HTTP2, TimeoutValue); strconv also takes a sign.
func TestAGRPCTimeoutIsDigitsOnly(t *testing.T) {
	for _, v := range []string{"+1S", "+0m", "+9999999n"} {
		if d, ok := grpcTimeout(v); ok {
			t.Errorf("grpcTimeout(%q) = %v, want refused", v, d)
		}
	}
}
