package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"
)

func TestTheExampleTellsItsStory(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var out bytes.Buffer
	if err := run(ctx, &out); err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	for _, want := range []string{
		`payments saw message "charge 42 EUR" from subject "orders", client "orders", scopes "payments:charge", authorization ""`,
		"server streaming → 3 answers; bidirectional → 2 echoes",
		"The issuer saw 1 token request for 3 calls.",
		"→ Unauthenticated: a bearer token is required; payments ran 0 more calls",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("the story lacks %q:\n%s", want, out.String())
		}
	}
}
