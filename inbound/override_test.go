package inbound_test

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/authsidecar/authsidecar/inbound"
)

// overrideRules let anyone with a token POST to an order, and only
// orders:write DELETE, PUT or PATCH one: a method override in the form
// body must not turn the first into the second.
const overrideRules = `
rules:
  - paths: ["/orders/*"]
    methods: [DELETE, PUT, PATCH, OPTIONS]
    scopes: [orders:write]
  - paths: ["/hooks"]
    methods: [POST]
    public: true
`

// post is a raw POST of body to path with the extra header lines.
func post(path, auth, headers, body string) string {
	return fmt.Sprintf("POST %s HTTP/1.1\r\nHost: sidecar\r\n%s%sContent-Length: %d\r\n\r\n%s", path, auth, headers, len(body), body)
}

const urlencoded = "Content-Type: application/x-www-form-urlencoded\r\n"

// multipartBody is a multipart/form-data body, boundary "XyZ", of the
// parts given as their Content-Disposition and value.
func multipartBody(parts ...[2]string) string {
	var b strings.Builder
	for _, p := range parts {
		fmt.Fprintf(&b, "--XyZ\r\nContent-Disposition: %s\r\n\r\n%s\r\n", p[0], p[1])
	}
	b.WriteString("--XyZ--\r\n")
	return b.String()
}

const multipartType = "Content-Type: multipart/form-data; boundary=XyZ\r\n"

func TestFormMethodOverridesCannotSlipPastTheRules(t *testing.T) {
	f := newFixture(t, fixtureOptions{rules: overrideRules})
	auth := "Authorization: Bearer " + f.token(t, nil) + "\r\n"
	for _, tc := range []struct{ name, headers, body string }{
		{"urlencoded", urlencoded, "_method=DELETE"},
		{"lower case value", urlencoded, "a=1&_method=delete"},
		{"charset parameter", "Content-Type: Application/X-WWW-Form-Urlencoded; charset=utf-8\r\n", "_method=PUT"},
		{"no Content-Type (Rack reads it as a form)", "", "_method=DELETE"},
		{"escaped name", urlencoded, "%5Fmethod=DELETE"},
		{"escaped value", urlencoded, "_method=%44ELETE"},
		{"PHP turns a dot into _", urlencoded, ".method=DELETE"},
		{"PHP skips leading spaces", urlencoded, "+_method=DELETE"},
		{"ASP.NET ignores case", urlencoded, "_METHOD=PATCH"},
		{"a PHP array", urlencoded, "_method[]=DELETE"},
		{"split at ;", urlencoded, "a=1;_method=DELETE"},
		{"the last of two", urlencoded, "_method=POST&_method=DELETE"},
		{"a malformed escape elsewhere", urlencoded, "a=%zz&_method=DELETE"},
		{"leading space", urlencoded, "_method=+DELETE"},
		{"Unicode upper case (ASP.NET: OPTıONS is OPTIONS)", urlencoded, "_method=OPT%C4%B1ONS"},
		{"PHP cuts the media type at a space", "Content-Type: application/x-www-form-urlencoded x\r\n", "_method=DELETE"},
		{"Rack 2 and qs skip brackets", urlencoded, "[_method]=DELETE"},
		{"escaped brackets", urlencoded, "%5B_method%5D=DELETE"},
		{"Rack 2 ends a name at ']'", urlencoded, "_method]=DELETE"},
		{"Rack 2 skips a leading ']'", urlencoded, "]_method=DELETE"},
		{"trailing space", urlencoded, "_method=DELETE%20"},
		{"multipart", multipartType, multipartBody([2]string{`form-data; name="a"`, "1"}, [2]string{`form-data; name="_method"`, "DELETE"})},
		{"multipart, upper-case name", multipartType, multipartBody([2]string{`form-data; name="_METHOD"`, "delete"})},
		{"multipart/mixed", "Content-Type: multipart/mixed; boundary=XyZ\r\n", multipartBody([2]string{`form-data; name="_method"`, "PUT"})},
		{"multipart, RFC 2231 name", multipartType, multipartBody([2]string{`form-data; name*=utf-8''%5Fmethod`, "DELETE"})},
		{"multipart, a name Rack 2 reads inside another parameter", multipartType, multipartBody([2]string{`form-data; name="x"; foo="; name=_method;"`, "DELETE"})},
		{"multipart, an RFC 2231 continued name (Go's FormValue joins it)", multipartType, multipartBody([2]string{`form-data; name*0=_me; name*1=thod`, "DELETE"})},
	} {
		resp := f.raw(t, post("/orders/1", auth, tc.headers, tc.body))
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("%s: POST %q without orders:write: status %d, want 403", tc.name, tc.body, resp.StatusCode)
		}
	}
	if n := len(f.app.requests()); n != 0 {
		t.Fatalf("the app saw %d requests, want none", n)
	}

	// With the scope, the same requests pass, and the app gets the body
	// as it was sent.
	write := "Authorization: Bearer " + f.token(t, map[string]any{"scope": "orders:write"}) + "\r\n"
	for _, tc := range []struct{ headers, body string }{
		{urlencoded, "a=1&_method=DELETE"},
		{multipartType, multipartBody([2]string{`form-data; name="_method"`, "DELETE"}, [2]string{`form-data; name="f"; filename="a.txt"`, "content"})},
	} {
		if resp := f.raw(t, post("/orders/1", write, tc.headers, tc.body)); resp.StatusCode != 200 {
			t.Errorf("POST %q with orders:write: status %d, want 200", tc.body, resp.StatusCode)
			continue
		}
		if got := f.app.body[len(f.app.body)-1]; got != tc.body {
			t.Errorf("the app got the body %q, want %q", got, tc.body)
		}
	}
}

