package discovery_test

import (
	"context"
	"fmt"
	"io"
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
	if _, err := (&discovery.Client{HTTP: srv.Client()}).Get(context.Background(), srv.URL+"/big"); err == nil || !strings.Contains(err.Error(), "body larger than") {
		t.Errorf("oversized body: error %v", err)
	}
	if _, err := (&discovery.Client{HTTP: srv.Client()}).Get(context.Background(), srv.URL+"/fail"); err == nil || !strings.Contains(err.Error(), "status 500") {
		t.Errorf("failed answer: error %v", err)
	}
}

func TestEndpointsAreHeldToTheSameRuleAsConfiguredURLs(t *testing.T) {
	const insecure = "is plain HTTP to a host that is not loopback: use https, or set AUTHSIDECAR_ALLOW_INSECURE_HTTP=true on a trusted network"
	tlsServer := func(t *testing.T, jwks string) (*discovery.Client, string) {
		srv := httptest.NewUnstartedServer(nil)
		srv.StartTLS()
		issuer := srv.URL
		srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, `{"issuer":%q,"jwks_uri":%q,"token_endpoint":%q}`, issuer, strings.ReplaceAll(jwks, "{{issuer}}", issuer), issuer+"/token")
		})
		t.Cleanup(srv.Close)
		return &discovery.Client{HTTP: srv.Client()}, issuer
	}
	t.Run("an https issuer whose jwks_uri is http is refused, loopback or not", func(t *testing.T) {
		for _, jwks := range []string{"http://idp.example.com/jwks", "http://127.0.0.1:1/jwks"} {
			c, issuer := tlsServer(t, jwks)
			_, err := c.Metadata(context.Background(), issuer)
			want := fmt.Sprintf("discovery: issuer %q: jwks_uri %q ", issuer, jwks)
			if err == nil || !strings.HasPrefix(err.Error(), want) {
				t.Errorf("jwks_uri %s: error = %v, want it to start with %s", jwks, err, want)
			}
		}
	})
	t.Run("an http issuer on loopback may list http endpoints on loopback only", func(t *testing.T) {
		_, issuer := server(t, "", map[string]string{"/.well-known/openid-configuration": `{"issuer":"{{issuer}}","jwks_uri":"http://idp.example.com/jwks?k=secret"}`})
		_, err := discovery.Fetch(context.Background(), http.DefaultClient, issuer)
		want := fmt.Sprintf(`discovery: issuer %q: jwks_uri "http://idp.example.com/jwks?k=[redacted]" %s`, issuer, insecure)
		if err == nil || err.Error() != want {
			t.Errorf("error = %v\nwant %s", err, want)
		}
		c := &discovery.Client{HTTP: http.DefaultClient, AllowInsecureHTTP: true}
		if _, err := c.Metadata(context.Background(), issuer); err != nil {
			t.Errorf("with AllowInsecureHTTP: %v", err)
		}
	})
	t.Run("https endpoints of an https issuer are accepted", func(t *testing.T) {
		c, issuer := tlsServer(t, "{{issuer}}/jwks")
		if md, err := c.Metadata(context.Background(), issuer); err != nil || md.JWKSURI != issuer+"/jwks" {
			t.Errorf("Metadata = %+v, %v", md, err)
		}
	})
}

func TestSecureURL(t *testing.T) {
	for _, tc := range []struct {
		url      string
		insecure bool
		ok       bool
	}{
		{"https://idp.example.com", false, true},
		{"http://127.0.0.1:8080", false, true},
		{"http://127.9.9.9", false, true},
		{"http://[::1]:80/x", false, true},
		{"http://localhost", false, true},
		{"http://localhost.evil.example", false, false},
		{"http://idp.example.com", false, false},
		{"http://10.0.0.1", false, false},
		{"http://idp.example.com", true, true},
		{"ftp://idp.example.com", true, false},
		{"idp.example.com", true, false},
		{"https://", false, false},
		{"http://:", true, false}, // found by FuzzMetadata: a Host, ":", but no host name
		{"https://:443/x", false, false},
		{"http://[]:80", true, false},
	} {
		if err := discovery.SecureURL(tc.url, tc.insecure); (err == nil) != tc.ok {
			t.Errorf("SecureURL(%q, %v) = %v, want ok %v", tc.url, tc.insecure, err, tc.ok)
		}
	}
}

func TestMetadataRefusesAnIssuerWithAQueryOrFragment(t *testing.T) {
	for _, issuer := range []string{"https://idp.example.com/realms/a?tenant=x", "https://idp.example.com/#a", "https://idp.example.com?"} {
		asked := 0
		client := &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
			asked++
			return nil, fmt.Errorf("asked %s", r.URL)
		})}
		_, err := (&discovery.Client{HTTP: client}).Metadata(context.Background(), issuer)
		if err == nil || !strings.Contains(err.Error(), "has a query or fragment, which an issuer identifier never has") || asked != 0 {
			t.Errorf("%s: error %v after %d requests, want it refused before any", issuer, err, asked)
		}
	}
}

func TestErrorsDoNotShowTheIssuersPassword(t *testing.T) {
	for _, doc := range []string{
		`{"issuer":"https://idp.example.com/realms/a","jwks_uri":"https://idp.example.com/keys"}`,
		// Another issuer that carries the password too (found by the
		// fuzzer: the document's copy of the issuer, one byte off).
		`{"issuer":"https://user:s3cret@idp.example.com/realms/b","jwks_uri":"https://idp.example.com/keys"}`,
		`{"issuer":"https://user:s3cret@idp.example.com/realms/a","jwks_uri":"ftp://idp.example.com/keys"}`,
	} {
		client := &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
			return &http.Response{StatusCode: 200, Body: io.NopCloser(strings.NewReader(doc)), Request: r}, nil
		})}
		_, err := (&discovery.Client{HTTP: client}).Metadata(context.Background(), "https://user:s3cret@idp.example.com/realms/a")
		if err == nil || strings.Contains(err.Error(), "s3cret") || !strings.Contains(err.Error(), "user:[redacted]@") {
			t.Errorf("error = %v, want one that names the issuer with its password redacted", err)
		}
	}
}

func TestAnUpperCaseHTTPSIssuerIsHeldToHTTPS(t *testing.T) {
	const issuer = "HTTPS://idp.example.com"
	client := &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
		doc := `{"issuer":"` + issuer + `","jwks_uri":"http://127.0.0.1/keys"}`
		return &http.Response{StatusCode: 200, Body: io.NopCloser(strings.NewReader(doc)), Request: r}, nil
	})}
	_, err := (&discovery.Client{HTTP: client}).Metadata(context.Background(), issuer)
	if err == nil || !strings.Contains(err.Error(), "is not https, while the issuer is") {
		t.Errorf("error = %v, want the plain-HTTP jwks_uri refused", err)
	}
}
