package e2e

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

const expressAPI = "https://express.example/api"

// expressRules protect the Express app's routes; the global rule asks
// every other path for the scope "app".
const expressRules = `
rules:
  - paths: ["/public/**"]
    public: true
  - paths: ["/admin/**"]
    scopes: [admin]
  - paths: ["/orders/*"]
    methods: [DELETE]
    scopes: ["orders:delete"]
  - paths: ["/tenants/**"]
    when: 'request.path.startsWith("/tenants/" + claims.client_id + "/")'
  - paths: ["/**"]
    scopes: [app]
`

// rawRequest writes request to addr as bytes and returns the status, or 0
// when no answer came within two seconds.
func rawRequest(t testing.TB, addr, request string) int {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := io.WriteString(c, request); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestTheRulesJudgeWhatExpressServes runs the sidecar in front of a real
// Express app (routing case-insensitively, decoding params, honouring
// method overrides, as Express does by default) with a rules file, and
// sends it what an attacker would: the app's own handler for a protected
// route must never run for a token that lacks the route's scope.
func TestTheRulesJudgeWhatExpressServes(t *testing.T) {
	t.Parallel()
	idp := startIDP(t, IDPConfig{
		Clients: []IDPClient{
			{ID: "svc-app", Secret: "app-secret-0d1e", Scopes: []string{"app"}},
			{ID: "svc-bare", Secret: "bare-secret-9f2c", Scopes: []string{"app"}},
			{ID: "svc-deleter", Secret: "deleter-secret-77ab", Scopes: []string{"app", "orders:delete"}},
		},
		Resources: map[string]IDPResource{expressAPI: {Scopes: []string{"app", "admin", "orders:delete"}}},
	})
	app := startExpress(t)
	rulesFile := filepath.Join(t.TempDir(), "rules.yaml")
	if err := os.WriteFile(rulesFile, []byte(expressRules), 0o600); err != nil {
		t.Fatal(err)
	}
	addrs := freeSidecarAddrs(t)
	b := startSidecar(t, mergeEnv(addrs.Env(), map[string]string{
		"AUTHSIDECAR_INBOUND_ISSUERS":                idp.Issuer,
		"AUTHSIDECAR_INBOUND_AUDIENCES":              expressAPI,
		"AUTHSIDECAR_INBOUND_UPSTREAM":               app.URL,
		"AUTHSIDECAR_INBOUND_RULES_FILE":             rulesFile,
		"AUTHSIDECAR_INBOUND_CASE_INSENSITIVE_PATHS": "true", // Express routes so
		// The app takes _method from JSON bodies too.
		"AUTHSIDECAR_INBOUND_METHOD_OVERRIDE_BODIES": "form,json",
		"AUTHSIDECAR_LOG_LEVEL":                      "debug",
	}))
	b.WaitReady(t, "http://"+addrs.Admin)
	appTok := idp.ClientCredentialsToken(t, "svc-app", "app-secret-0d1e", expressAPI, "app").AccessToken
	bareTok := idp.ClientCredentialsToken(t, "svc-bare", "bare-secret-9f2c", expressAPI, "").AccessToken
	req := func(line, token string, headers ...string) string {
		r := line + " HTTP/1.1\r\nHost: express.example\r\n"
		if token != "" {
			r += "Authorization: Bearer " + token + "\r\n"
		}
		for _, h := range headers {
			r += h + "\r\n"
		}
		return r + "Content-Length: 0\r\n\r\n"
	}
	typed := func(contentType string) func(line, token, body string) string {
		return func(line, token, body string) string {
			return line + " HTTP/1.1\r\nHost: express.example\r\nAuthorization: Bearer " + token +
				"\r\nContent-Type: " + contentType + "\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body
		}
	}
	form, jsonBody := typed("application/x-www-form-urlencoded"), typed("application/json")
	for _, tc := range []struct {
		name, request string
		status        int
		mustNotRun    string // the handler that must not run
	}{
		{"an absolute-form target without a path", req("GET http://express.example", bareTok), 403, "root"},
		{"a protected route in upper case", req("GET /ADMIN/users", appTok), 403, "admin"},
		{"a protected route in mixed case", req("DELETE /Orders/1", appTok), 403, "delete-order"},
		{"an encoded slash", req("DELETE /orders/1%2Fx", appTok), 400, "delete-order"},
		{"an encoded slash in lower case", req("DELETE /orders/1%2fx", appTok), 400, "delete-order"},
		{"a method override header", req("POST /orders/7", appTok, "X-HTTP-Method-Override: DELETE"), 404, "delete-order"},
		{"an X-HTTP-Method header", req("POST /orders/7", appTok, "X-HTTP-Method: DELETE"), 404, "delete-order"},
		{"an X-Method-Override header", req("POST /orders/7", appTok, "X-Method-Override: DELETE"), 404, "delete-order"},
		{"a method override in the query", req("POST /orders/8?_method=DELETE", appTok), 403, "delete-order"},
		{"a method override in a form", form("POST /orders/9", appTok, "note=x&_method=DELETE"), 403, "delete-order"},
		{"a method override in a form, escaped", form("POST /orders/9", appTok, "%5Fmethod=delete"), 403, "delete-order"},
		{"a method override in a JSON body", jsonBody("POST /orders/9", appTok, `{"note":"x","_method":"DELETE"}`), 403, "delete-order"},
		{"dot segments out of a public path", req("GET /public/../admin/users", bareTok), 403, "admin"},
		{"Tomcat's dot segment with parameters", req("GET /public/..;/admin/users", bareTok), 403, "admin"},
		{"encoded dot segments", req("GET /public/%2e%2e/admin/users", bareTok), 403, "admin"},
		{"dot segments out of one's own tenant", req("GET /tenants/svc-app/../svc-other/orders", appTok), 403, "tenant-orders"},
	} {
		app.Reset(t)
		if got := rawRequest(t, addrs.Inbound, tc.request); got != tc.status {
			t.Errorf("%s: status %d, want %d", tc.name, got, tc.status)
		}
		for _, run := range app.Ran(t) {
			if run.Handler == tc.mustNotRun {
				t.Errorf("%s: the app's %s handler ran: %s %s %v", tc.name, run.Handler, run.Method, run.URL, run.Params)
			}
		}
	}
	// What a token with the scope, or none where none is needed, gets.
	app.Reset(t)
	deleterTok := idp.ClientCredentialsToken(t, "svc-deleter", "deleter-secret-77ab", expressAPI, "app orders:delete").AccessToken
	for _, tc := range []struct{ request string }{
		{req("GET /public/info", "")},
		{req("GET /tenants/svc-app/orders", appTok)},
		{req("GET /", appTok)},
		// The override the sidecar refused above is one Express honours.
		{form("POST /orders/9", deleterTok, "note=x&_method=DELETE")},
	} {
		if got := rawRequest(t, addrs.Inbound, tc.request); got != 200 {
			t.Errorf("%q: status %d, want 200", strings.SplitN(tc.request, "\r\n", 2)[0], got)
		}
	}
	var ran []string
	for _, run := range app.Ran(t) {
		ran = append(ran, run.Handler)
	}
	if strings.Join(ran, " ") != "public tenant-orders root delete-order" {
		t.Errorf("the allowed requests ran %q, want public tenant-orders root delete-order", ran)
	}
}
