package proxy

import (
	"net/http"
	"reflect"
	"strings"
	"testing"
)

func TestDropConnectionNamed(t *testing.T) {
	for _, tc := range []struct {
		name     string
		in, want http.Header
	}{
		{"options only: nothing changes",
			http.Header{"Connection": {"keep-alive, Close", "upgrade"}, "Upgrade": {"websocket"}, "Keep-Alive": {"300"}},
			http.Header{"Connection": {"keep-alive, Close", "upgrade"}, "Upgrade": {"websocket"}, "Keep-Alive": {"300"}}},
		{"named headers go, with their names",
			http.Header{"Connection": {"keep-alive, x-request-id,Traceparent", "X-Auth-Subject"}, "X-Request-Id": {"caller"},
				"Traceparent": {"00-1-2-01"}, "X-Auth-Subject": {"admin"}, "X-Kept": {"kept"}},
			http.Header{"Connection": {"keep-alive", ""}, "X-Kept": {"kept"}}},
		{"hop-by-hop names stay for the forwarding to remove",
			http.Header{"Connection": {"TE, Trailer, X-Gone"}, "Te": {"trailers"}, "X-Gone": {"1"}},
			http.Header{"Connection": {"TE, Trailer"}, "Te": {"trailers"}}},
		{"no Connection header", http.Header{"X-A": {"1"}}, http.Header{"X-A": {"1"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			DropConnectionNamed(tc.in)
			if !reflect.DeepEqual(tc.in, tc.want) {
				t.Errorf("got %v, want %v", tc.in, tc.want)
			}
		})
	}
}

func BenchmarkDropConnectionNamedKeepAlive(b *testing.B) {
	h := http.Header{"Connection": {"keep-alive"}, "X-A": {"1"}}
	b.ReportAllocs()
	for b.Loop() {
		DropConnectionNamed(h)
	}
}

// TestConnectionNamedIsASet: the names the forwarding removes are looked
// up once per header, whatever the caller repeats; options and hop-by-hop
// names, which go anyway, are not among them.
func TestConnectionNamedIsASet(t *testing.T) {
	h := http.Header{"Connection": {strings.Repeat("te, keep-alive, ", 5000) + "X-A, x-a,X-A"}}
	if got := connectionNamed(h); len(got) != 1 || !got["X-A"] {
		t.Errorf("connectionNamed = %v, want only X-A", got)
	}
	if got := connectionNamed(http.Header{"Connection": {"keep-alive, \u212aeep-alive"}}); !got["\u212aeep-alive"] {
		t.Errorf("a token with the Kelvin sign was taken for keep-alive: %v", got)
	}
}
