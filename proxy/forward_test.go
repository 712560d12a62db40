package proxy

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"strings"
	"sync"
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

// TestTheFrontTakesOverTheAnswersHeader: behind the front, the forwarder
// hands the upstream's header map to the caller's writer instead of
// copying it, and the caller gets the same answer whether the map was
// taken over (nothing asked for the writer's header first), merged into a
// header the handler had set, or preceded by a 103 whose headers must not
// leak into the final answer.
func TestTheFrontTakesOverTheAnswersHeader(t *testing.T) {
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		if r.URL.Path == "/hints" {
			h.Set("Link", "</style.css>; rel=preload")
			w.WriteHeader(http.StatusEarlyHints)
			h.Del("Link")
		}
		h["X-Multi"] = []string{"a", "b"}
		h.Set("Trailer", "X-Sum")
		h.Set(ErrorHeader, "forged")
		_, _ = io.WriteString(w, "body")
		h.Set("X-Sum", "42")
	}))
	t.Cleanup(app.Close)
	target, _ := url.Parse(app.URL)
	var answered sync.Map // request path → the upstream answer's header map
	rt := roundTripFunc(func(r *http.Request) (*http.Response, error) {
		res, err := http.DefaultTransport.RoundTrip(r)
		if err == nil {
			answered.Store(r.URL.Path, reflect.ValueOf(res.Header).UnsafePointer())
		}
		return res, err
	})
	rp := NewReverseProxy(target, ReverseProxyOptions{Transport: rt})

	var took sync.Map // request path → the writer's header is the upstream's map
	_, addr := listenFront(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sw := NewStatusWriter(w)
		defer sw.Release()
		if r.URL.Path == "/preset" {
			sw.Header().Set("X-Set-By-Handler", "1")
		}
		rp.ServeHTTP(sw, r)
		upstreams, _ := answered.Load(r.URL.Path)
		took.Store(r.URL.Path, reflect.ValueOf(w.Header()).UnsafePointer() == upstreams)
	}))

	for _, path := range []string{"/plain", "/preset", "/hints"} {
		t.Run(path, func(t *testing.T) {
			c := dialRaw(t, addr)
			c.send("GET " + path + " HTTP/1.1\r\nHost: x\r\n\r\n")
			resp, body := c.read(http.MethodGet)
			if path == "/hints" && resp.StatusCode == http.StatusEarlyHints {
				resp, body = c.read(http.MethodGet)
			}
			if resp.StatusCode != http.StatusOK || body != "body" {
				t.Fatalf("status %d, body %q", resp.StatusCode, body)
			}
			if got := resp.Header["X-Multi"]; !reflect.DeepEqual(got, []string{"a", "b"}) {
				t.Errorf("X-Multi %q", got)
			}
			if got := resp.Header.Get(ErrorHeader); got != "" {
				t.Errorf("the app's %s reached the caller: %q", ErrorHeader, got)
			}
			if got := resp.Header.Get("Link"); got != "" {
				t.Errorf("the 103's Link leaked into the final answer: %q", got)
			}
			if got := resp.Trailer.Get("X-Sum"); got != "42" {
				t.Errorf("trailer X-Sum %q", got)
			}
			if want := map[bool]string{true: "1"}[path == "/preset"]; resp.Header.Get("X-Set-By-Handler") != want {
				t.Errorf("X-Set-By-Handler %q, want %q", resp.Header.Get("X-Set-By-Handler"), want)
			}
			// Only a writer nothing asked for its header takes the map:
			// the handler's header, or the 103's, is the writer's own.
			if got, _ := took.Load(path); got != (path == "/plain") {
				t.Errorf("the writer's header is the upstream's map: %v, want %v", got, path == "/plain")
			}
		})
	}
}

func TestAFrontWriterTakesAHeaderOnlyWhenNoneWasAskedFor(t *testing.T) {
	h := http.Header{"X-A": {"1"}}
	if w := new(frontWriter); !w.takeHeader(h) || w.Header()["X-A"] == nil {
		t.Error("a fresh writer did not take the header")
	}
	w := new(frontWriter)
	asked := w.Header()
	if w.takeHeader(h) {
		t.Error("a writer whose header was asked for took another: the handler's map would be cut off")
	}
	asked.Set("X-B", "2")
	if w.Header().Get("X-B") != "2" {
		t.Error("the header the handler holds is not the writer's")
	}
}
