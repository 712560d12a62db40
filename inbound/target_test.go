package inbound

import (
	"bufio"
	"net/http"
	"runtime"
	"strings"
	"testing"
)

// readRequest parses raw as net/http's server does.
func readRequest(t testing.TB, raw string) *http.Request {
	t.Helper()
	r, err := http.ReadRequest(bufio.NewReader(strings.NewReader(raw)))
	if err != nil {
		t.Fatalf("ReadRequest(%q): %v", raw, err)
	}
	return r
}

func TestNormalizeComputesThePathTheAppReceives(t *testing.T) {
	for _, tc := range []struct {
		line, path, raw string
	}{
		{"GET / HTTP/1.1", "/", "/"},
		{"GET /orders/7?x=1 HTTP/1.1", "/orders/7", "/orders/7"},
		{"GET /a/b/ HTTP/1.1", "/a/b/", "/a/b/"},
		{"GET /tenants/a/../b/orders HTTP/1.1", "/tenants/b/orders", "/tenants/b/orders"},
		{"GET /tenants/a/%2e%2E/b/orders HTTP/1.1", "/tenants/b/orders", "/tenants/b/orders"},
		{"GET /tenants/a//../b HTTP/1.1", "/tenants/b", "/tenants/b"},
		{"GET //admin HTTP/1.1", "/admin", "/admin"},
		{"GET /a/./b/. HTTP/1.1", "/a/b/", "/a/b/"},
		{"GET /../../etc/passwd HTTP/1.1", "/etc/passwd", "/etc/passwd"},
		{"GET /docs/.. HTTP/1.1", "/", "/"},
		{"GET /docs/a;v=1/b HTTP/1.1", "/docs/a;v=1/b", "/docs/a;v=1/b"},
		{"GET /docs/..;/admin HTTP/1.1", "/admin", "/admin"},
		{"GET /docs/.;x/admin HTTP/1.1", "/docs/admin", "/docs/admin"},
		{"GET /docs/%2e%2e;jsessionid=1/admin HTTP/1.1", "/admin", "/admin"},
		{"GET /a%20b/c%3Bd HTTP/1.1", "/a b/c;d", "/a%20b/c%3Bd"},
		{"GET /%252e%252e/x HTTP/1.1", "/%2e%2e/x", "/%252e%252e/x"},
		{"GET http://sidecar HTTP/1.1", "/", "/"},
		{"GET http://sidecar/a/../admin?q HTTP/1.1", "/admin", "/admin"},
	} {
		r := readRequest(t, tc.line+"\r\nHost: sidecar\r\n\r\n")
		got, status, err := normalize(r, false)
		if err != nil || got.path != tc.path || got.rawPath != tc.raw {
			t.Errorf("%s: path %q raw %q (%d %v), want %q %q", tc.line, got.path, got.rawPath, status, err, tc.path, tc.raw)
		}
	}
}

func TestNormalizeRefusesWhatAppsReadDifferently(t *testing.T) {
	for _, tc := range []struct {
		line   string
		status int
	}{
		{"GET /orders/1%2Fx HTTP/1.1", 400},
		{"GET /orders/1%2fx HTTP/1.1", 400},
		{"GET /a%5C..%5Cadmin HTTP/1.1", 400},
		{"GET /a%5c..%5cadmin HTTP/1.1", 400},
		{"GET /a\\..\\admin HTTP/1.1", 400},
		{"GET * HTTP/1.1", 400},
		{"OPTIONS * HTTP/1.1", 400}, // net/http answers it before any handler

		{"CONNECT sidecar:443 HTTP/1.1", 405},
		{"CONNECT /x HTTP/1.1", 405},
		{"TRACE / HTTP/1.1", 405},
	} {
		r := readRequest(t, tc.line+"\r\nHost: sidecar\r\n\r\n")
		if _, status, err := normalize(r, false); status != tc.status || err == nil {
			t.Errorf("%s: status %d (%v), want %d", tc.line, status, err, tc.status)
		}
	}
}

func TestEncodedSlashesAreDecodedWhenAllowed(t *testing.T) {
	for _, tc := range []struct{ line, path, raw string }{
		{"GET /orders/1%2Fx HTTP/1.1", "/orders/1/x", "/orders/1/x"},
		{"GET /a%5C..%5Cadmin HTTP/1.1", "/admin", "/admin"},
		{"GET /a%2F HTTP/1.1", "/a/", "/a/"},
		{"GET /a%2F%2Fb%20c HTTP/1.1", "/a/b c", "/a/b%20c"},
	} {
		r := readRequest(t, tc.line+"\r\nHost: sidecar\r\n\r\n")
		got, status, err := normalize(r, true)
		if err != nil || got.path != tc.path || got.rawPath != tc.raw {
			t.Errorf("%s: path %q raw %q (%d %v), want %q %q", tc.line, got.path, got.rawPath, status, err, tc.path, tc.raw)
		}
	}
}

// With encoded slashes allowed, a request line full of "%2F" segments
// (8,000 fit in the 32 KiB header cap) costs work in proportion to its
// length, not to its square.
func TestManyEncodedSlashesCostLinearWork(t *testing.T) {
	line := "GET " + strings.Repeat("/a%2Fb", 5000) + " HTTP/1.1"
	r := readRequest(t, line+"\r\nHost: sidecar\r\n\r\n")
	var got target
	var err error
	allocated := testing.AllocsPerRun(1, func() { got, _, err = normalize(r, true) })
	if want := strings.Repeat("/a/b", 5000); err != nil || got.path != want {
		t.Fatalf("normalize: path of %d bytes, %v; want the %d bytes of /a/b repeated", len(got.path), err, len(want))
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, _, _ = normalize(r, true)
	runtime.ReadMemStats(&after)
	if n := after.TotalAlloc - before.TotalAlloc; n > 4<<20 {
		t.Errorf("normalizing 5,000 encoded slashes allocated %d bytes (%.0f allocations), want at most 4 MiB", n, allocated)
	}
}
