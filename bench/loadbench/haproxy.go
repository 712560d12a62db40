package loadbench

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"text/template"
	"time"
)

// haproxyConfig is HAProxy checking the bench's RS256 tokens itself, with
// the JWT converters of HAProxy 2.5 and later, as their documentation
// shows it: the alg pinned, issuer, audience and expiry compared, the
// signature verified against the public key (every request: HAProxy keeps
// no verified-token cache), and, as the sidecar does, the caller's
// X-Auth-* headers and the token dropped and the subject passed on.
// Anything else gets 401 before it reaches the app. With H2 it speaks h2c
// (HTTP/2 with prior knowledge) to callers and to the app: the gRPC case.
var haproxyConfig = template.Must(template.New("haproxy").Parse(`global
    maxconn 4096
{{- if .Threads}}
    nbthread {{.Threads}}
{{- end}}

defaults
    mode http
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    timeout http-keep-alive 120s
    option http-keep-alive

frontend inbound
    bind {{.Listen}}{{if .H2}} proto h2{{end}}
    option forwardfor
    http-request set-var(txn.bearer) http_auth_bearer
    http-request set-var(txn.alg) var(txn.bearer),jwt_header_query('$.alg')
    http-request set-var(txn.iss) var(txn.bearer),jwt_payload_query('$.iss')
    http-request set-var(txn.aud) var(txn.bearer),jwt_payload_query('$.aud[0]')
    http-request set-var(txn.exp) var(txn.bearer),jwt_payload_query('$.exp','int')
    http-request set-var(txn.now) date()
    http-request deny deny_status 401 unless { var(txn.alg) -m str RS256 }
    http-request deny deny_status 401 unless { var(txn.iss) -m str {{.Issuer}} }
    http-request deny deny_status 401 unless { var(txn.aud) -m str {{.Audience}} }
    http-request deny deny_status 401 if { var(txn.exp),sub(txn.now) -m int lt 0 }
    http-request deny deny_status 401 unless { var(txn.bearer),jwt_verify(txn.alg,"{{.PublicKey}}") -m int 1 }
    http-request del-header ^X-Auth- -m reg
    http-request del-header authorization
    http-request set-header X-Auth-Subject %[var(txn.bearer),jwt_payload_query('$.sub')]
    default_backend app

backend app
    http-reuse always
    server app {{.App}}{{if .H2}} proto h2{{end}}
`))

// startHAProxy runs binary (HAProxy) in the foreground in front of the app
// at appAddr, trusting the issuer's RS256 key, with threads threads (0:
// HAProxy's default, one per core), h2c on both sides when h2, and waits
// until it listens. Its files go in dir, under name.
func startHAProxy(ctx context.Context, binary, dir, name string, iss *Issuer, appAddr string, threads int, h2 bool) (*Process, error) {
	der, err := x509.MarshalPKIXPublicKey(&iss.rsaKey.PublicKey)
	if err != nil {
		return nil, err
	}
	keyFile := filepath.Join(dir, name+"-rs256.pem")
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o600); err != nil {
		return nil, err
	}
	listen, err := FreePort()
	if err != nil {
		return nil, err
	}
	var conf strings.Builder
	err = haproxyConfig.Execute(&conf, map[string]any{
		"Listen": listen, "App": appAddr, "Issuer": iss.URL, "Audience": Audience,
		"PublicKey": keyFile, "Threads": threads, "H2": h2,
	})
	if err != nil {
		return nil, err
	}
	confFile := filepath.Join(dir, name+".cfg")
	if err := os.WriteFile(confFile, []byte(conf.String()), 0o600); err != nil {
		return nil, err
	}
	// -c first: a configuration HAProxy refuses says why, instead of a
	// process that never listens.
	if out, err := exec.CommandContext(ctx, binary, "-c", "-q", "-f", confFile).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("haproxy refuses its configuration: %v: %s", err, out)
	}
	cmd := exec.Command(binary, "-db", "-f", confFile)
	cmd.Env = ChildEnv(0)
	p, err := start(name, cmd)
	if err != nil {
		return nil, err
	}
	p.Addr = listen
	deadline := time.Now().Add(10 * time.Second)
	for {
		conn, err := net.DialTimeout("tcp", listen, time.Second)
		if err == nil {
			conn.Close()
			return p, nil
		}
		select {
		case <-p.done:
			return nil, fmt.Errorf("haproxy exited before it listened: %v", p.err)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			p.Stop(time.Second)
			return nil, fmt.Errorf("haproxy does not listen on %s", listen)
		}
	}
}

// haproxyVersion is the first line of "haproxy -v", or empty.
func haproxyVersion(binary string) string {
	out, err := exec.Command(binary, "-v").Output()
	if err != nil {
		return ""
	}
	first, _, _ := strings.Cut(string(out), "\n")
	return strings.TrimSpace(first)
}

// checkGate makes sure a proxy that is measured as checking tokens does:
// a request without a token and one whose signature was altered get 401,
// a valid token 200. A proxy that let everything through would be fast
// and the comparison a lie.
func checkGate(ctx context.Context, name, url, valid string) error {
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{Proxy: nil}}
	defer client.CloseIdleConnections()
	altered := alterSignature(valid)
	for _, c := range []struct {
		what, token string
		want        int
	}{{"no token", "", http.StatusUnauthorized}, {"an altered signature", altered, http.StatusUnauthorized}, {"a valid token", valid, http.StatusOK}} {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		if c.token != "" {
			req.Header.Set("Authorization", "Bearer "+c.token)
		}
		resp, err := client.Do(req)
		if err != nil {
			return fmt.Errorf("%s, %s: %w", name, c.what, err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != c.want {
			return fmt.Errorf("%s answers %d to %s, not %d", name, resp.StatusCode, c.what, c.want)
		}
	}
	return nil
}

// alterSignature changes the first character of a JWT's signature.
func alterSignature(token string) string {
	sig := token[strings.LastIndexByte(token, '.')+1:]
	flipped := "A"
	if sig[0] == 'A' {
		flipped = "B"
	}
	return token[:len(token)-len(sig)] + flipped + sig[1:]
}
