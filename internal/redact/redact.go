// Package redact hides credentials that configuration values and URLs can
// carry, so that `authsidecar check`, log lines and error messages never
// show them.
package redact

import (
	"net/url"
	"strings"
)

// Mask replaces what is hidden.
const Mask = "[redacted]"

// URL returns u with the password of its user information and the value
// of every query parameter replaced by Mask ("https://user:[redacted]@idp/
// ?key=[redacted]"). The user name stays: it says which account, and is
// no secret. A fragment is dropped. A string that does not parse as a URL
// is hidden whole, as it may be anything.
func URL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return Mask
	}
	return ParsedURL(u)
}

// ParsedURL is URL for a parsed URL; u is not modified.
func ParsedURL(u *url.URL) string {
	if u == nil {
		return ""
	}
	c := *u
	if _, has := c.User.Password(); has {
		c.User = url.UserPassword(c.User.Username(), "xxxxx")
	}
	c.Fragment, c.RawFragment = "", ""
	if c.RawQuery != "" {
		c.RawQuery = maskQuery(c.RawQuery)
	}
	return strings.Replace(c.String(), ":xxxxx@", ":"+Mask+"@", 1)
}

// maskQuery keeps the parameter names, in order, and hides their values.
func maskQuery(q string) string {
	parts := strings.Split(q, "&")
	for i, p := range parts {
		if name, _, hasValue := strings.Cut(p, "="); hasValue {
			parts[i] = name + "=" + Mask
		}
	}
	return strings.Join(parts, "&")
}
