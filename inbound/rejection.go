package inbound

import (
	"fmt"
	"strings"
)

// Reasons for refusing a request; they are the values of the "reason"
// label of authsidecar_inbound_token_rejections_total.
const (
	ReasonMissing             = "missing"
	ReasonMalformed           = "malformed"
	ReasonBadSignature        = "bad_signature"
	ReasonUnknownKey          = "unknown_key"
	ReasonExpired             = "expired"
	ReasonNotYetValid         = "not_yet_valid"
	ReasonWrongIssuer         = "wrong_issuer"
	ReasonWrongAudience       = "wrong_audience"
	ReasonDisallowedAlgorithm = "disallowed_algorithm"
	ReasonInsufficientScope   = "insufficient_scope"
	ReasonClientNotAllowed    = "client_not_allowed"
	// ReasonInactive: introspection says the token is not active (revoked,
	// expired or unknown to the authorization server).
	ReasonInactive = "inactive"
)

// descriptions are what a caller is told for each reason. They are fixed
// strings: nothing from the token is echoed back.
var descriptions = map[string]string{
	ReasonMissing:             "a bearer token is required",
	ReasonMalformed:           "the token is malformed",
	ReasonBadSignature:        "the token signature is invalid",
	ReasonUnknownKey:          "the token is signed by an unknown key",
	ReasonExpired:             "the token is expired",
	ReasonNotYetValid:         "the token is not valid yet",
	ReasonWrongIssuer:         "the token issuer is not trusted",
	ReasonWrongAudience:       "the token audience is not accepted",
	ReasonDisallowedAlgorithm: "the token signing algorithm is not accepted",
	ReasonInsufficientScope:   "the token lacks a required scope",
	ReasonClientNotAllowed:    "the calling client is not allowed",
	ReasonInactive:            "the token is not active",
	ReasonCertificateMismatch: "the token is bound to another client certificate",
}

// Rejection is a refused token: why, and the detail for the debug log.
type Rejection struct {
	Reason string
	// Detail says more, for the log only; it never holds the token.
	Detail string
	// MissingScopes lists what an insufficient_scope refusal lacks.
	MissingScopes []string
}

func (r *Rejection) Error() string {
	if r.Detail == "" {
		return "inbound: " + descriptions[r.Reason]
	}
	return "inbound: " + descriptions[r.Reason] + ": " + r.Detail
}

// Description is the text shown to the caller.
func (r *Rejection) Description() string { return descriptions[r.Reason] }

func reject(reason, format string, args ...any) *Rejection {
	return &Rejection{Reason: reason, Detail: fmt.Sprintf(format, args...)}
}

func missingScopes(missing []string) *Rejection {
	return &Rejection{Reason: ReasonInsufficientScope, MissingScopes: missing, Detail: "missing " + strings.Join(missing, " ")}
}
