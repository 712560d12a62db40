package e2e

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
)

// RecordedRequest is one request as the app saw it.
type RecordedRequest struct {
	Method   string
	Path     string
	RawQuery string
	// RequestURI is the request target exactly as it arrived, escapes
	// included: "/a%2Fb?x=1".
	RequestURI string
	Host       string
	Header     http.Header
	Body       []byte
}

// App stands for the service behind (inbound) or the upstream in front of
// (outbound) the sidecar: it records every request and answers with
// Respond, by default 200 and a small JSON body.
type App struct {
	*httptest.Server

	mu      sync.Mutex
	reqs    []RecordedRequest
	respond http.HandlerFunc
}

// startApp starts a recording app on 127.0.0.1, closed when the test ends.
func startApp(t testing.TB) *App {
	t.Helper()
	a := &App{}
	a.Server = httptest.NewServer(http.HandlerFunc(a.serve))
	t.Cleanup(a.Close)
	return a
}

func (a *App) serve(w http.ResponseWriter, r *http.Request) {
	body, err := readAllLimited(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	a.mu.Lock()
	a.reqs = append(a.reqs, RecordedRequest{
		Method: r.Method, Path: r.URL.Path, RawQuery: r.URL.RawQuery, RequestURI: r.RequestURI,
		Host: r.Host, Header: r.Header.Clone(), Body: body,
	})
	respond := a.respond
	a.mu.Unlock()
	if respond != nil {
		respond(w, r)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"ok": true, "path": r.URL.Path})
}

// Respond replaces the default answer; the request is recorded either way
// (its body already read).
func (a *App) Respond(h http.HandlerFunc) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.respond = h
}

// Requests returns a copy of every request seen so far, oldest first.
func (a *App) Requests() []RecordedRequest {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]RecordedRequest(nil), a.reqs...)
}

// Last returns the latest request, failing the test if there was none.
func (a *App) Last(t testing.TB) RecordedRequest {
	t.Helper()
	reqs := a.Requests()
	if len(reqs) == 0 {
		t.Fatal("the app saw no request")
	}
	return reqs[len(reqs)-1]
}

// Reset forgets the requests seen so far.
func (a *App) Reset() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.reqs = nil
}