func TestFormsWithoutAnOverridePass(t *testing.T) {
	f := newFixture(t, fixtureOptions{rules: overrideRules})
	auth := "Authorization: Bearer " + f.token(t, nil) + "\r\n"
	for _, tc := range []struct{ name, headers, body string }{
		{"another field", urlencoded, "payment_method=card&method=x"},
		{"an empty form", urlencoded, ""},
		{"JSON is not read unless asked for", "Content-Type: application/json\r\n", `{"_method":"DELETE"}`},
		{"plain text is no form", "Content-Type: text/plain\r\n", "_method=DELETE"},
		{"multipart", multipartType, multipartBody([2]string{`form-data; name="payment_method"`, "card"}, [2]string{`form-data; name="f"; filename="m.txt"`, "a method"})},
	} {
		if resp := f.raw(t, post("/orders/1", auth, tc.headers, tc.body)); resp.StatusCode != 200 {
			t.Errorf("%s: POST %q: status %d, want 200", tc.name, tc.body, resp.StatusCode)
			continue
		}
		if got := f.app.body[len(f.app.body)-1]; got != tc.body {
			t.Errorf("%s: the app got the body %q, want %q", tc.name, got, tc.body)
		}
	}
}

// What parsers may read differently, where it may name an override, is
// refused with 400 before the app.
func TestAmbiguousMultipartFormsAreRefused(t *testing.T) {
	f := newFixture(t, fixtureOptions{rules: overrideRules})
	auth := "Authorization: Bearer " + f.token(t, nil) + "\r\n"
	part := func(headers string) string {
		return "--XyZ\r\n" + headers + "\r\n\r\nDELETE\r\n--XyZ--\r\n"
	}
	for _, tc := range []struct{ name, headers, body string }{
		{"two boundaries", "Content-Type: multipart/form-data; boundary=XyZ; boundary=Abc\r\n", multipartBody([2]string{`form-data; name="_method"`, "DELETE"})},
		{"a boundary Rack cuts at ','", "Content-Type: multipart/form-data; boundary=\"XyZ,a\"\r\n", "--XyZ,a\r\nContent-Disposition: form-data; name=\"_method\"\r\n\r\nDELETE\r\n--XyZ,a--\r\n"},
		{"no boundary", "Content-Type: multipart/form-data\r\n", multipartBody([2]string{`form-data; name="_method"`, "DELETE"})},
		{"PHP finds the boundary without ';'", "Content-Type: multipart/form-data boundary=XyZ\r\n", multipartBody([2]string{`form-data; name="_method"`, "DELETE"})},
		{"no closing delimiter", multipartType, "--XyZ\r\nContent-Disposition: form-data; name=\"_method\"\r\n\r\nDELETE\r\n"},
		{"a field name where Go sees no part", multipartType, "--XyZ\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1\n--XyZ\nContent-Disposition: form-data; name=\"_method\"\n\nDELETE\r\n--XyZ--\r\n"},
		{"Rack takes a Content-ID for the name", multipartType, part("Content-ID: _method")},
		{"Rack takes a Content-ID for a missing name", multipartType, part("Content-Disposition: form-data\r\nContent-ID: _method")},
		{"Rack 2 ends a token at ','", multipartType, part("Content-Disposition: form-data; name=_method,")},
		{"Rack 3 strips an unquoted value", multipartType, part("Content-Disposition: form-data; x=a b; name= _method")},
		{"Rack 3 undoes any backslash", multipartType, part(`Content-Disposition: form-data; x=a b; name="_me\thod"`)},
		{"Tomcat trims around '='", multipartType, part(`Content-Disposition: form-data; name ="_method"; x=a b`)},
		{"two Content-Disposition headers", multipartType, part("Content-Disposition: form-data; name=a\r\nContent-Disposition: form-data; name=_method")},
		{"an encoded word", multipartType, part("Content-Disposition: form-data; name=\"=?utf-8?q?=5Fmethod?=\"")},
		{"a part in UTF-16", multipartType, part("Content-Disposition: form-data; name=_method\r\nContent-Type: text/plain; charset=utf-16")},
	} {
		if resp := f.raw(t, post("/orders/1", auth, tc.headers, tc.body)); resp.StatusCode != http.StatusBadRequest {
			t.Errorf("%s: status %d, want 400", tc.name, resp.StatusCode)
		}
	}
	if n := len(f.app.requests()); n != 0 {
		t.Fatalf("the app saw %d requests, want none", n)
	}
}

