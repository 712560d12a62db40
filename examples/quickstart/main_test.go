package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"
)

func TestQuickstartTellsTheWholeStory(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var out bytes.Buffer
	if err := run(ctx, &out); err != nil {
		t.Fatalf("run() = %v\n%s", err, out.String())
	}
	for _, want := range []string{
		`→ 200 {"charged":true,"caller":"orders"}`,
		"sidecar A asked the issuer for a token (1 request)",
		"client_id=orders auth=client_secret_basic audience=payments",
		"X-Auth-Client-Id: orders",
		"X-Auth-Scopes: payments:charge",
		`Authorization: ""`,
		"the issuer still saw 1 token request(s)",
		`→ 401`, `WWW-Authenticate: Bearer realm="authsidecar"`,
		`authsidecar_token_fetches_total{result="success",route="payments"} 1`,
		`authsidecar_inbound_requests_total{result="allowed"} 2`,
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q\n%s", want, out.String())
		}
	}
}
