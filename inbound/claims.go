package inbound

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"
)

// claims are the registered and well-known claims authsidecar reads.
type claims struct {
	Issuer    string       `json:"iss"`
	Subject   string       `json:"sub"`
	Audience  stringList   `json:"aud"`
	Expiry    *numericDate `json:"exp"`
	NotBefore *numericDate `json:"nbf"`
	IssuedAt  *numericDate `json:"iat"`
	Scope     string       `json:"scope"`
	Scp       stringList   `json:"scp"`
	ClientID  string       `json:"client_id"`
	AZP       string       `json:"azp"`
	AppID     string       `json:"appid"`
	CID       string       `json:"cid"`
	// Cnf binds the token to a client certificate (RFC 8705) or to a
	// DPoP key (RFC 9449 6).
	Cnf *struct {
		X5tS256 string `json:"x5t#S256"`
		JKT     string `json:"jkt"`
	} `json:"cnf"`
	// Typ is the payload's own typ claim: Keycloak marks its ID tokens
	// "ID" and its refresh tokens "Refresh".
	Typ string `json:"typ"`
}

// dpopThumbprint is the cnf.jkt of a DPoP-bound token.
func (c *claims) dpopThumbprint() string {
	if c.Cnf == nil {
		return ""
	}
	return c.Cnf.JKT
}

func (c *claims) certThumbprint() string {
	if c.Cnf == nil {
		return ""
	}
	return c.Cnf.X5tS256
}

// UnmarshalJSON decodes the claims by their exact names. encoding/json
// would also fill Scope from "SCOPE" or "Scope", and an identity provider
// that lets users add claims of their own would then let them override
// the real ones.
func (c *claims) UnmarshalJSON(b []byte) error {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		return err
	}
	// In a fixed order, so that a payload with two bad claims is always
	// refused naming the same one.
	fields := []struct {
		name string
		dst  any
	}{
		{"iss", &c.Issuer}, {"sub", &c.Subject}, {"aud", &c.Audience}, {"exp", &c.Expiry}, {"nbf", &c.NotBefore},
		{"iat", &c.IssuedAt}, {"scope", &c.Scope}, {"scp", &c.Scp}, {"client_id", &c.ClientID}, {"azp", &c.AZP},
		{"appid", &c.AppID}, {"cid", &c.CID}, {"cnf", &c.Cnf}, {"typ", &c.Typ},
	}
	for _, f := range fields {
		if v, ok := raw[f.name]; ok {
			if err := json.Unmarshal(v, f.dst); err != nil {
				return fmt.Errorf("claim %q: %w", f.name, err)
			}
		}
	}
	return nil
}

// clientID is the caller's client id: the first present of client_id (RFC
// 9068), azp (OIDC, Keycloak, Entra v2), appid (Entra v1) and cid (Okta).
func (c *claims) clientID() string {
	for _, id := range [...]string{c.ClientID, c.AZP, c.AppID, c.CID} {
		if id != "" {
			return id
		}
	}
	return ""
}

// scopes are the granted scopes: the space-separated "scope" string (RFC
// 9068, RFC 8693) or else "scp", a list (Okta) or a space-separated
// string (Entra). Scopes are separated by ASCII spaces only (RFC 6749
// 3.3): a scope named "read\u00a0admin" is one scope, not "admin".
func (c *claims) scopes() []string {
	if c.Scope != "" {
		return splitScopes(c.Scope)
	}
	if len(c.Scp) == 1 {
		return splitScopes(c.Scp[0])
	}
	return c.Scp
}

// splitScopes splits on the space character alone (RFC 6749 section 3.3).
func splitScopes(s string) []string {
	var out []string
	for f := range strings.SplitSeq(s, " ") {
		if f != "" {
			out = append(out, f)
		}
	}
	return out
}

// stringList decodes a JSON string or array of strings, as "aud" may be
// either (RFC 7519 section 4.1.3).
type stringList []string

func (l *stringList) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*l = stringList{s}
		return nil
	}
	var list []string
	if err := json.Unmarshal(b, &list); err != nil {
		return err
	}
	*l = list
	return nil
}

// numericDate is seconds since the epoch, possibly fractional (RFC 7519
// section 2).
type numericDate struct{ time.Time }

var errBadDate = errors.New("inbound: bad NumericDate")

func (d *numericDate) UnmarshalJSON(b []byte) error {
	var f float64
	if err := json.Unmarshal(b, &f); err != nil {
		return errBadDate
	}
	if math.IsNaN(f) || f < 0 || f > 1e11 {
		return errBadDate
	}
	sec, frac := math.Modf(f)
	d.Time = time.Unix(int64(sec), int64(frac*1e9))
	return nil
}
