package inbound_test

import (
	"crypto/tls"
	"crypto/x509"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/authsidecar/authsidecar/inbound"
	"github.com/authsidecar/authsidecar/internal/certtest"
	"github.com/authsidecar/authsidecar/internal/reload"
	"github.com/authsidecar/authsidecar/proxy"
)

// TestAConnectionKeptAcrossAClientCAChangeIsHeldToTheNewBundle: a caller
// under CA A keeps its connection open (HTTP/1.1 keep-alive or HTTP/2)
// while CLIENT_CA_FILE drops A. Its next request on that connection is
// refused 403, as a new connection's handshake would be.
func TestAConnectionKeptAcrossAClientCAChangeIsHeldToTheNewBundle(t *testing.T) {
	dir := t.TempDir()
	serverCA, caA, caB := certtest.NewCA(t, "server-ca"), certtest.NewCA(t, "client-ca-a"), certtest.NewCA(t, "client-ca-b")
	certFile, keyFile := serverCA.Issue(t, certtest.Options{CommonName: "sidecar"}).WriteFiles(t, dir, "tls")
	cert, err := proxy.LoadKeyPair("TLS_CERT_FILE", certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	caFile := caA.WriteFile(t, dir, "client-ca")
	bundle, err := proxy.LoadCABundle("CLIENT_CA_FILE", caFile)
	if err != nil {
		t.Fatal(err)
	}
	watcher := reload.NewWatcher(nil, nil, bundle)
	f := newFixture(t, fixtureOptions{clientCerts: inbound.ClientCertPolicy{
		Required: true, Trusted: func(c [][]*x509.Certificate) bool { return bundle.Current().Trusts(c) },
	}})
	conf := proxy.ServerTLS(cert, bundle)
	conf.ClientAuth = tls.VerifyClientCertIfGiven
	opts := proxy.DefaultServerOptions(nil)
	opts.TLS = conf
	srv, err := proxy.Listen("inbound", "127.0.0.1:0", f.in.Handler(), opts)
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve()
	t.Cleanup(func() { srv.Close() })
	url := "https://" + srv.Addr().String() + "/orders"
	tok := f.token(t, nil)
	leaf := caA.Issue(t, certtest.Options{CommonName: "caller-under-A", Client: true})

	for _, h2 := range []bool{false, true} {
		swap(t, caFile, caA.PEM)
		watcher.CheckAll()
		tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: serverCA.Pool(),
			GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &leaf.TLS, nil }}}
		if h2 {
			tr.ForceAttemptHTTP2 = true
		} else {
			tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
		}
		c := &http.Client{Timeout: 5 * time.Second, Transport: tr}
		get := func() (int, bool) {
			req, _ := http.NewRequest(http.MethodGet, url, nil)
			req.Header.Set("Authorization", "Bearer "+tok)
			resp, err := c.Do(req)
			if err != nil {
				return 0, false
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			return resp.StatusCode, resp.TLS.DidResume
		}
		if code, _ := get(); code != 200 {
			t.Fatalf("h2 %v: a caller under A while A is trusted: %d", h2, code)
		}
		swap(t, caFile, caB.PEM)
		watcher.CheckAll()
		if code, _ := get(); code != http.StatusForbidden {
			t.Errorf("h2 %v: on the connection made under A, after A was dropped: %d, want 403", h2, code)
		}
		tr.CloseIdleConnections()
	}
}

func swap(t *testing.T, path string, content []byte) {
	t.Helper()
	tmp := filepath.Join(filepath.Dir(path), ".swap")
	if err := os.WriteFile(tmp, content, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}
