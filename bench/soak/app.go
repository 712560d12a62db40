package soak

import (
	"net"
	"net/http"
	"strings"
	"time"

	"google.golang.org/grpc"

	"github.com/authsidecar/authsidecar/internal/grpctest"
)

// App is the service behind the inbound sidecar: plain HTTP/1.1 answers
// 200 with the caller's client id, and the grpctest echo service over h2c,
// on one port, as the sidecar sends gRPC as h2c and the rest as HTTP/1.1.
type App struct {
	URL  string
	srv  *http.Server
	grpc *grpc.Server
	Echo *grpctest.Server
}

// StartApp serves the app on 127.0.0.1.
func StartApp() (*App, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	a := &App{URL: "http://" + ln.Addr().String(), grpc: grpc.NewServer(), Echo: &grpctest.Server{}}
	grpctest.Register(a.grpc, a.Echo)
	protocols := new(http.Protocols)
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(true)
	a.srv = &http.Server{
		ReadHeaderTimeout: 5 * time.Second, Protocols: protocols,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.ProtoMajor == 2 && strings.HasPrefix(r.Header.Get("Content-Type"), "application/grpc") {
				a.grpc.ServeHTTP(w, r)
				return
			}
			w.Header().Set("Content-Type", "text/plain")
			_, _ = w.Write([]byte("ok " + r.Header.Get("X-Auth-Client-Id") + "\n"))
		}),
	}
	go func() { _ = a.srv.Serve(ln) }()
	return a, nil
}

// Close stops the app.
func (a *App) Close() error {
	a.grpc.Stop()
	return a.srv.Close()
}
