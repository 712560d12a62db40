package redact

import "testing"

func TestURL(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"https://idp.example.com/realms/prod", "https://idp.example.com/realms/prod"},
		{"https://user:s3cret@idp.example.com/", "https://user:[redacted]@idp.example.com/"},
		{"https://user@idp.example.com/", "https://user@idp.example.com/"},
		{"https://idp.example.com/jwks?api_key=abc&x=1&flag", "https://idp.example.com/jwks?api_key=[redacted]&x=[redacted]&flag"},
		{"https://u:p@h/p?a=b#frag", "https://u:[redacted]@h/p?a=[redacted]"},
		{"http://[::1]:8080/", "http://[::1]:8080/"},
		{"://bad", Mask},
	} {
		if got := URL(tc.in); got != tc.want {
			t.Errorf("URL(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
