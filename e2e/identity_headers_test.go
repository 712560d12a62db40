package e2e

// Callers who hold a valid token but try to tamper with the identity
// headers the app gets, in ways a Go client does not make easy: raw
// HTTP/1.1 on the wire.

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// rawCall writes request (header lines without the final blank line) to
// addr and reads the answer.
func rawCall(t *testing.T, addr string, lines ...string) reply {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(15 * time.Second))
	if _, err := fmt.Fprint(conn, strings.Join(lines, "\r\n")+"\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := readAllLimited(resp.Body)
	return reply{Status: resp.StatusCode, Header: resp.Header, Body: body}
}

// startTokenAndInbound starts a provider and sidecar B in front of a new
// app, and returns a valid token for B.
func startTokenAndInbound(t *testing.T) (*IDP, *inboundSidecar, *App, string) {
	t.Helper()
	idp := startIDP(t, chainIDPConfig())
	app := startApp(t)
	b := startInbound(t, idp, paymentsRS, "payments:write", app, nil)
	b.WaitReady(t, b.Addrs.AdminURL())
	return idp, b, app, idp.ClientCredentialsToken(t, basicClient, basicSecret, paymentsRS, "payments:write").AccessToken
}

// A caller lists the identity headers in Connection, as hop-by-hop
// headers. The sidecar must still hand the app the identity it verified;
// headers it sets are its own, not the caller's hop-by-hop ones.
func TestIdentityHeadersSurviveAConnectionHeaderNamingThem(t *testing.T) {
	t.Parallel()
	idp, b, app, tok := startTokenAndInbound(t)
	r := rawCall(t, b.Addrs.Inbound,
		"GET /orders/7 HTTP/1.1",
		"Host: payments",
		"Authorization: Bearer "+tok,
		"Connection: keep-alive, X-Auth-Subject, X-Auth-Issuer, X-Auth-Client-Id, X-Auth-Scopes",
	)
	if r.Status != http.StatusOK {
		t.Fatalf("a valid token: %s", r)
	}
	checkIdentity(t, app.Last(t), idp.Issuer, basicClient, "payments:write")
}

// A caller sends identity headers spelt with underscores. Apps behind
// CGI-style gateways (WSGI, PHP) read X_Auth_Subject and X-Auth-Subject as
// the same HTTP_X_AUTH_SUBJECT, so these are copies too and must be
// removed, as oauth2-proxy does since GHSA-vjrc-mh2v-45x6 (CVE-2025-64484).
func TestUnderscoreSpellingsOfIdentityHeadersAreRemoved(t *testing.T) {
	t.Parallel()
	idp, b, app, tok := startTokenAndInbound(t)
	r := rawCall(t, b.Addrs.Inbound,
		"GET /orders/7 HTTP/1.1",
		"Host: payments",
		"Authorization: Bearer "+tok,
		"X_Auth_Subject: admin",
		"x_auth_client_id: root",
		"X-Auth_Scopes: payments:admin",
		"X_AUTH_ISSUER: https://evil.example",
		"Connection: close",
	)
	if r.Status != http.StatusOK {
		t.Fatalf("a valid token: %s", r)
	}
	seen := app.Last(t)
	checkIdentity(t, seen, idp.Issuer, basicClient, "payments:write")
	for name, v := range seen.Header {
		norm := strings.ToLower(strings.ReplaceAll(name, "_", "-"))
		if strings.HasPrefix(norm, "x-auth-") && strings.Contains(name, "_") {
			t.Errorf("app saw the caller's %s: %q", name, v)
		}
	}
}
