package discovery_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/authsidecar/authsidecar/discovery"
)

// server answers the well-known paths in docs; {{issuer}} in a document is
// replaced by the server's URL plus issuerPath.
func server(t *testing.T, issuerPath string, docs map[string]string) (*httptest.Server, string) {
	t.Helper()
	srv := httptest.NewUnstartedServer(nil)
	issuer := "http://" + srv.Listener.Addr().String() + issuerPath
	srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		doc, ok := docs[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		fmt.Fprint(w, strings.ReplaceAll(doc, "{{issuer}}", issuer))
	})
	srv.Start()
	t.Cleanup(srv.Close)
	return srv, issuer
}

func TestFetchFindsTheMetadata(t *testing.T) {
	oidc := `{"issuer":"{{issuer}}","jwks_uri":"{{issuer}}/keys","token_endpoint":"{{issuer}}/token","introspection_endpoint":"{{issuer}}/introspect"}`
	cases := []struct {
		name, issuerPath string
		docs             map[string]string
	}{
		{"OpenID Connect discovery", "", map[string]string{"/.well-known/openid-configuration": oidc}},
		{"RFC 8414 with the issuer's path after the well-known part", "/tenant-a",
			map[string]string{"/.well-known/oauth-authorization-server/tenant-a": oidc}},
		{"RFC 8414 appended to the issuer", "/tenant-b",
			map[string]string{"/tenant-b/.well-known/oauth-authorization-server": oidc}},
		{"OIDC under an issuer path", "/realms/prod",
			map[string]string{"/realms/prod/.well-known/openid-configuration": oidc}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, issuer := server(t, tc.issuerPath, tc.docs)
			md, err := discovery.Fetch(context.Background(), http.DefaultClient, issuer)
			if err != nil {
				t.Fatal(err)
			}
			if md.JWKSURI != issuer+"/keys" || md.TokenEndpoint != issuer+"/token" || md.IntrospectionEndpoint != issuer+"/introspect" {
				t.Errorf("metadata = %+v", md)
			}
		})
	}
}

func TestFetchRefusesAnotherIssuersDocument(t *testing.T) {
	_, issuer := server(t, "", map[string]string{
		"/.well-known/openid-configuration": `{"issuer":"https://evil.example","jwks_uri":"https://evil.example/keys"}`,
	})
	_, err := discovery.Fetch(context.Background(), http.DefaultClient, issuer)
	want := fmt.Sprintf(`issuer is "https://evil.example", want %q`, issuer)
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("error = %v, want it to contain %s", err, want)
	}
}

func TestGetRefusesOversizedAndFailedAnswers(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/big" {
			w.Write([]byte(strings.Repeat("x", discovery.MaxBodyBytes+1)))
			return
		}
		http.Error(w, "boom", http.StatusInternalServerError)
	}))
	defer srv.Close()
	if _, err := discovery.Get(context.Background(), srv.Client(), srv.URL+"/big"); err == nil || !strings.Contains(err.Error(), "body larger than") {
		t.Errorf("oversized body: error %v", err)
	}
	if _, err := discovery.Get(context.Background(), srv.Client(), srv.URL+"/fail"); err == nil || !strings.Contains(err.Error(), "status 500") {
		t.Errorf("failed answer: error %v", err)
	}
}