func TestAFormTooLargeToReadIsJudgedForEveryMethod(t *testing.T) {
	f := newFixture(t, fixtureOptions{rules: overrideRules, maxFormBytes: 64})
	body := "a=" + strings.Repeat("x", 100) + "&_method=DELETE"
	resp := f.raw(t, post("/orders/1", "Authorization: Bearer "+f.token(t, nil)+"\r\n", urlencoded, body))
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("a form over MAX_FORM_BYTES, caller not allowed DELETE: status %d, want 413", resp.StatusCode)
	}
	write := "Authorization: Bearer " + f.token(t, map[string]any{"scope": "orders:write"}) + "\r\n"
	if resp := f.raw(t, post("/orders/1", write, urlencoded, body)); resp.StatusCode != 200 {
		t.Fatalf("a form over MAX_FORM_BYTES, caller allowed every method: status %d, want 200", resp.StatusCode)
	}
	if got := f.app.body[len(f.app.body)-1]; got != body {
		t.Errorf("the app got %d bytes of the body, want all %d", len(got), len(body))
	}
	// A POST the rules do not tell from other methods is not read at all.
	if resp := f.raw(t, post("/other", "Authorization: Bearer "+f.token(t, nil)+"\r\n", urlencoded, body)); resp.StatusCode != 200 {
		t.Errorf("a large form where no override matters: status %d, want 200", resp.StatusCode)
	}
}

// A public POST whose path is protected for other methods: an override
// to one of those needs a token.
func TestAFormOverrideOnAPublicPathNeedsAToken(t *testing.T) {
	f := newFixture(t, fixtureOptions{rules: overrideRules})
	if resp := f.raw(t, post("/hooks", "", urlencoded, "event=x")); resp.StatusCode != 200 {
		t.Errorf("a public POST: status %d, want 200", resp.StatusCode)
	}
	if resp := f.raw(t, post("/hooks", "", urlencoded, "event=x&_method=DELETE")); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("a public POST with _method=DELETE and no token: status %d, want 401", resp.StatusCode)
	}
	if n := len(f.app.requests()); n != 1 {
		t.Errorf("the app saw %d requests, want 1", n)
	}
}

func TestAStalledFormBodyIsRefused(t *testing.T) {
	f := newFixture(t, fixtureOptions{rules: overrideRules, bodyIdle: 200 * time.Millisecond})
	start := time.Now()
	req := fmt.Sprintf("POST /orders/1 HTTP/1.1\r\nHost: sidecar\r\nAuthorization: Bearer %s\r\n%sContent-Length: 100\r\n\r\n_method=DEL", f.token(t, nil), urlencoded)
	if resp := f.raw(t, req); resp.StatusCode != http.StatusRequestTimeout {
		t.Errorf("status %d, want 408", resp.StatusCode)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("answered after %s, want about the 200ms bound", d)
	}
	if n := len(f.app.requests()); n != 0 {
		t.Errorf("the app saw %d requests, want none", n)
	}
}

