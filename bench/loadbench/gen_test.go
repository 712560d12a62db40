package loadbench

import (
	"context"
	"net/http"
	"runtime"
	"slices"
	"strings"
	"testing"
)

// cannedTransport answers every request with 200 and an empty body, and
// notes the Authorization header it was sent.
type cannedTransport struct {
	resp *http.Response
	seen []string
}

func (c *cannedTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	c.seen = append(c.seen, r.Header.Get("Authorization"))
	c.resp.Body = http.NoBody
	return c.resp, nil
}

func cannedCaller(t *testing.T, tokens []string, id, workers int) (caller, *cannedTransport) {
	t.Helper()
	tr := &cannedTransport{resp: &http.Response{StatusCode: 200, Header: http.Header{}}}
	c, err := httpCaller(context.Background(), &http.Client{Transport: tr}, "http://app.test/", authHeaders(tokens), id, workers)
	if err != nil {
		t.Fatal(err)
	}
	return c, tr
}

func TestHTTPCallerWalksTheTokensWithAStrideOfWorkers(t *testing.T) {
	tokens := []string{"t0", "t1", "t2", "t3", "t4"}
	call, tr := cannedCaller(t, tokens, 1, 2)
	for range 5 {
		if err := call(); err != nil {
			t.Fatal(err)
		}
	}
	want := []string{"Bearer t1", "Bearer t3", "Bearer t0", "Bearer t2", "Bearer t4"}
	if !slices.Equal(tr.seen, want) {
		t.Errorf("Authorization headers %q, want %q", tr.seen, want)
	}
}

// The generator shares the CPUs with what it measures: a request must
// not copy its token (some 800 bytes for RS256) into a new header value.
func TestHTTPCallerDoesNotCopyTheTokenPerRequest(t *testing.T) {
	token := strings.Repeat("x", 64<<10)
	call, tr := cannedCaller(t, []string{token, token}, 0, 1)
	const calls = 100
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range calls {
		tr.seen = tr.seen[:0]
		if err := call(); err != nil {
			t.Fatal(err)
		}
	}
	runtime.ReadMemStats(&after)
	if perCall := (after.TotalAlloc - before.TotalAlloc) / calls; perCall >= uint64(len(token)) {
		t.Errorf("a call allocates %d bytes, want less than the token's %d", perCall, len(token))
	}
}
