package outbound

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestUpstreamTLSWithTheConfiguredCAAndClientCertificate(t *testing.T) {
	dir := t.TempDir()
	clientCert, clientKey := selfSigned(t, "orders-service")
	writePEM(t, filepath.Join(dir, "client.pem"), "CERTIFICATE", clientCert.Raw)
	keyDER, err := x509.MarshalPKCS8PrivateKey(clientKey)
	must(t, err)
	writePEM(t, filepath.Join(dir, "client-key.pem"), "PRIVATE KEY", keyDER)

	ts := newTokenServer(t)
	up := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if len(r.TLS.PeerCertificates) == 0 || r.TLS.PeerCertificates[0].Subject.CommonName != "orders-service" {
			t.Errorf("the upstream got no client certificate")
		}
		if r.Header.Get("Authorization") != "Bearer tok-1" {
			t.Errorf("Authorization = %q", r.Header.Get("Authorization"))
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	up.TLS = &tls.Config{ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: x509.NewCertPool()}
	up.TLS.ClientCAs.AddCert(clientCert)
	up.StartTLS()
	t.Cleanup(up.Close)
	writePEM(t, filepath.Join(dir, "ca.pem"), "CERTIFICATE", up.Certificate().Raw)

	h := build(t, env(ts, up.URL, map[string]string{
		"AUTHSIDECAR_OUTBOUND_TLS_CA_FILE":   filepath.Join(dir, "ca.pem"),
		"AUTHSIDECAR_OUTBOUND_TLS_CERT_FILE": filepath.Join(dir, "client.pem"),
		"AUTHSIDECAR_OUTBOUND_TLS_KEY_FILE":  filepath.Join(dir, "client-key.pem"),
	}), nil)
	expectStatus(t, h.do(t, "GET", "/payments/x", nil), http.StatusNoContent)
}

func selfSigned(t *testing.T, cn string) (*x509.Certificate, *ecdsa.PrivateKey) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	must(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		IsCA:         true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	must(t, err)
	cert, err := x509.ParseCertificate(der)
	must(t, err)
	return cert, key
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	must(t, os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600))
}
