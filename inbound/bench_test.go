package inbound_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/authsidecar/authsidecar/inbound"
	"github.com/authsidecar/authsidecar/internal/idptest"
	"github.com/authsidecar/authsidecar/metrics"
)

func benchVerifier(b *testing.B, f *fixture, cacheSize int) *inbound.Verifier {
	v, err := inbound.NewVerifier(inbound.VerifierOptions{
		KeySets: []*inbound.KeySet{f.keys}, Audiences: []string{audience},
		Algorithms: []string{"RS256", "ES256"}, CacheSize: cacheSize,
	})
	if err != nil {
		b.Fatal(err)
	}
	return v
}

// BenchmarkVerify measures token verification alone: signature work on a
// cache miss, the cache lookup and the claim checks on a hit.
func BenchmarkVerify(b *testing.B) {
	f := newFixtureTB(b)
	ec := idptest.NewECKey(b, "ec-1")
	f.idp.SetKeys(f.key, ec)
	if err := f.keys.Refresh(context.Background()); err != nil {
		b.Fatal(err)
	}
	tokens := map[string]string{
		"RS256": f.token(b, nil),
		"ES256": idptest.Sign(b, ec, f.idp.Claims(audience, nil)),
	}
	for _, alg := range []string{"RS256", "ES256"} {
		for _, c := range []struct {
			name string
			size int
		}{{"off", 0}, {"on", 1000}} {
			b.Run("alg="+alg+"/cache="+c.name, func(b *testing.B) {
				v := benchVerifier(b, f, c.size)
				tok := tokens[alg]
				b.ReportAllocs()
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						if _, err := v.Verify(context.Background(), tok); err != nil {
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
	f := newFixtureTB(b)
	v := benchVerifier(b, f, 1000)
	upstream, _ := url.Parse("http://app.internal")
	h := inbound.NewHandler(inbound.HandlerOptions{
		Verifier: v, Upstream: upstream, Transport: nopTransport{},
		Metrics: metrics.New(prometheus.NewRegistry(), "bench"),
	})
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
