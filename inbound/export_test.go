package inbound

import "context"

// UnknownKidCooldown is unknownKidCooldown, for tests.
const UnknownKidCooldown = unknownKidCooldown

// ColdProbeInterval is coldProbeInterval, for tests.
const ColdProbeInterval = coldProbeInterval

// CacheLen is the number of entries in the verified-token cache.
func CacheLen(in *Inbound) int { return in.handler.verifier.cache.Len() }

// Verify verifies raw as a request would, without the rules.
func Verify(ctx context.Context, in *Inbound, raw string) error {
	_, err := in.handler.verifier.verify(ctx, raw)
	return err
}

// OnIntrospectionJoin makes f be called once a request has started or
// joined the introspection call for its token.
func OnIntrospectionJoin(in *Inbound, f func()) { in.intro.calls.Joined = f }

// OverridesInMultipart reads body as a multipart form, boundary XyZ, for
// override fields.
func OverridesInMultipart(body string) ([]string, error) {
	return overridesIn(readings{multipart: true}, "multipart/form-data; boundary=XyZ", body)
}

// FormBudgetWhole reports whether in's budget for bodies read for a method
// override is all free.
func FormBudgetWhole(in *Inbound) bool {
	return FormBudgetFits(in, formBudgetBodies*(in.handler.maxFormBytes+1))
}

// FormBudgetFits reports whether n bytes of in's budget for bodies read
// for a method override are free.
func FormBudgetFits(in *Inbound, n int64) bool {
	if !in.handler.formBudget.TryAcquire(n) {
		return false
	}
	in.handler.formBudget.Release(n)
	return true
}
