package proxy

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"
)

type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newCA(t *testing.T, name string) *testCA {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &testCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// issue returns a leaf certificate and key in PEM, for a server at
// 127.0.0.1 or a client, named cn.
func (ca *testCA) issue(t *testing.T, cn string, serial int64, usage x509.ExtKeyUsage) (certPEM, keyPEM []byte) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalPKCS8PrivateKey(key)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder})
}

func write(t *testing.T, path string, b []byte) string {
	t.Helper()
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func clientFor(ca *testCA, cert *tls.Certificate) *http.Client {
	pool := x509.NewCertPool()
	pool.AddCert(ca.cert)
	conf := &tls.Config{RootCAs: pool}
	if cert != nil {
		conf.Certificates = []tls.Certificate{*cert}
	}
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: conf}}
}

func TestMutualTLS(t *testing.T) {
	dir := t.TempDir()
	serverCA, clientCA, stranger := newCA(t, "server-ca"), newCA(t, "client-ca"), newCA(t, "stranger-ca")
	sc, sk := serverCA.issue(t, "sidecar", 2, x509.ExtKeyUsageServerAuth)
	conf, err := ServerTLS(write(t, dir+"/tls.crt", sc), write(t, dir+"/tls.key", sk), write(t, dir+"/ca.crt", clientCA.pem))
	if err != nil {
		t.Fatal(err)
	}
	srv := serveTLS(t, conf)

	trustedPEM, trustedKey := clientCA.issue(t, "orders", 3, x509.ExtKeyUsageClientAuth)
	trusted, _ := tls.X509KeyPair(trustedPEM, trustedKey)
	untrustedPEM, untrustedKey := stranger.issue(t, "intruder", 4, x509.ExtKeyUsageClientAuth)
	untrusted, _ := tls.X509KeyPair(untrustedPEM, untrustedKey)

	if resp, err := clientFor(serverCA, &trusted).Get(srv); err != nil || resp.StatusCode != 200 {
		t.Errorf("trusted client certificate: %v %v, want 200", resp, err)
	}
	if _, err := clientFor(serverCA, nil).Get(srv); err == nil {
		t.Error("a client without a certificate got through")
	}
	if _, err := clientFor(serverCA, &untrusted).Get(srv); err == nil {
		t.Error("a client with an untrusted certificate got through")
	}
}

func TestRotatedServerCertificateIsServedWithoutRestart(t *testing.T) {
	dir := t.TempDir()
	ca := newCA(t, "ca")
	c1, k1 := ca.issue(t, "first", 10, x509.ExtKeyUsageServerAuth)
	certFile, keyFile := write(t, filepath.Join(dir, "tls.crt"), c1), write(t, filepath.Join(dir, "tls.key"), k1)
	kp, err := LoadKeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	kp.now = func() time.Time { return now }
	conf := &tls.Config{GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return kp.Certificate() }}
	srv := serveTLS(t, conf)
	serial := func() int64 {
		resp, err := clientFor(ca, nil).Get(srv)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.TLS.PeerCertificates[0].SerialNumber.Int64()
	}
	if got := serial(); got != 10 {
		t.Fatalf("serial %d, want 10", got)
	}
	c2, k2 := ca.issue(t, "second", 11, x509.ExtKeyUsageServerAuth)
	// A rotation lands as new files swapped in by rename.
	write(t, certFile+".new", c2)
	write(t, keyFile+".new", k2)
	os.Rename(certFile+".new", certFile)
	os.Rename(keyFile+".new", keyFile)
	now = now.Add(2 * time.Second)
	if got := serial(); got != 11 {
		t.Errorf("after rotation: serial %d, want 11", got)
	}
	// A broken file keeps the last good pair in service.
	write(t, certFile, []byte("garbage"))
	now = now.Add(2 * time.Second)
	if got := serial(); got != 11 {
		t.Errorf("after a broken write: serial %d, want the last good 11", got)
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
