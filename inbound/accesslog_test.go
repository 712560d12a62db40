package inbound_test

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http"
	"sync"
	"testing"
	"time"
)

// lines is a log destination that keeps JSON lines.
type lines struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lines) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// access returns the access-log lines written so far.
func (l *lines) access(t *testing.T) []map[string]any {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []map[string]any
	for _, line := range bytes.Split(bytes.TrimSpace(l.b.Bytes()), []byte("\n")) {
		var rec map[string]any
		if err := json.Unmarshal(line, &rec); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		if rec["msg"] == "request" {
			out = append(out, rec)
		}
	}
	return out
}

func TestTheAccessLogSaysWhoCalledAndWhatBecameOfIt(t *testing.T) {
	log := &lines{}
	f := newFixture(t, fixtureOptions{
		scopes: []string{"payments:read"}, accessLog: true,
		logger:  slog.New(slog.NewJSONHandler(log, nil)),
		respond: func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusCreated) },
	})
	good := f.token(t, map[string]any{"client_id": "orders", "scope": "payments:read"})
	expired := f.token(t, map[string]any{"exp": time.Now().Add(-time.Hour).Unix()})
	narrow := f.token(t, map[string]any{"client_id": "reports", "scope": "other"})
	f.do(t, "/orders/./7", bearer(good))
	f.do(t, "/orders", bearer(expired))
	f.do(t, "/orders", bearer(narrow))
	f.do(t, "/a%2Fb", nil)
	got := log.access(t)
	if len(got) != 4 {
		t.Fatalf("%d access lines, want 4: %v", len(got), got)
	}
	seenID := f.app.requests()[0].Header.Get("X-Request-Id")
	for i, want := range []map[string]any{
		{"direction": "inbound", "method": "GET", "path": "/orders/7", "status": 201.0, "result": "allowed",
			"client_id": "orders", "upstream_status": 201.0, "request_id": seenID},
		{"path": "/orders", "status": 401.0, "result": "unauthenticated", "reason": "expired", "client_id": nil, "upstream_status": nil},
		{"status": 403.0, "result": "forbidden", "reason": "insufficient_scope", "client_id": "reports", "upstream_status": nil},
		{"path": "/a%2Fb", "status": 400.0, "result": "bad_request", "reason": "invalid_request"},
	} {
		for k, v := range want {
			if got[i][k] != v {
				t.Errorf("line %d: %s = %v, want %v (line %v)", i+1, k, got[i][k], v, got[i])
			}
		}
		if id, _ := got[i]["request_id"].(string); len(id) != 32 {
			t.Errorf("line %d: request_id %q, want the id generated and sent on", i+1, id)
		}
		if _, ok := got[i]["duration_ms"].(float64); !ok {
			t.Errorf("line %d has no duration_ms", i+1)
		}
	}
}

// TestConnectionCannotTakeTheSidecarsHeadersAway: what a caller's
// Connection header names is removed on receipt (RFC 9110 section
// 7.6.1), not when the request is forwarded, which would drop the
// sidecar's own X-Request-Id (the access log then naming an id the app
// never saw) or X-Auth-* headers.
func TestConnectionCannotTakeTheSidecarsHeadersAway(t *testing.T) {
	log := &lines{}
	f := newFixture(t, fixtureOptions{accessLog: true, logger: slog.New(slog.NewJSONHandler(log, nil))})
	h := bearer(f.token(t, nil))
	h.Set("X-Request-Id", "caller-chosen-id")
	h.Set("X-Other", "named")
	h.Set("X-Kept", "kept")
	h.Set("Connection", "keep-alive, X-Request-Id, X-Auth-Subject,X-Other")
	if resp, body := f.do(t, "/", h); resp.StatusCode != 200 {
		t.Fatalf("status %d %s", resp.StatusCode, body)
	}
	got := f.app.requests()[0].Header
	id := got.Get("X-Request-Id")
	if len(id) != 32 {
		t.Errorf("app got X-Request-Id %q, want one the sidecar made: the caller's was named in Connection", id)
	}
	if logged := log.access(t)[0]["request_id"]; logged != id {
		t.Errorf("the access log says request_id %v, the app got %q", logged, id)
	}
	if got.Get("X-Auth-Subject") != "svc-orders" || got.Get("X-Other") != "" || got.Get("X-Kept") != "kept" {
		t.Errorf("app got X-Auth-Subject %q, X-Other %q, X-Kept %q; want svc-orders, nothing, kept",
			got.Get("X-Auth-Subject"), got.Get("X-Other"), got.Get("X-Kept"))
	}
}