func TestBodiesThatCannotBeReadForAnOverrideNeedEveryMethod(t *testing.T) {
	f := newFixture(t, fixtureOptions{rules: overrideRules})
	plain := "Authorization: Bearer " + f.token(t, nil) + "\r\n"
	write := "Authorization: Bearer " + f.token(t, map[string]any{"scope": "orders:write"}) + "\r\n"
	for _, tc := range []struct{ name, headers string }{
		{"compressed (body-parser inflates it)", urlencoded + "Content-Encoding: gzip\r\n"},
		{"UTF-16 (ASP.NET and Tomcat decode it)", "Content-Type: application/x-www-form-urlencoded; charset=utf-16\r\n"},
		{"UTF-16 multipart", "Content-Type: multipart/form-data; boundary=XyZ; charset=\"UTF-16BE\"\r\n"},
	} {
		body := "opaque bytes"
		if resp := f.raw(t, post("/orders/1", plain, tc.headers, body)); resp.StatusCode != http.StatusUnsupportedMediaType {
			t.Errorf("%s, caller not allowed DELETE: status %d, want 415", tc.name, resp.StatusCode)
		}
		if resp := f.raw(t, post("/orders/1", write, tc.headers, body)); resp.StatusCode != 200 {
			t.Errorf("%s, caller allowed every method: status %d, want 200", tc.name, resp.StatusCode)
		} else if got := f.app.body[len(f.app.body)-1]; got != body {
			t.Errorf("%s: the app got %q, want %q", tc.name, got, body)
		}
	}
	if resp := f.raw(t, post("/orders/1", plain, "Content-Type: application/json; charset=utf-8\r\n", `{"a":"b"}`)); resp.StatusCode != 200 {
		t.Errorf("UTF-8 JSON: status %d, want 200", resp.StatusCode)
	}
}

// ASP.NET and Symfony take "post" for POST; so must the override check.
func TestALowerCasePostIsReadForAnOverride(t *testing.T) {
	f := newFixture(t, fixtureOptions{rules: overrideRules})
	req := "post /orders/1 HTTP/1.1\r\nHost: sidecar\r\nAuthorization: Bearer " + f.token(t, nil) + "\r\n" + urlencoded + "Content-Length: 14\r\n\r\n_method=DELETE"
	if resp := f.raw(t, req); resp.StatusCode != http.StatusForbidden {
		t.Errorf("post with _method=DELETE: status %d, want 403", resp.StatusCode)
	}
}

// A condition may read request.method: the body is read even where every
// method matches the same rule.
func TestAnOverrideMeetsAConditionOnTheMethod(t *testing.T) {
	f := newFixture(t, fixtureOptions{rules: `
rules:
  - paths: ["/tickets/*"]
    when: 'request.method == "POST" || claims.sub == "admin"'
`})
	auth := "Authorization: Bearer " + f.token(t, nil) + "\r\n"
	if resp := f.raw(t, post("/tickets/1", auth, urlencoded, "a=1")); resp.StatusCode != 200 {
		t.Errorf("a POST: status %d, want 200", resp.StatusCode)
	}
	if resp := f.raw(t, post("/tickets/1", auth, urlencoded, "_method=DELETE")); resp.StatusCode != http.StatusForbidden {
		t.Errorf("a POST taken for DELETE: status %d, want 403", resp.StatusCode)
	}
}

