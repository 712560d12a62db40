package rules

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/textproto"
	"strings"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/interpreter"
)

// costLimit bounds one evaluation of a condition. Comparing a few claims
// and headers costs tens; the limit stops a regular expression or a
// comprehension over a large claim from holding a request.
const costLimit = 10_000

func newEnv() (*cel.Env, error) {
	env, err := cel.NewEnv(
		cel.Variable("claims", cel.MapType(cel.StringType, cel.DynType)),
		cel.Variable("request", cel.MapType(cel.StringType, cel.DynType)),
	)
	if err != nil {
		return nil, fmt.Errorf("rules: cel environment: %w", err)
	}
	return env, nil
}

// compileWhen compiles a condition once, at load; it must be a bool.
func compileWhen(env *cel.Env, src string, errorf func(string, ...any)) cel.Program {
	if strings.TrimSpace(src) == "" {
		errorf("when: empty condition")
		return nil
	}
	ast, iss := env.Compile(src)
	if iss.Err() != nil {
		errorf("when: %v", iss.Err())
		return nil
	}
	if t := ast.OutputType(); !t.IsExactType(cel.BoolType) {
		errorf("when: want a bool condition, got %s", t)
		return nil
	}
	prg, err := env.Program(ast, cel.CostLimit(costLimit), cel.EvalOptions(cel.OptOptimize))
	if err != nil {
		errorf("when: %v", err)
		return nil
	}
	return prg
}

// eval runs the rule's condition; only true allows.
func (r *Rule) eval(in Input) (bool, string) {
	out, _, err := r.program.Eval(&activation{in: in})
	if err != nil {
		return false, "condition failed: " + err.Error()
	}
	if out != types.True {
		return false, "condition is false"
	}
	return true, ""
}

// activation hands the condition its variables, building each only when
// the expression first reads it: a condition on headers never decodes the
// claims.
type activation struct {
	in      Input
	claims  map[string]any
	request map[string]any
	decoded bool
}

func (a *activation) ResolveName(name string) (any, bool) {
	switch name {
	case "claims":
		if !a.decoded {
			a.decoded = true
			if json.Unmarshal(a.in.Claims, &a.claims) != nil {
				a.claims = nil
			}
		}
		// Unresolved claims make the evaluation fail, which refuses.
		return a.claims, a.claims != nil
	case "request":
		if a.request == nil {
			a.request = map[string]any{
				"method":   a.in.Method,
				"path":     a.in.Path,
				"raw_path": a.in.RawPath,
				"headers":  lowerHeaders(a.in.Header),
			}
		}
		return a.request, true
	}
	return nil, false
}

func (a *activation) Parent() interpreter.Activation { return nil }

// lowerHeaders maps lower-cased header names to their value, as conditions
// read them: the headers the app will receive. Hop-by-hop headers, and
// those the Connection header lists, are removed on the way, so they are
// left out. Credentials are left out, so that no evaluation error can
// quote them into a log. A header sent more than once, or also spelled
// with "_" for "-" (which WSGI and PHP apps read as the same header), is
// left out too: the condition cannot know which copy the app will read, so
// a condition on it fails closed.
func lowerHeaders(h http.Header) map[string]string {
	m := make(map[string]string, len(h))
	ambiguous := map[string]bool{}
	// As a proxy finds them (httputil, proxy.DropConnectionNamed): the
	// exact header each trimmed, canonicalized token names, and no other
	// spelling of it. Connection: X_Tenant drops no X-Tenant.
	dropped := map[string]bool{}
	for _, v := range h["Connection"] {
		for name := range strings.SplitSeq(v, ",") {
			if name = textproto.TrimString(name); name != "" {
				dropped[textproto.CanonicalMIMEHeaderKey(name)] = true
			}
		}
	}
	for k, v := range h {
		// A proxy removes the hop-by-hop headers by their exact names:
		// Keep_Alive reaches the app, and is read as keep-alive.
		lower := strings.ToLower(k)
		name := strings.ReplaceAll(lower, "_", "-")
		if hopByHop(lower) || dropped[textproto.CanonicalMIMEHeaderKey(k)] || name == "authorization" || name == "cookie" {
			continue
		}
		if _, twin := m[name]; twin || len(v) != 1 {
			ambiguous[name] = true
			continue
		}
		m[name] = v[0]
	}
	for name := range ambiguous {
		delete(m, name)
	}
	return m
}

// hopByHop reports whether a lower-cased header name is one a proxy
// removes (RFC 9110 7.6.1, and the ones httputil.ReverseProxy adds).
func hopByHop(name string) bool {
	switch name {
	case "connection", "proxy-connection", "keep-alive", "proxy-authenticate", "proxy-authorization",
		"te", "trailer", "transfer-encoding", "upgrade":
		return true
	}
	return false
}
