package outbound

import (
	"errors"
	"io"
	"math"
	"strings"
	"testing"

	"golang.org/x/oauth2"
)

func TestReplayBody(t *testing.T) {
	for _, tc := range []struct {
		name      string
		body      string
		readFirst int // bytes the first attempt reads before the 401
		limit     int
		length    int64 // the request's ContentLength; -1 unknown
		want      bool
	}{
		{"read whole, within the bound", "0123456789", 10, 10, -1, true},
		{"read in part: the rest is read for the retry", "0123456789", 4, 10, -1, true},
		{"not read at all", "0123456789", 0, 10, -1, true},
		{"read in part, the rest over the bound", "0123456789", 4, 9, -1, false},
		{"read past the bound", "0123456789", 10, 9, -1, false},
		{"empty", "", 0, 10, -1, true},
		{"announced within the bound", "0123456789", 10, 10, 10, true},
		{"announced within the bound, read in part", "0123456789", 3, 10, 10, true},
		{"announced over the bound: never copied", "0123456789", 10, 9, 10, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newReplayBody(io.NopCloser(strings.NewReader(tc.body)), tc.limit, tc.length)
			first := make([]byte, tc.readFirst)
			if _, err := io.ReadFull(b, first); err != nil {
				t.Fatal(err)
			}
			got, ok := b.replay()
			if ok != tc.want {
				t.Fatalf("replayable = %v, want %v", ok, tc.want)
			}
			if ok && string(got) != tc.body {
				t.Errorf("replayed %q, want %q", got, tc.body)
			}
			if _, err := b.Read(make([]byte, 1)); !errors.Is(err, errDetached) {
				t.Errorf("the first attempt read on after the replay: err = %v, want errDetached", err)
			}
		})
	}
}

func TestCheckToken(t *testing.T) {
	for _, tc := range []struct {
		tok  oauth2.Token
		dpop bool
		want string
	}{
		{oauth2.Token{AccessToken: "abc", TokenType: "Bearer"}, false, ""},
		{oauth2.Token{AccessToken: "abc", TokenType: "bearer"}, false, ""},
		{oauth2.Token{AccessToken: "abc"}, false, ""},
		{oauth2.Token{AccessToken: "abc", TokenType: "DPoP"}, false, `outbound: token endpoint returned token_type "DPoP", want "Bearer"`},
		{oauth2.Token{AccessToken: "abc", TokenType: "DPoP"}, true, ""},
		{oauth2.Token{AccessToken: "abc", TokenType: "Bearer"}, true, ""},
		{oauth2.Token{AccessToken: "abc", TokenType: "MAC"}, true, `outbound: token endpoint returned token_type "MAC", want "Bearer"`},
		{oauth2.Token{AccessToken: "", TokenType: "Bearer"}, false, "outbound: token endpoint returned no access_token"},
		{oauth2.Token{AccessToken: "abc\r\nX-Evil: 1"}, false, "outbound: token endpoint returned an access_token with characters a header cannot carry"},
	} {
		err := checkToken(&tc.tok, tc.dpop)
		if got := errString(err); got != tc.want {
			t.Errorf("checkToken(%q, %q) = %q, want %q", tc.tok.AccessToken, tc.tok.TokenType, got, tc.want)
		}
	}
}

func TestExpiresIn(t *testing.T) {
	for _, tc := range []struct {
		raw    any
		want   int64
		wantOK bool
	}{
		{float64(3600), 3600, true},
		{"3600", 3600, true}, // as PayPal sends it
		{nil, 0, false},
		{"soon", 0, false},
		{float64(0), 0, false},
		// Past maxExpiresIn, a lifetime as a Duration overflowed: 1e10 s to
		// a token expired long ago, 18446744074 s to one of 290 ms.
		{float64(1e10), math.MaxInt32, true},
		{float64(18446744074), math.MaxInt32, true},
		{"18446744074", math.MaxInt32, true},
		{float64(1e300), math.MaxInt32, true},
		{int64(300), 300, true}, // form-encoded, as x/oauth2 parses it
		{int64(18446744074 / 2), math.MaxInt32, true},
		{int64(-5), -5, false},
	} {
		tok := (&oauth2.Token{AccessToken: "a"}).WithExtra(map[string]any{"expires_in": tc.raw})
		if got, ok := expiresIn(tok); got != tc.want || ok != tc.wantOK {
			t.Errorf("expiresIn(%v) = %d, %v; want %d, %v", tc.raw, got, ok, tc.want, tc.wantOK)
		}
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