func TestADPoPRequestCannotCarryAnOverrideInItsBody(t *testing.T) {
	f := newFixture(t, fixtureOptions{rules: overrideRules})
	key := newDPoPKey(t)
	tok := f.token(t, map[string]any{"cnf": map[string]any{"jkt": key.jkt}, "scope": "orders:write"})
	send := func(body string) (*http.Response, string) {
		h := dpopHeaders(tok, key.proof(t, proofClaims(f.sidecar.URL+"/orders/7", tok, map[string]any{"htm": "POST"}), nil))
		h.Set("Content-Type", "application/x-www-form-urlencoded")
		return f.send(t, http.MethodPost, "/orders/7", body, h)
	}
	if resp, body := send("a=1"); resp.StatusCode != 200 {
		t.Fatalf("a DPoP POST without an override: %d %s, want 200", resp.StatusCode, body)
	}
	if resp, body := send("a=1&_method=DELETE"); resp.StatusCode != 401 || !strings.Contains(body, "cannot carry a method override") {
		t.Errorf("a DPoP POST with _method in its body: %d %s, want 401 for the method override", resp.StatusCode, body)
	}
	// A body that cannot be read for an override passes for a caller
	// allowed every method (orders:write is), but not with a proof for
	// one method: the body may name another.
	h := dpopHeaders(tok, key.proof(t, proofClaims(f.sidecar.URL+"/orders/7", tok, map[string]any{"htm": "POST"}), nil))
	h.Set("Content-Type", "application/x-www-form-urlencoded")
	h.Set("Content-Encoding", "gzip")
	if resp, body := f.send(t, http.MethodPost, "/orders/7", "compressed", h); resp.StatusCode != http.StatusUnsupportedMediaType {
		t.Errorf("a DPoP POST whose body cannot be read: %d %s, want 415", resp.StatusCode, body)
	}
	bearerH := bearer(f.token(t, map[string]any{"scope": "orders:write"}))
	bearerH.Set("Content-Type", "application/x-www-form-urlencoded")
	bearerH.Set("Content-Encoding", "gzip")
	if resp, body := f.send(t, http.MethodPost, "/orders/7", "compressed", bearerH); resp.StatusCode != 200 {
		t.Errorf("the same body with a bearer token allowed every method: %d %s, want 200", resp.StatusCode, body)
	}
}

