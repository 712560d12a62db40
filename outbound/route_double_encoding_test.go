package outbound

import (
	"net/http"
	"testing"
)

// TestDoubleEncodedDotSegmentsAreRefused: "%252e%252e" (a "%2e%2e"
// encoded once more) must not go to the upstream with the route's token,
// as it did when climbsOut decoded once. An upstream that decodes twice, as a
// gateway in front of the real service does when it decodes the path and
// forwards it (or IIS with allowDoubleEscaping), resolves it to ".." and
// serves a path above the route's base path.
func TestDoubleEncodedDotSegmentsAreRefused(t *testing.T) {
	ts := newTokenServer(t)
	up := newUpstream(t, ts)
	h := build(t, env(ts, up.URL+"/api/v2", nil), nil)
	for _, target := range []string{
		"/payments/%252e%252e/admin",
		"/payments/%252E%252E%252Fadmin",
		"/payments/..%252fadmin",
	} {
		rec := h.do(t, "GET", target, nil)
		if rec.Code != http.StatusBadRequest {
			t.Errorf("%s: status %d, want 400 invalid_path; the upstream saw %s", target, rec.Code, up.last().requestURI)
		}
	}
}
