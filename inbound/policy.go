package inbound

import "slices"

// Policy is what a verified caller must also have: every required scope,
// and a client id among the allowed ones when that list is set.
type Policy struct {
	RequiredScopes []string
	AllowedClients []string
}

// Check returns nil if id satisfies p, else the *Rejection saying why not.
func (p Policy) Check(id *Identity) *Rejection {
	var missing []string
	for _, s := range p.RequiredScopes {
		if !slices.Contains(id.Scopes, s) {
			missing = append(missing, s)
		}
	}
	if len(missing) > 0 {
		return missingScopes(missing)
	}
	if len(p.AllowedClients) > 0 && !slices.Contains(p.AllowedClients, id.ClientID) {
		return reject(ReasonClientNotAllowed, "client %q", id.ClientID)
	}
	return nil
}
