package rules

import (
	"net/http"
	"slices"

	"github.com/google/cel-go/cel"
)

// Reasons a rule refuses a verified caller; they match the reasons the
// inbound handler counts and answers with.
const (
	ReasonInsufficientScope = "insufficient_scope"
	ReasonClientNotAllowed  = "client_not_allowed"
)

// Rule is one compiled entry of the rules file. Its exported fields are
// what the file says, for logs and tests; they MUST NOT be modified, as a
// Set and its compiled matchers share them across goroutines.
type Rule struct {
	// Index is the rule's place in the file, counted from 1; 0 for the
	// rules made from the global variables (see Set.WithDefaults).
	Index int
	// Source names the rule in logs: "rule 3", or the variable it was
	// made from.
	Source string
	Paths  []string
	// Methods is empty when the rule applies to every method.
	Methods []string
	// Public rules need no token; Allow always allows.
	Public bool
	// Scopes must all be held by the caller.
	Scopes []string
	// Clients, when set, must hold the caller's client id.
	Clients []string
	// When is the rule's CEL condition, "" for none.
	When string

	methods methodMask
	globs   []glob
	program cel.Program
}

// Input is what Allow knows about a verified caller and its request.
type Input struct {
	Scopes   []string
	ClientID string
	// Claims is the token's verified JSON payload. It is decoded only for a
	// rule with a condition that reads claims.
	Claims []byte
	Method string
	// Path is the path the app will receive: decoded, dot segments
	// resolved. RawPath is the path as the caller sent it.
	Path    string
	RawPath string
	Header  http.Header
}

// Decision is Allow's answer.
type Decision struct {
	Allowed bool
	// MissingScopes lists, in the rule's order, the scopes an
	// insufficient_scope refusal lacks.
	MissingScopes []string
	// Reason is "" when allowed, else ReasonInsufficientScope or
	// ReasonClientNotAllowed; a condition that is false or fails to
	// evaluate gives ReasonClientNotAllowed.
	Reason string
	// Detail says more, for the debug log only: a failed condition's error
	// may quote a key or a value it read, never the token.
	Detail string
}

// Allow decides whether the caller described by in may make the request
// the rule matched: every scope, then a client among Clients when set,
// then the condition. A condition that cannot be evaluated refuses.
func (r *Rule) Allow(in Input) Decision {
	if r.Public {
		return Decision{Allowed: true}
	}
	var missing []string
	for _, s := range r.Scopes {
		if !slices.Contains(in.Scopes, s) {
			missing = append(missing, s)
		}
	}
	if len(missing) > 0 {
		return Decision{Reason: ReasonInsufficientScope, MissingScopes: missing}
	}
	if len(r.Clients) > 0 && !slices.Contains(r.Clients, in.ClientID) {
		return Decision{Reason: ReasonClientNotAllowed, Detail: "client not in the rule's clients"}
	}
	if r.program != nil {
		if ok, detail := r.eval(in); !ok {
			return Decision{Reason: ReasonClientNotAllowed, Detail: detail}
		}
	}
	return Decision{Allowed: true}
}
