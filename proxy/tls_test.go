package proxy

import (
	"context"
	"crypto/tls"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/authsidecar/authsidecar/internal/certtest"
	"github.com/authsidecar/authsidecar/internal/reload"
)

func clientFor(ca *certtest.CA, cert *certtest.Leaf) *http.Client {
	conf := &tls.Config{RootCAs: ca.Pool()}
	if cert != nil {
		// Present the certificate whatever CAs the server names.
		conf.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &cert.TLS, nil }
	}
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: conf}}
}

func TestMutualTLS(t *testing.T) {
	dir := t.TempDir()
	serverCA, clientCA, stranger := certtest.NewCA(t, "server-ca"), certtest.NewCA(t, "client-ca"), certtest.NewCA(t, "stranger-ca")
	certFile, keyFile := serverCA.Issue(t, certtest.Options{CommonName: "sidecar"}).WriteFiles(t, dir, "tls")
	cert, err := LoadKeyPair("TLS_CERT_FILE", certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	pool, err := LoadCABundle("CLIENT_CA_FILE", clientCA.WriteFile(t, dir, "ca"))
	if err != nil {
		t.Fatal(err)
	}
	conf := ServerTLS(cert, pool)
	if conf.MinVersion != tls.VersionTLS12 {
		t.Errorf("MinVersion = %x, want TLS 1.2", conf.MinVersion)
	}
	srv := serveTLS(t, conf)

	trusted := clientCA.Issue(t, certtest.Options{CommonName: "orders", Client: true})
	untrusted := stranger.Issue(t, certtest.Options{CommonName: "intruder", Client: true})
	if resp, err := clientFor(serverCA, trusted).Get(srv); err != nil || resp.StatusCode != 200 {
		t.Errorf("trusted client certificate: %v %v, want 200", resp, err)
	}
	if _, err := clientFor(serverCA, nil).Get(srv); err == nil {
		t.Error("a client without a certificate got through")
	}
	if _, err := clientFor(serverCA, untrusted).Get(srv); err == nil {
		t.Error("a client with an untrusted certificate got through")
	}
}

func TestRotatedServerCertificateIsServedWithoutRestart(t *testing.T) {
	dir := t.TempDir()
	ca := certtest.NewCA(t, "ca")
	first := ca.Issue(t, certtest.Options{CommonName: "first"})
	certFile, keyFile := first.WriteFiles(t, dir, "tls")
	kp, err := LoadKeyPair("TLS_CERT_FILE", certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	watcher := reload.NewWatcher(nil, nil, kp)
	conf := ServerTLS(kp, nil)
	srv := serveTLS(t, conf)
	servedCN := func() string {
		resp, err := clientFor(ca, nil).Get(srv)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.TLS.PeerCertificates[0].Subject.CommonName
	}
	if got := servedCN(); got != "first" {
		t.Fatalf("served %q, want first", got)
	}
	// A rotation lands as new files renamed into place.
	ca.Issue(t, certtest.Options{CommonName: "second"}).WriteFiles(t, dir, "new")
	if err := os.Rename(dir+"/new.crt", certFile); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(dir+"/new.key", keyFile); err != nil {
		t.Fatal(err)
	}
	if got := servedCN(); got != "first" {
		t.Errorf("before the watcher's next check: served %q, want still first", got)
	}
	watcher.CheckAll() // once a second
	if got := servedCN(); got != "second" {
		t.Errorf("after rotation: served %q, want second", got)
	}
	// A broken write keeps the last good pair in service.
	if err := os.WriteFile(certFile, []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	watcher.CheckAll()
	if got := servedCN(); got != "second" {
		t.Errorf("after a broken write: served %q, want the last good second", got)
	}
}

func serveTLS(t *testing.T, conf *tls.Config) string {
	t.Helper()
	opts := DefaultServerOptions(nil)
	opts.TLS = conf
	srv, err := Listen("test", "127.0.0.1:0", http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}), opts)
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve()
	t.Cleanup(func() { srv.Shutdown(context.Background()) })
	return "https://" + srv.Addr().String() + "/"
}
