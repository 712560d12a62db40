package inbound_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/authsidecar/authsidecar/inbound"
	"github.com/authsidecar/authsidecar/internal/idptest"
)

// BenchmarkVerify measures token verification alone: signature work on a
// cache miss, the cache lookup and the claim checks on a hit.
func BenchmarkVerify(b *testing.B) {
	ec := idptest.NewECKey(b, "ec-1")
	for _, alg := range []string{"RS256", "ES256"} {
		for _, c := range []struct {
			name string
			size int
		}{{"off", 0}, {"on", 1000}} {
			b.Run("alg="+alg+"/cache="+c.name, func(b *testing.B) {
				f := newFixtureWith(b, fixtureOptions{cacheSize: c.size, skipWarmUp: true})
				f.idp.SetKeys(f.key, ec)
				if err := f.in.LoadKeys(context.Background()); err != nil {
					b.Fatal(err)
				}
				tok := f.token(b, nil)
				if alg == "ES256" {
					tok = idptest.Sign(b, ec, f.idp.Claims(audience, nil))
				}
				b.ReportAllocs()
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						if err := inbound.Verify(context.Background(), f.in, tok); err != nil {
							b.Fatal(err)
						}
					}
				})
			})
		}
	}
}

// nopTransport answers every request at once, so the handler benchmark
// measures the sidecar's own work and not a loopback round trip.
type nopTransport struct{}

func (nopTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	return &http.Response{StatusCode: 200, Header: http.Header{}, Body: io.NopCloser(strings.NewReader("ok")),
		Request: r, ProtoMajor: 1, ProtoMinor: 1}, nil
}

// BenchmarkHandler measures the inbound handler end to end in-process with a
// repeated token: header stripping, bearer parsing, the cached verification,
// identity headers, the reverse proxy and metrics.
func BenchmarkHandler(b *testing.B) {
	f := newFixtureWith(b, fixtureOptions{cacheSize: 1000, transport: nopTransport{}})
	h := f.in.Handler()
	auth := "Bearer " + f.token(b, nil)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			req := httptest.NewRequest(http.MethodGet, "http://sidecar/orders?id=1", nil)
			req.Header.Set("Authorization", auth)
			w := httptest.NewRecorder()
			h.ServeHTTP(w, req)
			if w.Code != 200 {
				b.Fatalf("status %d", w.Code)
			}
		}
	})
}
