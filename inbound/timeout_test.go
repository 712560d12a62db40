package inbound_test

import (
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/authsidecar/authsidecar/proxy"
)

func TestAnAppSlowerThanTheUpstreamTimeoutGets504(t *testing.T) {
	release := make(chan struct{})
	f := newFixture(t, fixtureOptions{
		upstreamTimeout: 200 * time.Millisecond,
		respond: func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/slow" {
				select {
				case <-release:
				case <-r.Context().Done():
				}
			}
			_, _ = io.WriteString(w, "app answered")
		},
	})
	t.Cleanup(func() { close(release) })
	tok := f.token(t, nil)

	resp, body := f.do(t, "/slow", bearer(tok))
	if resp.StatusCode != http.StatusGatewayTimeout || resp.Header.Get(proxy.ErrorHeader) != "upstream_timeout" {
		t.Fatalf("slow app: %d %v %s, want 504 upstream_timeout", resp.StatusCode, resp.Header, body)
	}
	if got := testutil.ToFloat64(counterFrom(t, f.reg, "authsidecar_inbound_requests_total", "result", "upstream_error")); got != 1 {
		t.Errorf("requests{result=upstream_error} = %v, want 1", got)
	}
	resp, body = f.do(t, "/fast", bearer(tok))
	if resp.StatusCode != 200 || body != "app answered" || resp.Header.Get(proxy.ErrorHeader) != "" {
		t.Errorf("fast app: %d %v %q, want the app's 200", resp.StatusCode, resp.Header, body)
	}
}

func TestEveryAnswerOfTheSidecarNamesItsError(t *testing.T) {
	f := newFixture(t, fixtureOptions{scopes: []string{"payments:admin"}})
	cold := newFixture(t, fixtureOptions{skipWarmUp: true})
	cold.idp.SetFailing(true)
	for _, tc := range []struct {
		name       string
		f          *fixture
		path       string
		header     http.Header
		status     int
		code       string
		retryAfter string
	}{
		{"no token", f, "/", nil, 401, "invalid_request", ""},
		{"bad token", f, "/", bearer("a.b.c"), 401, "invalid_token", ""},
		{"missing scope", f, "/", bearer(f.token(t, nil)), 403, "insufficient_scope", ""},
		{"encoded slash", f, "/a%2Fb", bearer(f.token(t, nil)), 400, "invalid_request", ""},
		{"keys not loaded", cold, "/", bearer(cold.token(t, nil)), 503, "temporarily_unavailable", "1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := tc.f.do(t, tc.path, tc.header)
			if resp.StatusCode != tc.status || resp.Header.Get(proxy.ErrorHeader) != tc.code || resp.Header.Get("Retry-After") != tc.retryAfter {
				t.Errorf("%d %s=%q Retry-After=%q (%s), want %d %q %q", resp.StatusCode, proxy.ErrorHeader,
					resp.Header.Get(proxy.ErrorHeader), resp.Header.Get("Retry-After"), body, tc.status, tc.code, tc.retryAfter)
			}
		})
	}
}
