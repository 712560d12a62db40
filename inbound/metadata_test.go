package inbound_test

import (
	"encoding/json"
	"net/http"
	"reflect"
	"strings"
	"testing"
)

func TestProtectedResourceMetadata(t *testing.T) {
	f := newFixture(t, fixtureOptions{
		resource: "https://payments.example/api/", scopes: []string{"payments:read"}, requireDPoP: false,
		rules: "rules:\n  - paths: [\"/admin/**\"]\n    scopes: [payments:admin, payments:read]\n",
	})
	const metaPath = "/.well-known/oauth-protected-resource/api"
	resp, body := f.do(t, metaPath, nil)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("the metadata without a token: %d %v %s", resp.StatusCode, resp.Header, body)
	}
	var doc map[string]any
	if err := json.Unmarshal([]byte(body), &doc); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"resource":                          "https://payments.example/api/",
		"authorization_servers":             []any{f.idp.Issuer},
		"scopes_supported":                  []any{"payments:admin", "payments:read"},
		"bearer_methods_supported":          []any{"header"},
		"dpop_signing_alg_values_supported": []any{"RS256", "ES256"},
		"dpop_bound_access_tokens_required": false,
	}
	if !reflect.DeepEqual(doc, want) {
		t.Errorf("metadata\n got %v\nwant %v", doc, want)
	}
	if len(f.app.requests()) != 0 {
		t.Error("the metadata request reached the app")
	}

	const meta = `resource_metadata="https://payments.example/.well-known/oauth-protected-resource/api"`
	for name, h := range map[string]http.Header{"no token": nil, "a bad token": bearer("x.y.z")} {
		resp, _ := f.do(t, "/orders", h)
		if got := resp.Header.Get("WWW-Authenticate"); resp.StatusCode != 401 || !strings.HasSuffix(got, ", "+meta) {
			t.Errorf("%s: %d %q, want a challenge ending with %s", name, resp.StatusCode, got, meta)
		}
	}
}

func TestNoMetadataWithoutAResource(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	resp, _ := f.do(t, "/.well-known/oauth-protected-resource", nil)
	if resp.StatusCode != 401 || strings.Contains(resp.Header.Get("WWW-Authenticate"), "resource_metadata") {
		t.Errorf("%d %q: without AUTHSIDECAR_INBOUND_RESOURCE the path is the app's, behind the token check", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
	}
}

func TestAResourceWithAnEscapedPath(t *testing.T) {
	f := newFixture(t, fixtureOptions{resource: "https://payments.example/api%20v1"})
	resp, body := f.do(t, "/.well-known/oauth-protected-resource/api%20v1", nil)
	if resp.StatusCode != 200 || !strings.Contains(body, `"resource":"https://payments.example/api%20v1"`) {
		t.Errorf("%d %s, want the metadata at the path as escaped once", resp.StatusCode, body)
	}
	resp, _ = f.do(t, "/x", nil)
	if got := resp.Header.Get("WWW-Authenticate"); !strings.Contains(got, `resource_metadata="https://payments.example/.well-known/oauth-protected-resource/api%20v1"`) {
		t.Errorf("challenge %q", got)
	}
}
