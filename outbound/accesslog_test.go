package outbound

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

func TestTheAccessLogSaysWhatBecameOfEachCall(t *testing.T) {
	ts := newTokenServer(t)
	up := newUpstream(t, ts)
	up.handle = func(w http.ResponseWriter, _ *http.Request, _ []byte) { w.WriteHeader(http.StatusAccepted) }
	h := build(t, env(ts, up.URL, map[string]string{
		"AUTHSIDECAR_ACCESS_LOG":        "true",
		"AUTHSIDECAR_OUTBOUND_ROUTES":   "payments,billing",
		"AUTHSIDECAR_ROUTE_BILLING_URL": up.URL,
		// billing's token requests are refused: no token to be had.
		"AUTHSIDECAR_ROUTE_BILLING_SCOPES": "refused",
	}), nil)
	ts.set(func(ts *tokenServer) {
		ts.authenticate = func(_ *http.Request, form url.Values) error {
			if form.Get("scope") == "refused" {
				return errors.New("scope refused")
			}
			return nil
		}
	})
	h.do(t, "POST", "/payments/orders?secret=1", strings.NewReader("x"))
	h.do(t, "GET", "/billing/invoices", nil)
	h.do(t, "GET", "/nowhere", nil)
	var got []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(h.log.String()), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatal(err)
		}
		if rec["msg"] == "request" {
			got = append(got, rec)
		}
	}
	if len(got) != 3 {
		t.Fatalf("%d access lines, want 3:\n%s", len(got), h.log.String())
	}
	for i, want := range []map[string]any{
		{"direction": "outbound", "method": "POST", "path": "/payments/orders", "route": "payments", "status": 202.0,
			"result": "forwarded", "upstream_status": 202.0, "request_id": up.last().header.Get("X-Request-Id"), "reason": nil},
		{"route": "billing", "status": 503.0, "result": "unavailable", "reason": "token_unavailable", "upstream_status": nil},
		{"route": nil, "status": 404.0, "result": "refused", "reason": "unknown_route"},
	} {
		for k, v := range want {
			if got[i][k] != v {
				t.Errorf("line %d: %s = %v, want %v (%v)", i+1, k, got[i][k], v, got[i])
			}
		}
		if id, _ := got[i]["request_id"].(string); len(id) != 32 {
			t.Errorf("line %d: request_id %q, want the id generated and sent on", i+1, id)
		}
	}
}
