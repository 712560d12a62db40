package outbound

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/authsidecar/authsidecar/internal/reload"
)

// assertionLifetime is how long a private_key_jwt assertion is valid. It
// is signed for one request and sent at once, so a minute covers clock
// skew; a longer one would only widen the window for a replay.
const assertionLifetime = 60 * time.Second

type privateKeyJWT struct{ key *reload.File[jose.Signer] }

// assertionClaims are the claims of OIDC Core 9 for private_key_jwt.
type assertionClaims struct {
	Issuer   string           `json:"iss"`
	Subject  string           `json:"sub"`
	Audience string           `json:"aud"`
	ID       string           `json:"jti"`
	IssuedAt *jwt.NumericDate `json:"iat"`
	Expiry   *jwt.NumericDate `json:"exp"`
}

func (a *privateKeyJWT) apply(cfg *clientcredentials.Config, now time.Time) error {
	jti, err := newJTI()
	if err != nil {
		return err
	}
	assertion, err := jwt.Signed(a.key.Fresh()).Claims(assertionClaims{
		Issuer:   cfg.ClientID,
		Subject:  cfg.ClientID,
		Audience: cfg.TokenURL, // the endpoint it is sent to: useless anywhere else
		ID:       jti,
		IssuedAt: jwt.NewNumericDate(now),
		Expiry:   jwt.NewNumericDate(now.Add(assertionLifetime)),
	}).Serialize()
	if err != nil {
		return fmt.Errorf("outbound: signing the client assertion: %w", err)
	}
	withAssertion(cfg, assertion)
	return nil
}

// newJTI returns 128 random bits: identity providers remember the jti of
// each assertion until it expires and refuse it twice.
func newJTI() (string, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("outbound: client assertion jti: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}
