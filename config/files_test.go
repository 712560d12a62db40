package config_test

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fileCase sets one file variable on a configuration that needs it.
type fileCase struct {
	variable string
	env      func(f files, path string) map[string]string
}

// fileVariables lists every variable that names a file, each in a
// configuration where the file is used; the other files are valid.
func fileVariables() []fileCase {
	const in, out = "AUTHSIDECAR_INBOUND_", "AUTHSIDECAR_OUTBOUND_"
	tls := func(f files, cert, key string) map[string]string {
		return inboundEnv(map[string]string{in + "TLS_CERT_FILE": cert, in + "TLS_KEY_FILE": key})
	}
	secret := func(extra map[string]string) map[string]string {
		return outboundEnv(with(extra, out+"CLIENT_SECRET", "s"))
	}
	return []fileCase{
		{in + "TLS_CERT_FILE", func(f files, p string) map[string]string { return tls(f, p, f.key) }},
		{in + "TLS_KEY_FILE", func(f files, p string) map[string]string { return tls(f, f.cert, p) }},
		{in + "CLIENT_CA_FILE", func(f files, p string) map[string]string {
			return with(tls(f, f.cert, f.key), in+"CLIENT_CA_FILE", p)
		}},
		{in + "RULES_FILE", func(_ files, p string) map[string]string { return inboundEnv(map[string]string{in + "RULES_FILE": p}) }},
		{in + "INTROSPECTION_CLIENT_SECRET_FILE", func(_ files, p string) map[string]string {
			return inboundEnv(map[string]string{in + "INTROSPECTION_CLIENT_ID": "rs", in + "INTROSPECTION_CLIENT_SECRET_FILE": p})
		}},
		{out + "CLIENT_SECRET_FILE", func(_ files, p string) map[string]string {
			return outboundEnv(map[string]string{out + "CLIENT_SECRET_FILE": p})
		}},
		{out + "PRIVATE_KEY_FILE", func(_ files, p string) map[string]string {
			return outboundEnv(map[string]string{out + "AUTH_METHOD": "private_key_jwt", out + "PRIVATE_KEY_FILE": p})
		}},
		{out + "CLIENT_ASSERTION_FILE", func(_ files, p string) map[string]string {
			return outboundEnv(map[string]string{out + "CLIENT_ASSERTION_FILE": p})
		}},
		{out + "TLS_CA_FILE", func(_ files, p string) map[string]string { return secret(map[string]string{out + "TLS_CA_FILE": p}) }},
		{out + "TLS_CERT_FILE", func(f files, p string) map[string]string {
			return secret(map[string]string{out + "TLS_CERT_FILE": p, out + "TLS_KEY_FILE": f.key})
		}},
		{out + "TLS_KEY_FILE", func(f files, p string) map[string]string {
			return secret(map[string]string{out + "TLS_CERT_FILE": f.cert, out + "TLS_KEY_FILE": p})
		}},
	}
}

func TestEveryFileIsReadAtLoad(t *testing.T) {
	f := writeFiles(t)
	missing := filepath.Join(f.dir, "missing")
	for _, fc := range fileVariables() {
		t.Run("a missing "+fc.variable+" is named", func(t *testing.T) {
			want := fc.variable + ": stat " + missing + ": no such file or directory"
			if got := problems(t, fc.env(f, missing)); len(got) != 1 || got[0] != want {
				t.Errorf("problems:\n%s\nwant exactly:\n%s", strings.Join(got, "\n"), want)
			}
		})
	}
}

func TestEveryUnreadableFileIsNamed(t *testing.T) {
	f := writeFiles(t)
	dir := filepath.Join(f.dir, "a-directory")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, fc := range fileVariables() {
		t.Run("an unreadable "+fc.variable+" is named", func(t *testing.T) {
			got := problems(t, fc.env(f, dir))
			// A pair that does not load is named by its certificate.
			want := strings.Replace(fc.variable, "TLS_KEY_FILE", "TLS_CERT_FILE", 1) + ": "
			if len(got) != 1 || !strings.HasPrefix(got[0], want) || !strings.HasSuffix(got[0], dir+": is a directory") {
				t.Errorf("problems:\n%s\nwant exactly one, %s… ending in %q", strings.Join(got, "\n"), want, dir+": is a directory")
			}
		})
	}
}

