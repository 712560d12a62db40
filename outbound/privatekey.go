package outbound

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/authsidecar/authsidecar/config"
	"github.com/authsidecar/authsidecar/internal/filesecret"
)

// assertionLifetime is how long a private_key_jwt assertion is valid. It
// is signed for one request and sent at once, so a minute covers clock
// skew; a longer one would only widen the window for a replay.
const assertionLifetime = 60 * time.Second

// privateKeyJWT is private_key_jwt (RFC 7523 2.2, OIDC Core 9): a JWT
// signed with the client's key for every token request.
type privateKeyJWT struct {
	clientID string
	key      *keyFile
	now      func() time.Time
}

func newPrivateKeyJWT(out config.Outbound, now func() time.Time) (privateKeyJWT, error) {
	if out.PrivateKeyFile == "" {
		return privateKeyJWT{}, fmt.Errorf("outbound: %sOUTBOUND_AUTH_METHOD=private_key_jwt needs %sOUTBOUND_PRIVATE_KEY_FILE", config.Prefix, config.Prefix)
	}
	k := &keyFile{path: out.PrivateKeyFile, kid: out.PrivateKeyID}
	if _, err := k.signer(); err != nil {
		return privateKeyJWT{}, err
	}
	return privateKeyJWT{clientID: out.ClientID, key: k, now: now}, nil
}

// assertionClaims are the claims of OIDC Core 9 for private_key_jwt.
type assertionClaims struct {
	Issuer   string           `json:"iss"`
	Subject  string           `json:"sub"`
	Audience string           `json:"aud"`
	ID       string           `json:"jti"`
	IssuedAt *jwt.NumericDate `json:"iat"`
	Expiry   *jwt.NumericDate `json:"exp"`
}

func (a privateKeyJWT) apply(cfg *clientcredentials.Config) error {
	signer, err := a.key.signer()
	if err != nil {
		return err
	}
	jti, err := newJTI()
	if err != nil {
		return err
	}
	now := a.now()
	assertion, err := jwt.Signed(signer).Claims(assertionClaims{
		Issuer:   a.clientID,
		Subject:  a.clientID,
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

// keyFile is AUTHSIDECAR_OUTBOUND_PRIVATE_KEY_FILE, re-read when it changes
// (see filesecret.Changed for what "changes" means).
type keyFile struct {
	path, kid string

	mu   sync.Mutex
	info os.FileInfo // of the file last read; nil before the first read
	sign jose.Signer
}

const keyFileVar = config.Prefix + "OUTBOUND_PRIVATE_KEY_FILE"

func (k *keyFile) signer() (jose.Signer, error) {
	info, err := os.Stat(k.path)
	if err != nil {
		return nil, fmt.Errorf("outbound: %s: %w", keyFileVar, err)
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if !filesecret.Changed(k.info, info) {
		return k.sign, nil
	}
	b, err := os.ReadFile(k.path)
	if err != nil {
		return nil, fmt.Errorf("outbound: %s: %w", keyFileVar, err)
	}
	key, alg, err := parsePrivateKey(b)
	if err != nil {
		return nil, fmt.Errorf("outbound: %s: %s: %w", keyFileVar, k.path, err)
	}
	opts := (&jose.SignerOptions{}).WithType("JWT")
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: jose.JSONWebKey{Key: key, KeyID: k.kid}}, opts)
	if err != nil {
		return nil, fmt.Errorf("outbound: %s: %s: %w", keyFileVar, k.path, err)
	}
	k.info, k.sign = info, s
	return s, nil
}

// parsePrivateKey reads the first private key in a PEM file (PKCS#8,
// PKCS#1 RSA or SEC1 EC; other blocks such as EC PARAMETERS or a
// certificate are skipped) and picks its algorithm: RS256 for RSA, ES256,
// ES384 or ES512 for P-256, P-384 or P-521. Errors never quote the key.
func parsePrivateKey(data []byte) (any, jose.SignatureAlgorithm, error) {
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			return nil, "", errors.New("no PEM private key (PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY)")
		}
		var (
			key any
			err error
		)
		if block.Headers["Proc-Type"] != "" { // RFC 1421 encryption
			block.Type = "ENCRYPTED PRIVATE KEY"
		}
		switch block.Type {
		case "PRIVATE KEY":
			key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
		case "RSA PRIVATE KEY":
			key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
		case "EC PRIVATE KEY":
			key, err = x509.ParseECPrivateKey(block.Bytes)
		case "ENCRYPTED PRIVATE KEY":
			return nil, "", errors.New("the private key is encrypted: give it unencrypted, protected by the file's permissions")
		default:
			continue
		}
		if err != nil {
			return nil, "", fmt.Errorf("%s: %w", block.Type, err)
		}
		alg, err := algorithmOf(key)
		return key, alg, err
	}
}

func algorithmOf(key any) (jose.SignatureAlgorithm, error) {
	switch k := key.(type) {
	case *rsa.PrivateKey:
		if bits := k.N.BitLen(); bits < 2048 {
			return "", fmt.Errorf("an RSA key of %d bits is too short: RS256 needs at least 2048 (RFC 7518 3.3)", bits)
		}
		return jose.RS256, nil
	case *ecdsa.PrivateKey:
		switch k.Curve {
		case elliptic.P256():
			return jose.ES256, nil
		case elliptic.P384():
			return jose.ES384, nil
		case elliptic.P521():
			return jose.ES512, nil
		}
		return "", fmt.Errorf("an EC key on curve %s: want P-256, P-384 or P-521", k.Curve.Params().Name)
	default:
		return "", fmt.Errorf("a key of type %T: want an RSA or EC (P-256) key", key)
	}
}
