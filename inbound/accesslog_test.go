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
