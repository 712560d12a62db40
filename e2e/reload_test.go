package e2e

// The rules file and the CA bundles are followed as they change, the way
// Kubernetes updates ConfigMap and Secret volumes (a symbolic link swapped
// over a new directory): a good version takes effect without a restart, a
// bad one is refused, counted and logged, and the last good one stays.

import (
	"crypto/tls"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/authsidecar/authsidecar/internal/certtest"
)

// configMapVolume is a directory laid out as the kubelet lays out a
// ConfigMap or Secret volume: each file a link through ..data to a
// timestamped directory, and an update a new directory that ..data is
// atomically pointed at.
type configMapVolume struct {
	t   testing.TB
	dir string
	gen int
}

func newConfigMapVolume(t testing.TB, files map[string]string) *configMapVolume {
	v := &configMapVolume{t: t, dir: t.TempDir()}
	v.update(files)
	for name := range files {
		if err := os.Symlink(filepath.Join("..data", name), filepath.Join(v.dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	return v
}

func (v *configMapVolume) path(name string) string { return filepath.Join(v.dir, name) }

// update writes files into a new generation and swaps ..data to it.
func (v *configMapVolume) update(files map[string]string) {
	v.t.Helper()
	v.gen++
	gen := filepath.Join(v.dir, "..gen"+strings.Repeat("x", v.gen))
	if err := os.Mkdir(gen, 0o700); err != nil {
		v.t.Fatal(err)
	}
	for name, content := range files {
		writeFile(v.t, gen, name, content)
	}
	tmp := filepath.Join(v.dir, "..data_tmp")
	if err := os.Symlink(filepath.Base(gen), tmp); err != nil {
		v.t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(v.dir, "..data")); err != nil {
		v.t.Fatal(err)
	}
}

const (
	adminNeedsScope = `rules:
  - paths: ["/admin/**"]
    scopes: [payments:admin]
`
	adminIsPublic = `rules:
  - paths: ["/admin/**"]
    public: true
`
)

func TestARulesChangeTakesEffectWithoutARestart(t *testing.T) {
	t.Parallel()
	idp := startIDP(t, chainIDPConfig())
	appB := startApp(t)
	vol := newConfigMapVolume(t, map[string]string{"rules.yaml": adminNeedsScope})
	b := startInbound(t, idp, paymentsRS, "", appB, map[string]string{"AUTHSIDECAR_INBOUND_RULES_FILE": vol.path("rules.yaml")})
	b.WaitReady(t, b.Addrs.AdminURL())
	admin := b.Addrs.AdminURL()
	tok := idp.ClientCredentialsToken(t, basicClient, basicSecret, paymentsRS, "payments:write").AccessToken
	url := b.Addrs.InboundURL() + "/admin/report"
	if r := call(t, http.MethodGet, url, nil, bearer(tok)); r.Status != http.StatusForbidden {
		t.Fatalf("under the first rules: %s; want 403", r)
	}
	if v := metric(t, admin, "authsidecar_config_reloads_total", "file", "INBOUND_RULES_FILE", "result", "success"); v != 0 {
		t.Errorf("the load at start counted as %v reloads, want 0", v)
	}

	vol.update(map[string]string{"rules.yaml": adminIsPublic})
	changed := time.Now()
	eventually(t, 5*time.Second, "the new rules are in force", func() (bool, string) {
		r := call(t, http.MethodGet, url+"?n=1", nil, nil)
		return r.Status == http.StatusOK, r.String()
	})
	t.Logf("the new rules were in force %s after the swap", time.Since(changed).Round(10*time.Millisecond))
	if seen := appB.Last(t); seen.RequestURI != "/admin/report?n=1" {
		t.Errorf("app B saw %s, want the call the new rules let in", seen.RequestURI)
	}
	expectMetric(t, admin, "successful reloads", 1, "authsidecar_config_reloads_total", "file", "INBOUND_RULES_FILE", "result", "success")
	if v := metric(t, admin, "authsidecar_config_last_reload_success_timestamp_seconds", "file", "INBOUND_RULES_FILE"); v < float64(changed.Unix()-1) {
		t.Errorf("last successful reload at %v, want after the swap at %d", v, changed.Unix())
	}

	// A bad version: refused, counted, logged; the last good rules stay.
	vol.update(map[string]string{"rules.yaml": "rules:\n  - paths: [\"/admin/**\"]\n    scopes: [payments:admin]\n    whenn: 'true'\n"})
	eventually(t, 5*time.Second, "the bad rules file is counted", func() (bool, string) {
		v := metric(t, admin, "authsidecar_config_reloads_total", "file", "INBOUND_RULES_FILE", "result", "error")
		return v == 1, ""
	})
	if r := call(t, http.MethodGet, url+"?n=2", nil, nil); r.Status != http.StatusOK {
		t.Errorf("after a bad rules file: %s; want 200 under the last good rules", r)
	}
	var refused bool
	for _, rec := range b.LogLines() {
		if rec["msg"] == "a changed file was refused; the last good version stays in force" && rec["file"] == "INBOUND_RULES_FILE" &&
			strings.Contains(rec["error"].(string), "whenn") {
			refused = true
		}
	}
	if !refused {
		t.Errorf("no log line names the refused rules file and its error:\n%s", b.Output())
	}

	// Fixed again: the scope is needed again.
	vol.update(map[string]string{"rules.yaml": adminNeedsScope})
	eventually(t, 5*time.Second, "the fixed rules are in force", func() (bool, string) {
		r := call(t, http.MethodGet, url, nil, bearer(tok))
		return r.Status == http.StatusForbidden, r.String()
	})
	expectMetric(t, admin, "successful reloads", 2, "authsidecar_config_reloads_total", "file", "INBOUND_RULES_FILE", "result", "success")
}

func TestASwappedClientCAIsTrustedWithoutARestart(t *testing.T) {
	t.Parallel()
	idp := startIDP(t, chainIDPConfig())
	appB := startApp(t)
	pki := newMTLSPKI(t)
	serverCert, serverKey := pki.server.WriteFiles(t, pki.dir, "server")
	vol := newConfigMapVolume(t, map[string]string{"ca.crt": string(pki.meshCA.PEM)})
	b := startInbound(t, idp, paymentsRS, "", appB, map[string]string{
		"AUTHSIDECAR_INBOUND_TLS_CERT_FILE":  serverCert,
		"AUTHSIDECAR_INBOUND_TLS_KEY_FILE":   serverKey,
		"AUTHSIDECAR_INBOUND_CLIENT_CA_FILE": vol.path("ca.crt"),
	})
	b.WaitReady(t, b.Addrs.AdminURL())
	tok := idp.ClientCredentialsToken(t, basicClient, basicSecret, paymentsRS, "payments:write").AccessToken
	url := "https://" + b.Addrs.Inbound + "/charges"
	fromMesh, fromNewCA := pki.forcedCertClient(pki.orders), pki.forcedCertClient(pki.ordersFromRogue)
	if r, err := doWith(fromMesh, http.MethodGet, url, tok); err != nil || r.Status != http.StatusOK {
		t.Fatalf("a certificate of the trusted CA: %v %v; want 200", r, err)
	}
	if _, err := doWith(fromNewCA, http.MethodGet, url, tok); err == nil {
		t.Fatal("a certificate of a CA not yet trusted got through")
	}

	vol.update(map[string]string{"ca.crt": string(pki.rogueCA.PEM)}) // the mesh moves to a new CA
	eventually(t, 5*time.Second, "the new CA is trusted", func() (bool, string) {
		r, err := doWith(fromNewCA, http.MethodGet, url, tok)
		return err == nil && r.Status == http.StatusOK, r.String()
	})
	if _, err := doWith(fromMesh, http.MethodGet, url, tok); err == nil {
		t.Error("a certificate of the replaced CA still gets through")
	}
	expectMetric(t, b.Addrs.AdminURL(), "successful reloads", 1, "authsidecar_config_reloads_total", "file", "INBOUND_CLIENT_CA_FILE", "result", "success")

	vol.update(map[string]string{"ca.crt": "-----BEGIN CERTIFICATE-----\nbroken\n-----END CERTIFICATE-----\n"})
	eventually(t, 5*time.Second, "the broken bundle is counted", func() (bool, string) {
		return metric(t, b.Addrs.AdminURL(), "authsidecar_config_reloads_total", "file", "INBOUND_CLIENT_CA_FILE", "result", "error") == 1, ""
	})
	if r, err := doWith(fromNewCA, http.MethodGet, url, tok); err != nil || r.Status != http.StatusOK {
		t.Errorf("after a broken bundle: %v %v; want 200 under the last good one", r, err)
	}
}

func TestASwappedUpstreamCAIsTrustedWithoutARestart(t *testing.T) {
	t.Parallel()
	idp := startIDP(t, chainIDPConfig())
	oldCA, newCA := certtest.NewCA(t, "upstream CA 2025"), certtest.NewCA(t, "upstream CA 2026")
	var serving atomic.Pointer[tls.Certificate]
	serving.Store(&oldCA.Issue(t, certtest.Options{CommonName: "payments"}).TLS)
	up := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("upstream")) }))
	up.TLS = &tls.Config{GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return serving.Load(), nil }}
	up.Config.SetKeepAlivesEnabled(false) // a handshake per call, so each call sees the certificate served now
	up.StartTLS()
	t.Cleanup(up.Close)

	vol := newConfigMapVolume(t, map[string]string{"ca.crt": string(oldCA.PEM)})
	addrs := freeSidecarAddrs(t)
	a := startSidecar(t, mergeEnv(addrs.Env(), map[string]string{
		"AUTHSIDECAR_OUTBOUND_ROUTES":        "payments",
		"AUTHSIDECAR_OUTBOUND_TOKEN_URL":     idp.TokenURL(),
		"AUTHSIDECAR_OUTBOUND_CLIENT_ID":     basicClient,
		"AUTHSIDECAR_OUTBOUND_CLIENT_SECRET": basicSecret,
		"AUTHSIDECAR_OUTBOUND_TLS_CA_FILE":   vol.path("ca.crt"),
		// By name, so that the upstream gets SNI and serves GetCertificate's.
		"AUTHSIDECAR_ROUTE_PAYMENTS_URL":      strings.Replace(up.URL, "127.0.0.1", "localhost", 1),
		"AUTHSIDECAR_ROUTE_PAYMENTS_RESOURCE": paymentsRS,
		"AUTHSIDECAR_ROUTE_PAYMENTS_SCOPES":   "payments:write",
	}))
	a.WaitReady(t, addrs.AdminURL())
	viaA := addrs.OutboundURL() + "/payments/x"
	if r := call(t, http.MethodGet, viaA, nil, nil); r.Status != http.StatusOK {
		t.Fatalf("an upstream under the trusted CA: %s; want 200", r)
	}
	serving.Store(&newCA.Issue(t, certtest.Options{CommonName: "payments"}).TLS)
	if r := call(t, http.MethodGet, viaA, nil, nil); r.Status != http.StatusBadGateway || r.errorCode() != "upstream_unavailable" {
		t.Fatalf("an upstream under a CA not yet trusted: %s; want 502 upstream_unavailable", r)
	}
	vol.update(map[string]string{"ca.crt": string(newCA.PEM)})
	eventually(t, 5*time.Second, "the upstream's new CA is trusted", func() (bool, string) {
		r := call(t, http.MethodGet, viaA, nil, nil)
		return r.Status == http.StatusOK, r.String()
	})
	serving.Store(&oldCA.Issue(t, certtest.Options{CommonName: "payments"}).TLS)
	if r := call(t, http.MethodGet, viaA, nil, nil); r.Status != http.StatusBadGateway {
		t.Errorf("an upstream under the replaced CA: %s; want 502", r)
	}
	expectMetric(t, addrs.AdminURL(), "successful reloads", 1, "authsidecar_config_reloads_total", "file", "OUTBOUND_TLS_CA_FILE", "result", "success")
}
