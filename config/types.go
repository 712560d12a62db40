package config

import (
	"strings"
)

// List is a comma-separated list of values. Entries are trimmed and empty
// entries dropped, so "a, b,," is [a b].
type List []string

// UnmarshalText implements encoding.TextUnmarshaler for caarlos0/env.
func (l *List) UnmarshalText(b []byte) error {
	*l = splitList(string(b), func(r rune) bool { return r == ',' })
	return nil
}

// Set is like List but also splits on spaces, as OAuth2 scope lists are
// written either way ("read write" or "read,write").
type Set []string

// UnmarshalText implements encoding.TextUnmarshaler for caarlos0/env.
func (s *Set) UnmarshalText(b []byte) error {
	*s = splitList(string(b), func(r rune) bool { return r == ',' || r == ' ' || r == '\t' })
	return nil
}

func splitList(s string, sep func(rune) bool) []string {
	var out []string
	for _, f := range strings.FieldsFunc(s, sep) {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// Secret holds a credential. It prints as "[redacted]" (or "" when unset)
// in every format, so a configuration dump or a log line cannot leak it.
type Secret string

const redacted = "[redacted]"

// String implements fmt.Stringer.
func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return redacted
}

// GoString implements fmt.GoStringer so %#v redacts too.
func (s Secret) GoString() string { return `"` + s.String() + `"` }

// MarshalText implements encoding.TextMarshaler so JSON and slog redact too.
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// Reveal returns the secret itself, for the one place that sends it.
func (s Secret) Reveal() string { return string(s) }
