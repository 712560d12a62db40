package outbound

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"golang.org/x/oauth2"
)

type staticSource struct{}

func (staticSource) Token(context.Context) (*oauth2.Token, error) {
	return &oauth2.Token{AccessToken: "bench-token", Expiry: time.Now().Add(time.Hour)}, nil
}

// BenchmarkCacheHit is the cost every outbound call pays for its token.
func BenchmarkCacheHit(b *testing.B) {
	cache := NewCache(staticSource{}, CacheOptions{Route: "bench"})
	ctx := context.Background()
	if _, err := cache.Token(ctx); err != nil {
		b.Fatal(err)
	}
	b.Run("serial", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := cache.Token(ctx); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := cache.Token(ctx); err != nil {
					b.Fatal(err)
				}
			}
		})
	})
}

// BenchmarkHandler is one call through the shared handler to an upstream
// over loopback, the token cached.
func BenchmarkHandler(b *testing.B) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNoContent)
	}))
	defer up.Close()
	target, _ := http.NewRequest("GET", up.URL+"/api", nil)
	o, err := New(Options{
		Routes:   []RouteOptions{{Name: "bench", URL: target.URL}},
		ClientID: "bench", ClientAuth: TLSClientAuth(), TokenURL: "https://idp.test/token",
	})
	if err != nil {
		b.Fatal(err)
	}
	o.routes[0].cache.src = staticSource{} // the token without a token endpoint
	h := o.Handler()
	serve := func() {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", "/bench/orders?id=1", nil))
		if rec.Code != http.StatusNoContent {
			b.Fatalf("status %d: %s", rec.Code, rec.Body)
		}
	}
	b.Run("serial", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			serve()
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				serve()
			}
		})
	})
}
