package proxy

import (
	"encoding/json"
	"net/http"
)

// ErrorBody is the small JSON body of every answer the sidecar makes itself,
// shaped like an OAuth2 error response (RFC 6749 section 5.2).
type ErrorBody struct {
	Error       string   `json:"error"`
	Description string   `json:"error_description,omitempty"`
	Routes      []string `json:"routes,omitempty"`
}

// WriteError answers with status and a JSON ErrorBody. The description is
// shown to the caller: it must never hold a token, a secret or a claim value.
func WriteError(w http.ResponseWriter, status int, code, description string) {
	WriteErrorBody(w, status, ErrorBody{Error: code, Description: description})
}

// WriteErrorBody answers with status and body.
func WriteErrorBody(w http.ResponseWriter, status int, body ErrorBody) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(body)
}
