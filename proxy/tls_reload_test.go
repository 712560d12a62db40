package proxy

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/authsidecar/authsidecar/internal/certtest"
	"github.com/authsidecar/authsidecar/internal/reload"
)

// swapFile replaces path's content the way Kubernetes updates a Secret
// volume: a new file renamed over the old.
func swapFile(t *testing.T, path string, content []byte) {
	t.Helper()
	tmp := filepath.Join(filepath.Dir(path), ".new")
	if err := os.WriteFile(tmp, content, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// TestAReplacedClientCAIsTrustedAndTheOldOneNoLonger: CLIENT_CA_FILE is
// swapped from CA A to CA B. Once the watcher has seen it, B's clients are
// let in and A's refused, also when they resume a TLS session begun under
// A; a broken bundle changes nothing.
func TestAReplacedClientCAIsTrustedAndTheOldOneNoLonger(t *testing.T) {
	dir := t.TempDir()
	serverCA, caA, caB := certtest.NewCA(t, "server-ca"), certtest.NewCA(t, "client-ca-a"), certtest.NewCA(t, "client-ca-b")
	certFile, keyFile := serverCA.Issue(t, certtest.Options{CommonName: "sidecar"}).WriteFiles(t, dir, "tls")
	cert, err := LoadKeyPair("TLS_CERT_FILE", certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	caFile := caA.WriteFile(t, dir, "client-ca")
	pool, err := LoadCABundle("CLIENT_CA_FILE", caFile)
	if err != nil {
		t.Fatal(err)
	}
	watcher := reload.NewWatcher(nil, nil, pool)
	srv := serveTLS(t, ServerTLS(cert, pool))
	// Each client keeps its TLS sessions and opens a new connection per
	// request, so that later requests resume.
	client := func(ca *certtest.CA) *http.Client {
		leaf := ca.Issue(t, certtest.Options{CommonName: "caller", Client: true})
		conf := &tls.Config{RootCAs: serverCA.Pool(), ClientSessionCache: tls.NewLRUClientSessionCache(8),
			GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &leaf.TLS, nil }}
		return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: conf, DisableKeepAlives: true}}
	}
	fromA, fromB := client(caA), client(caB)
	let := func(c *http.Client) (in, resumed bool) {
		resp, err := c.Get(srv)
		if err != nil {
			return false, false
		}
		resp.Body.Close()
		return true, resp.TLS.DidResume
	}
	if in, _ := let(fromA); !in {
		t.Fatal("A's client refused while A is trusted")
	}
	if in, resumed := let(fromA); !in || !resumed {
		t.Fatalf("A's second connection: in %v, resumed %v; want a resumed session", in, resumed)
	}
	if in, _ := let(fromB); in {
		t.Fatal("B's client let in before B is trusted")
	}

	swapFile(t, caFile, caB.PEM)
	watcher.CheckAll()
	if in, _ := let(fromB); !in {
		t.Error("B's client refused once B is trusted")
	}
	if in, _ := let(fromA); in {
		t.Error("A's client, resuming a session begun under A, let in after A was replaced")
	}

	swapFile(t, caFile, []byte("not a certificate"))
	watcher.CheckAll()
	if in, _ := let(fromB); !in {
		t.Error("after a broken bundle: B's client refused; want the last good bundle in force")
	}
}

// TestAReplacedRootCAIsTrustedAndTheOldOneNoLonger: the same for
// OUTBOUND_TLS_CA_FILE, which a transport follows: a connection made
// under the old bundle is not reused, and certificate names are still
// checked by crypto/tls.
func TestAReplacedRootCAIsTrustedAndTheOldOneNoLonger(t *testing.T) {
	dir := t.TempDir()
	caA, caB := certtest.NewCA(t, "root-a"), certtest.NewCA(t, "root-b")
	upstream := func(ca *certtest.CA) string {
		srv := httptest.NewUnstartedServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
		srv.TLS = &tls.Config{Certificates: []tls.Certificate{ca.Issue(t, certtest.Options{CommonName: "upstream"}).TLS}}
		srv.EnableHTTP2 = true
		srv.StartTLS()
		t.Cleanup(srv.Close)
		return srv.URL
	}
	underA, underB := upstream(caA), upstream(caB)
	caFile := caA.WriteFile(t, dir, "roots")
	roots, err := LoadCertPool("OUTBOUND_TLS_CA_FILE", caFile)
	if err != nil {
		t.Fatal(err)
	}
	watcher := reload.NewWatcher(nil, nil, roots)
	transport := NewTransport(TransportOptions{DialTimeout: time.Second, TLS: ClientTLS(nil, nil), RootCAs: roots})
	client := &http.Client{Timeout: 5 * time.Second, Transport: transport}
	reach := func(url string) (string, error) {
		resp, err := client.Get(url)
		if err != nil {
			return "", err
		}
		resp.Body.Close()
		return resp.Proto, nil
	}
	if proto, err := reach(underA); err != nil || proto != "HTTP/2.0" {
		t.Fatalf("an upstream under A while A is trusted: %s %v, want HTTP/2.0 by ALPN", proto, err)
	}
	if _, err := reach(underB); err == nil {
		t.Fatal("an upstream under B reached before B is trusted")
	}
	misnamed := NewTransport(TransportOptions{DialTimeout: time.Second, RootCAs: roots}).(*rootsTransport)
	misnamed.current().(*autoTransport).alpn.DialContext = func(ctx context.Context, network, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, network, underA[len("https://"):])
	}
	if resp, err := (&http.Client{Timeout: 5 * time.Second, Transport: misnamed}).Get("https://payments.example/"); err == nil {
		resp.Body.Close()
		t.Fatal("a certificate for 127.0.0.1 and localhost was accepted for payments.example")
	}

	swapFile(t, caFile, caB.PEM)
	watcher.CheckAll()
	if _, err := reach(underB); err != nil {
		t.Errorf("an upstream under B once B is trusted: %v", err)
	}
	if _, err := reach(underA); err == nil {
		t.Error("an upstream under A, with a connection made while A was trusted, reached after A was replaced")
	}
	swapFile(t, caFile, []byte("garbage"))
	watcher.CheckAll()
	if _, err := reach(underB); err != nil {
		t.Errorf("after a broken bundle: %v; want the last good bundle in force", err)
	}
}
