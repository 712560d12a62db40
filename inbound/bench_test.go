package inbound_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
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

// BenchmarkHandlerSenders compares, in one run, the handler with a bearer
// token and with a DPoP-bound token and a fresh proof per request: the
// cost of checking a proof (one ECDSA verification, the thumbprint, the
// replay cache). The proofs are signed before the timer starts, each run
// with a key of its own: one key's proofs are bounded in the replay cache
// (dpopReplayPerKey), and -count runs a sub-benchmark again on the same
// handler.
func BenchmarkHandlerSenders(b *testing.B) {
	f := newFixtureWith(b, fixtureOptions{cacheSize: 1000, transport: nopTransport{}})
	h := f.in.Handler()
	key := newDPoPKey(b)
	const url = "http://sidecar/orders"
	// The floor: the one ECDSA P-256 verification a proof costs.
	b.Run("p256-verify-alone", func(b *testing.B) {
		digest := sha256.Sum256([]byte("proof"))
		sig, _ := ecdsa.SignASN1(rand.Reader, key.priv, digest[:])
		b.ReportAllocs()
		for range b.N {
			if !ecdsa.VerifyASN1(&key.priv.PublicKey, digest[:], sig) {
				b.Fatal("bad signature")
			}
		}
	})
	bearer := f.token(b, nil)
	for _, tc := range []struct {
		name string
		dpop bool
	}{{"bearer", false}, {"dpop", true}} {
		b.Run(tc.name, func(b *testing.B) {
			token, proofs := bearer, make([]string, b.N)
			if tc.dpop {
				key := newDPoPKey(b)
				token = f.token(b, map[string]any{"cnf": map[string]any{"jkt": key.jkt}})
				for i := range proofs {
					proofs[i] = key.proof(b, proofClaims(url, token, nil), nil)
				}
			}
			scheme := map[bool]string{false: "Bearer ", true: "DPoP "}[tc.dpop]
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				req := httptest.NewRequest(http.MethodGet, url, nil)
				req.Header.Set("Authorization", scheme+token)
				if tc.dpop {
					req.Header.Set("DPoP", proofs[i])
				}
				w := httptest.NewRecorder()
				h.ServeHTTP(w, req)
				if w.Code != 200 {
					b.Fatalf("status %d: %s", w.Code, w.Body)
				}
			}
		})
	}
}
