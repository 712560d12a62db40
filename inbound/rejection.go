package inbound

import (
	"fmt"
	"strings"
)

// Reasons for refusing a request; they are the values of the "reason"
// label of authsidecar_inbound_token_rejections_total (metrics.RejectionReasons).
const (
	reasonMissing             = "missing"
	reasonMalformed           = "malformed"
	reasonBadSignature        = "bad_signature"
	reasonUnknownKey          = "unknown_key"
	reasonExpired             = "expired"
	reasonNotYetValid         = "not_yet_valid"
	reasonWrongIssuer         = "wrong_issuer"
	reasonWrongAudience       = "wrong_audience"
	reasonDisallowedAlgorithm = "disallowed_algorithm"
	reasonInsufficientScope   = "insufficient_scope"
	reasonClientNotAllowed    = "client_not_allowed"
	// reasonInactive: introspection says the token is not active (revoked,
	// expired or unknown to the authorization server).
	reasonInactive = "inactive"
	// reasonCertificateMismatch: a certificate-bound token (RFC 8705) came
	// over a connection without the certificate it is bound to.
	reasonCertificateMismatch = "certificate_mismatch"
	// reasonWrongTokenType: a token that is not an access token (an ID
	// token, a logout token, a refresh token).
	reasonWrongTokenType = "wrong_token_type"
)

// descriptions are what a caller is told for each reason. They are fixed
// strings: nothing from the token is echoed back.
var descriptions = map[string]string{
	reasonMissing:             "a bearer token is required",
	reasonMalformed:           "the token is malformed",
	reasonBadSignature:        "the token signature is invalid",
	reasonUnknownKey:          "the token is signed by an unknown key",
	reasonExpired:             "the token is expired",
	reasonNotYetValid:         "the token is not valid yet",
	reasonWrongIssuer:         "the token issuer is not trusted",
	reasonWrongAudience:       "the token audience is not accepted",
	reasonDisallowedAlgorithm: "the token signing algorithm is not accepted",
	reasonInsufficientScope:   "the token lacks a required scope",
	reasonClientNotAllowed:    "the calling client is not allowed",
	reasonInactive:            "the token is not active",
	reasonCertificateMismatch: "the token is bound to another client certificate",
	reasonWrongTokenType:      "the token is not an access token",
	reasonInvalidDPoPProof:    "the DPoP proof is invalid",
}

// rejection is a refused request: why, and the detail for the debug log.
type rejection struct {
	reason string
	// detail says more, for the log only; it never holds the token.
	detail string
	// missingScopes lists what an insufficient_scope refusal lacks.
	missingScopes []string
	// say, when set, is told the caller instead of the reason's
	// description: fixed words, never anything from the request.
	say string
}

func (r *rejection) Error() string {
	if r.detail == "" {
		return "inbound: " + r.description()
	}
	return "inbound: " + r.description() + ": " + r.detail
}

// description is the text shown to the caller.
func (r *rejection) description() string {
	if r.say != "" {
		return r.say
	}
	return descriptions[r.reason]
}

func reject(reason, format string, args ...any) *rejection {
	return &rejection{reason: reason, detail: fmt.Sprintf(format, args...)}
}

func missingScopes(missing []string) *rejection {
	return &rejection{reason: reasonInsufficientScope, missingScopes: missing, detail: "missing " + strings.Join(missing, " ")}
}
