package inbound

import (
	"strings"
	"testing"
)

func FuzzParseBearer(f *testing.F) {
	for _, seed := range []string{
		"Bearer abc.def.ghi", "bearer x", "BEARER  x==", "Bearer", "Bearer ", "Basic dXNlcjpwYXNz",
		"Bearer a b", "Bearer =", "Bearer a=b", "Bearer \x00", "Bearer eyJ.eyJ.", "Bearer ~+/-._",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, v string) {
		tok, err := parseBearer(v)
		if err != nil {
			if tok != "" {
				t.Fatalf("parseBearer(%q) returned %q with error %v", v, tok, err)
			}
			return
		}
		if tok == "" || !isToken68(tok) || strings.ContainsAny(tok, " \t\r\n") {
			t.Fatalf("parseBearer(%q) = %q, not token68", v, tok)
		}
		if !strings.HasSuffix(v, tok) || !strings.EqualFold(v[:6], "bearer") {
			t.Fatalf("parseBearer(%q) = %q, not the header's token", v, tok)
		}
	})
}

func FuzzParseUnverified(f *testing.F) {
	for _, seed := range []string{
		"eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJ4IiwiZXhwIjoxfQ.c2ln",
		"eyJhbGciOiJub25lIn0.e30.",
		"eyJhbGciOiJSUzI1NiJ9.eyJhdWQiOlsiYSIsImIiXSwic2NwIjoicmVhZCJ9.x",
		"eyJhbGciOiJSUzI1NiJ9.eyJleHAiOiIxIn0.x", "..", "a.b.c.d.e", "e30.e30.e30",
		"eyJhbGciOiJSUzI1NiJ9.eyJleHAiOjFlMzAwfQ.x",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		h, c, payload, err := parseUnverified(raw)
		if err != nil {
			return
		}
		if h.Alg == "" || c == nil || payload == nil {
			t.Fatalf("parseUnverified(%q) succeeded without alg, claims or payload", raw)
		}
		_ = c.scopes()
		_ = c.clientID()
	})
}

func TestClaimsAreReadByTheirExactNames(t *testing.T) {
	var c claims
	body := `{"scope":"read","SCOPE":"admin","Client_Id":"root","client_id":"orders","Sub":"x","sub":"svc"}`
	if err := c.UnmarshalJSON([]byte(body)); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(c.scopes(), " "); got != "read" || c.clientID() != "orders" || c.Subject != "svc" {
		t.Errorf("scopes %q, client %q, sub %q; want read, orders, svc", got, c.clientID(), c.Subject)
	}
	a, err := parseIntrospection([]byte(`{"ACTIVE":true,"scope":"read"}`))
	if err != nil || a.Active {
		t.Errorf(`"ACTIVE": true read as active = %v (%v)`, a.Active, err)
	}
}