// Bodies held for an override share a budget: past it, 503, not memory
// without end.
func TestBodiesHeldForAnOverrideShareABudget(t *testing.T) {
	f := newFixture(t, fixtureOptions{rules: overrideRules, maxFormBytes: 100, bodyIdle: 10 * time.Second})
	head := "POST /hooks HTTP/1.1\r\nHost: sidecar\r\n" + urlencoded + "Content-Length: 100\r\n\r\n_method="
	var held []net.Conn
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	for range 32 {
		c, err := net.Dial("tcp", f.sidecar.Listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
		if _, err := io.WriteString(c, head); err != nil {
			t.Fatal(err)
		}
	}
	// Once the 32 hold their shares (no probe may take one first)...
	deadline := time.Now().Add(5 * time.Second)
	for inbound.FormBudgetFits(f.in, 98) {
		if time.Now().After(deadline) {
			t.Fatal("32 bodies of 100 bytes held: the budget still fits another")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if resp := f.raw(t, post("/hooks", "", urlencoded, "event=x&_method=DELETE"+strings.Repeat(" ", 76))); resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("with 32 bodies of 100 bytes held: status %d, want 503", resp.StatusCode)
	}
	for _, c := range held {
		c.Close()
	}
	held = nil
	deadline = time.Now().Add(5 * time.Second)
	for {
		resp := f.raw(t, post("/hooks", "", urlencoded, "event=x"))
		if resp.StatusCode == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("once the held bodies are gone: status %d, want 200", resp.StatusCode)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A body of many "name=" is read in time linear in its size: scanning each
// name to the body's end made a 1 MiB body some 100 s of work.
func TestAMultipartBodyOfManyNamesIsReadOnce(t *testing.T) {
	body := "--XyZ\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n" + strings.Repeat("name=", 200_000) + "_method\r\n--XyZ--\r\n"
	start := time.Now()
	_, err := inbound.OverridesInMultipart(body)
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("a %d-byte body took %s to read", len(body), d)
	}
	if err == nil {
		t.Errorf("a field name in a part's value: no error, want a refusal")
	}
}

// With JSON bodies read (Laravel), a member names the method as a field
// does.
func TestJSONMethodOverridesWhenAskedFor(t *testing.T) {
	f := newFixture(t, fixtureOptions{rules: overrideRules, overrideBodies: &inbound.OverrideBodies{Forms: true, JSON: true}})
	auth := "Authorization: Bearer " + f.token(t, nil) + "\r\n"
	jsonType := "Content-Type: application/json\r\n"
	for _, tc := range []struct {
		name, headers, body string
		status              int
	}{
		{"a member", jsonType, `{"a":1,"_method":"DELETE"}`, 403},
		{"an escaped name", "Content-Type: application/vnd.api+json\r\n", `{"\u005fmethod":"DELETE"}`, 403},
		{"a name twice", jsonType, `{"_method":"POST","_method":"DELETE"}`, 403},
		{"not JSON", jsonType, `{"_method":"DELETE",}`, 400},
		{"no such member", jsonType, `{"payment_method":"card","text":"a \"quote\""}`, 200},
		{"NDJSON is not JSON to Laravel", "Content-Type: application/x-ndjson\r\n", `{"_method":"DELETE"}`, 200},
		{"a form still", urlencoded, "_method=DELETE", 403},
	} {
		if resp := f.raw(t, post("/orders/1", auth, tc.headers, tc.body)); resp.StatusCode != tc.status {
			t.Errorf("%s: POST %q: status %d, want %d", tc.name, tc.body, resp.StatusCode, tc.status)
		}
	}
	none := newFixture(t, fixtureOptions{rules: overrideRules, overrideBodies: &inbound.OverrideBodies{}})
	if resp := none.raw(t, post("/orders/1", "Authorization: Bearer "+none.token(t, nil)+"\r\n", urlencoded, "_method=DELETE")); resp.StatusCode != 200 {
		t.Errorf("METHOD_OVERRIDE_BODIES=none: a form override: status %d, want 200 (not read)", resp.StatusCode)
	}
}

// A refused body gives its share of the budget back: more refusals than
// the budget holds bodies leave it whole.
func TestARefusedBodyGivesItsBudgetBack(t *testing.T) {
	f := newFixture(t, fixtureOptions{rules: overrideRules, maxFormBytes: 100})
	bad := "Transfer-Encoding: chunked\r\n" + multipartType
	for range 40 {
		req := "POST /hooks HTTP/1.1\r\nHost: sidecar\r\n" + bad + "\r\n10\r\n--XyZ\r\n_method=x\r\n0\r\n\r\n"
		if resp := f.raw(t, req); resp.StatusCode != http.StatusBadRequest {
			t.Fatalf("a malformed multipart body: status %d, want 400", resp.StatusCode)
		}
	}
	if resp := f.raw(t, post("/hooks", "", urlencoded, "event=x&_method=POST")); resp.StatusCode != 200 {
		t.Errorf("after 40 refused bodies: status %d, want 200", resp.StatusCode)
	}
}

// A public POST whose body cannot be read is refused for the body, not
// for a token it never needed.
func TestAPublicPostWithABodyTooLargeToRead(t *testing.T) {
	f := newFixture(t, fixtureOptions{rules: overrideRules, maxFormBytes: 16})
	resp := f.raw(t, post("/hooks", "", urlencoded, "event="+strings.Repeat("x", 100)))
	if resp.StatusCode != http.StatusRequestEntityTooLarge || !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer ") {
		t.Errorf("a public POST form over the limit: status %d, WWW-Authenticate %q; want 413 with a Bearer challenge", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
	}
	if resp := f.raw(t, post("/hooks", "", "Content-Type: application/json\r\n", `{"event":"`+strings.Repeat("x", 100)+`"}`)); resp.StatusCode != 200 {
		t.Errorf("a public POST of JSON over the limit (JSON not read): status %d, want 200", resp.StatusCode)
	}
}

// Values and bodies that frameworks decode before they read them: a byte
// order mark ASP.NET drops, UTF-16 with one. An override value that is
// not a plain method name must be allowed as every method.
func TestOverridesBehindByteOrderMarks(t *testing.T) {
	f := newFixture(t, fixtureOptions{rules: overrideRules})
	plain := "Authorization: Bearer " + f.token(t, nil) + "\r\n"
	for _, tc := range []struct {
		name, headers, body string
		status              int
	}{
		{"a UTF-8 BOM before the value", multipartType, multipartBody([2]string{`form-data; name="_method"`, "\xEF\xBB\xBFDELETE"}), 403},
		{"a UTF-16 value", multipartType, multipartBody([2]string{`form-data; name="_method"`, "\xFF\xFED\x00E\x00L\x00E\x00T\x00E\x00"}), 403},
		{"a UTF-8 BOM before the form", urlencoded, "\xEF\xBB\xBF_method=DELETE", 403},
		{"a UTF-16 form", urlencoded, "\xFF\xFE_\x00m\x00e\x00t\x00h\x00o\x00d\x00=\x00D\x00", 415},
		{"an escaped BOM in the query's value", urlencoded, "_method=%EF%BB%BFDELETE", 403},
		{"an empty value overrides nothing", urlencoded, "_method=", 200},
	} {
		if resp := f.raw(t, post("/orders/1", plain, tc.headers, tc.body)); resp.StatusCode != tc.status {
			t.Errorf("%s: status %d, want %d", tc.name, resp.StatusCode, tc.status)
		}
	}
}

// A gRPC content type over HTTP/1.1 is no gRPC call: a JSON reading
// (Laravel's "+json") still applies.
func TestAGRPCTypeOverHTTP1IsReadAsJSON(t *testing.T) {
	f := newFixture(t, fixtureOptions{rules: overrideRules, overrideBodies: &inbound.OverrideBodies{Forms: true, JSON: true}})
	resp := f.raw(t, post("/orders/1", "Authorization: Bearer "+f.token(t, nil)+"\r\n", "Content-Type: application/grpc+json\r\n", `{"_method":"DELETE"}`))
	// The refusal is answered as gRPC answers (200, grpc-status), as for
	// any request of a gRPC type.
	if got := resp.Header.Get("Grpc-Status"); got == "" || got == "0" || len(f.app.requests()) != 0 {
		t.Errorf("application/grpc+json over HTTP/1.1 with _method=DELETE: status %d, grpc-status %q, %d requests reached the app; want a refusal", resp.StatusCode, got, len(f.app.requests()))
	}
}

// Every body read for an override gives its share of the budget back,
// refused, forwarded, or streamed on over the limit.
func TestTheBudgetComesBackWhole(t *testing.T) {
	f := newFixture(t, fixtureOptions{rules: overrideRules, maxFormBytes: 100, bodyIdle: 200 * time.Millisecond})
	write := "Authorization: Bearer " + f.token(t, map[string]any{"scope": "orders:write"}) + "\r\n"
	chunked := func(body string) string {
		return fmt.Sprintf("POST /orders/1 HTTP/1.1\r\nHost: sidecar\r\n%s%sTransfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n", write, urlencoded, len(body), body)
	}
	for _, tc := range []struct {
		name, request string
		status        int
	}{
		{"forwarded", post("/orders/1", write, urlencoded, "_method=DELETE"), 200},
		{"forwarded, chunked", chunked("_method=DELETE"), 200},
		{"over the limit, chunked, streamed on", chunked("_method=DELETE&a=" + strings.Repeat("x", 200)), 200},
		{"malformed", post("/orders/1", write, multipartType, "--XyZ\r\n_method"), 400},
		{"stalled", fmt.Sprintf("POST /orders/1 HTTP/1.1\r\nHost: sidecar\r\n%s%sContent-Length: 50\r\n\r\n_method", write, urlencoded), 408},
	} {
		if resp := f.raw(t, tc.request); resp.StatusCode != tc.status {
			t.Errorf("%s: status %d, want %d", tc.name, resp.StatusCode, tc.status)
		}
		deadline := time.Now().Add(5 * time.Second)
		for !inbound.FormBudgetWhole(f.in) {
			if time.Now().After(deadline) {
				t.Fatalf("%s: the budget did not come back whole", tc.name)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// A body's share comes back once the body has gone to the app, not when
// the app answers: a slow app does not hold the budget.
func TestTheBudgetComesBackOnceTheBodyIsForwarded(t *testing.T) {
	got, release := make(chan struct{}), make(chan struct{})
	defer close(release)
	f := newFixture(t, fixtureOptions{rules: overrideRules, maxFormBytes: 100, respond: func(w http.ResponseWriter, r *http.Request) {
		got <- struct{}{}
		<-release
	}})
	write := "Authorization: Bearer " + f.token(t, map[string]any{"scope": "orders:write"}) + "\r\n"
	go func() {
		c, err := net.Dial("tcp", f.sidecar.Listener.Addr().String())
		if err != nil {
			return
		}
		defer c.Close()
		_, _ = io.WriteString(c, fmt.Sprintf("POST /orders/1 HTTP/1.1\r\nHost: sidecar\r\n%s%sTransfer-Encoding: chunked\r\n\r\ne\r\n_method=DELETE\r\n0\r\n\r\n", write, urlencoded))
		_, _ = io.ReadAll(c)
	}()
	select {
	case <-got:
	case <-time.After(5 * time.Second):
		t.Fatal("the request did not reach the app")
	}
	if !inbound.FormBudgetWhole(f.in) {
		t.Errorf("the body is at the app, which has not answered: the budget is not whole")
	}
}
