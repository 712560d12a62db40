package proxy

import (
	"net/http"
	"reflect"
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