func TestBadFilesAreNamedWithWhatIsWrong(t *testing.T) {
	f := writeFiles(t)
	file := func(name string, data []byte) string {
		p := filepath.Join(f.dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	key := func(k any, typ string) []byte { return keyPEM(t, k, typ) }
	smallRSA, err := rsa.GenerateKey(rand.Reader, 1024)
	must(t, err)
	_, edKey, err := ed25519.GenerateKey(rand.Reader)
	must(t, err)
	p224, err := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	must(t, err)
	empty := file("empty", []byte("\n"))
	cases := map[string]fileCase{}
	for _, fc := range fileVariables() {
		cases[fc.variable] = fc
	}
	for _, tc := range []struct {
		name, variable, path, want string
		prefixOnly                 bool // the rest is the standard library's wording
	}{
		{"an empty secret file", "AUTHSIDECAR_OUTBOUND_CLIENT_SECRET_FILE", empty, empty + " is empty", false},
		{"an empty introspection secret file", "AUTHSIDECAR_INBOUND_INTROSPECTION_CLIENT_SECRET_FILE", empty, empty + " is empty", false},
		{"a CA file without certificates", "AUTHSIDECAR_OUTBOUND_TLS_CA_FILE", empty, empty + " holds no PEM certificate", false},
		{"a client CA file without certificates", "AUTHSIDECAR_INBOUND_CLIENT_CA_FILE", empty, empty + " holds no PEM certificate", false},
		{"a certificate file without a certificate", "AUTHSIDECAR_INBOUND_TLS_CERT_FILE", empty,
			empty + " with " + f.key + ": tls: failed to find any PEM data in certificate input", false},
		{"a key that does not match the certificate", "AUTHSIDECAR_OUTBOUND_TLS_KEY_FILE", file("other.key", key(mustEC(t), "PRIVATE KEY")),
			f.cert + " with " + filepath.Join(f.dir, "other.key") + ": tls: private key does not match public key", false},
		{"a rules file with a bad rule", "AUTHSIDECAR_INBOUND_RULES_FILE", file("bad-rules.yaml", []byte("rules:\n  - paths: [admin]\n")),
			`rules: rule 1 (admin): bad glob "admin": want a path starting with "/"`, false},
		{"an empty assertion file", "AUTHSIDECAR_OUTBOUND_CLIENT_ASSERTION_FILE", empty, empty + " is empty", false},
		{"an assertion file that holds no JWT", "AUTHSIDECAR_OUTBOUND_CLIENT_ASSERTION_FILE", file("secret-not-jwt", []byte("a client secret")),
			filepath.Join(f.dir, "secret-not-jwt") + " does not hold a JWT (three base64url parts separated by dots)", false},
		{"a key file without a key", "AUTHSIDECAR_OUTBOUND_PRIVATE_KEY_FILE", file("cert.pem", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte{1}})),
			filepath.Join(f.dir, "cert.pem") + ": no PEM private key (PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY)", false},
		{"an encrypted key", "AUTHSIDECAR_OUTBOUND_PRIVATE_KEY_FILE", file("enc.pem", pem.EncodeToMemory(&pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: []byte{1}})),
			filepath.Join(f.dir, "enc.pem") + ": the private key is encrypted: give it unencrypted, protected by the file's permissions", false},
		{"a damaged key", "AUTHSIDECAR_OUTBOUND_PRIVATE_KEY_FILE", file("bad.pem", pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: []byte{1, 2, 3}})),
			filepath.Join(f.dir, "bad.pem") + ": EC PRIVATE KEY: x509: failed to parse EC private key: ", true},
		{"a 1024-bit RSA key", "AUTHSIDECAR_OUTBOUND_PRIVATE_KEY_FILE", file("small.pem", key(smallRSA, "RSA PRIVATE KEY")),
			filepath.Join(f.dir, "small.pem") + ": an RSA key of 1024 bits is too short: RS256 needs at least 2048 (RFC 7518 3.3)", false},
		{"an Ed25519 key", "AUTHSIDECAR_OUTBOUND_PRIVATE_KEY_FILE", file("ed.pem", key(edKey, "PRIVATE KEY")),
			filepath.Join(f.dir, "ed.pem") + ": a key of type ed25519.PrivateKey: want an RSA or EC (P-256) key", false},
		{"a P-224 key", "AUTHSIDECAR_OUTBOUND_PRIVATE_KEY_FILE", file("p224.pem", key(p224, "EC PRIVATE KEY")),
			filepath.Join(f.dir, "p224.pem") + ": an EC key on curve P-224: want P-256, P-384 or P-521", false},
	} {
		t.Run(tc.name+" is refused", func(t *testing.T) {
			got := problems(t, cases[tc.variable].env(f, tc.path))
			// A pair that does not load is named by its certificate.
			want := strings.Replace(tc.variable, "TLS_KEY_FILE", "TLS_CERT_FILE", 1) + ": " + tc.want
			if len(got) != 1 || got[0] != want && !(tc.prefixOnly && strings.HasPrefix(got[0], want)) {
				t.Errorf("problems:\n%s\nwant exactly:\n%s", strings.Join(got, "\n"), want)
			}
		})
	}
}

func TestValidFilesLoad(t *testing.T) {
	f := writeFiles(t)
	for _, fc := range fileVariables() {
		var path string
		switch {
		case strings.HasSuffix(fc.variable, "CA_FILE"):
			path = f.ca
		case strings.HasSuffix(fc.variable, "CERT_FILE"):
			path = f.cert
		case strings.HasSuffix(fc.variable, "KEY_FILE"):
			path = f.key
		case strings.HasSuffix(fc.variable, "RULES_FILE"):
			path = f.rules
		case strings.HasSuffix(fc.variable, "ASSERTION_FILE"):
			path = f.assertion
		default:
			path = f.secret
		}
		if got := problemsOrNone(t, fc.env(f, path)); len(got) != 0 {
			t.Errorf("%s=%s: problems %q, want none", fc.variable, path, got)
		}
	}
}

func mustEC(t *testing.T) *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	must(t, err)
	return k
}

// keyPEM encodes key as a PEM block of typ: PRIVATE KEY (PKCS#8), RSA
// PRIVATE KEY (PKCS#1) or EC PRIVATE KEY (SEC1).
func keyPEM(t *testing.T, key any, typ string) []byte {
	t.Helper()
	var (
		der []byte
		err error
	)
	switch typ {
	case "PRIVATE KEY":
		der, err = x509.MarshalPKCS8PrivateKey(key)
	case "RSA PRIVATE KEY":
		der = x509.MarshalPKCS1PrivateKey(key.(*rsa.PrivateKey))
	case "EC PRIVATE KEY":
		der, err = x509.MarshalECPrivateKey(key.(*ecdsa.PrivateKey))
	}
	must(t, err)
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
