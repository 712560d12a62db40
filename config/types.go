package config

import (
	"fmt"
	"log/slog"
	"strings"

	"github.com/authsidecar/authsidecar/outbound"
	"github.com/authsidecar/authsidecar/proxy"
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

// choiceError is a value outside an enumeration; its text is the whole
// message, "want a, b or c, got "x"", without the generic "cannot parse".
type choiceError struct{ msg string }

func (e *choiceError) Error() string { return e.msg }

// choose parses text as one of names, returning its index.
func choose(text []byte, names ...string) (int, error) {
	for i, n := range names {
		if string(text) == n {
			return i, nil
		}
	}
	list := strings.Join(names[:len(names)-1], ", ") + " or " + names[len(names)-1]
	if len(names) > 4 {
		list = "one of " + strings.Join(names, ", ")
	}
	return 0, &choiceError{fmt.Sprintf("want %s, got %q", list, text)}
}

// LogLevel is AUTHSIDECAR_LOG_LEVEL: debug, info, warn or error.
type LogLevel struct{ slog.Level }

// UnmarshalText implements encoding.TextUnmarshaler.
func (l *LogLevel) UnmarshalText(b []byte) error {
	i, err := choose(b, "debug", "info", "warn", "error")
	l.Level = []slog.Level{slog.LevelDebug, slog.LevelInfo, slog.LevelWarn, slog.LevelError}[i]
	return err
}

// String is the level as the variable spells it.
func (l LogLevel) String() string { return strings.ToLower(l.Level.String()) }

// LogFormat is AUTHSIDECAR_LOG_FORMAT.
type LogFormat string

// Log formats.
const (
	LogJSON LogFormat = "json"
	LogText LogFormat = "text"
)

// UnmarshalText implements encoding.TextUnmarshaler.
func (f *LogFormat) UnmarshalText(b []byte) error {
	i, err := choose(b, string(LogJSON), string(LogText))
	*f = []LogFormat{LogJSON, LogText}[i]
	return err
}

// AuthMethod is AUTHSIDECAR_OUTBOUND_AUTH_METHOD: how the token request
// authenticates the client.
type AuthMethod string

// Outbound client authentication methods. client_assertion_file is ours:
// it sends a JWT someone else signed (a projected service-account token)
// the way private_key_jwt sends one the sidecar signs.
const (
	SecretBasic   AuthMethod = "client_secret_basic"
	SecretPost    AuthMethod = "client_secret_post"
	PrivateKeyJWT AuthMethod = "private_key_jwt"
	TLSClientAuth AuthMethod = "tls_client_auth"
	AssertionFile AuthMethod = "client_assertion_file"
)

// UnmarshalText implements encoding.TextUnmarshaler.
func (m *AuthMethod) UnmarshalText(b []byte) error {
	methods := []AuthMethod{SecretBasic, SecretPost, PrivateKeyJWT, TLSClientAuth, AssertionFile}
	names := make([]string, len(methods))
	for i, a := range methods {
		names[i] = string(a)
	}
	i, err := choose(b, names...)
	*m = methods[i]
	return err
}

// usesSecret reports whether the method sends a client secret.
func (m AuthMethod) usesSecret() bool { return m == SecretBasic || m == SecretPost }

// IntrospectMode is AUTHSIDECAR_INBOUND_INTROSPECT.
type IntrospectMode string

// Introspection modes.
const (
	IntrospectOpaque IntrospectMode = "opaque"
	IntrospectAll    IntrospectMode = "all"
)

// UnmarshalText implements encoding.TextUnmarshaler.
func (m *IntrospectMode) UnmarshalText(b []byte) error {
	i, err := choose(b, string(IntrospectOpaque), string(IntrospectAll))
	*m = []IntrospectMode{IntrospectOpaque, IntrospectAll}[i]
	return err
}

// IntrospectionAuth is AUTHSIDECAR_INBOUND_INTROSPECTION_AUTH_METHOD.
type IntrospectionAuth string

// Introspection client authentication methods.
const (
	IntrospectionBasic IntrospectionAuth = "client_secret_basic"
	IntrospectionPost  IntrospectionAuth = "client_secret_post"
	IntrospectionNone  IntrospectionAuth = "none"
)

// UnmarshalText implements encoding.TextUnmarshaler.
func (m *IntrospectionAuth) UnmarshalText(b []byte) error {
	i, err := choose(b, string(IntrospectionBasic), string(IntrospectionPost), string(IntrospectionNone))
	*m = []IntrospectionAuth{IntrospectionBasic, IntrospectionPost, IntrospectionNone}[i]
	return err
}

// Protocol is AUTHSIDECAR_INBOUND_UPSTREAM_PROTOCOL and
// AUTHSIDECAR_ROUTE_<NAME>_PROTOCOL: auto, http1 or h2c.
type Protocol struct{ proxy.Protocol }

// UnmarshalText implements encoding.TextUnmarshaler.
func (p *Protocol) UnmarshalText(b []byte) error {
	v, err := proxy.ParseProtocol(string(b))
	if err != nil {
		return &choiceError{err.Error()}
	}
	p.Protocol = v
	return nil
}

// Grant is AUTHSIDECAR_ROUTE_<NAME>_GRANT.
type Grant struct{ outbound.Grant }

// UnmarshalText implements encoding.TextUnmarshaler.
func (g *Grant) UnmarshalText(b []byte) error {
	grants := []outbound.Grant{outbound.GrantClientCredentials, outbound.GrantTokenExchange}
	i, err := choose(b, grants[0].String(), grants[1].String())
	g.Grant = grants[i]
	return err
}
