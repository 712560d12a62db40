package config

import (
	"reflect"
	"slices"
	"strings"
)

// Variables lists every variable authsidecar reads, with route variables
// written AUTHSIDECAR_ROUTE_<NAME>_…: the names the README documents.
func Variables() []string {
	var out []string
	for _, s := range sections() {
		for _, key := range s.keys {
			out = append(out, s.prefix+key)
		}
	}
	for _, key := range envKeys(Route{}) {
		out = append(out, Prefix+"ROUTE_<NAME>_"+key)
	}
	return out
}

type section struct {
	prefix string
	keys   []string
}

func sections() []section {
	return []section{
		{Prefix, envKeys(General{})},
		{Prefix + "INBOUND_", envKeys(Inbound{})},
		{Prefix + "OUTBOUND_", envKeys(Outbound{})},
	}
}

// envKeys lists the variable names of a section's fields.
func envKeys(section any) []string {
	var keys []string
	t := reflect.TypeOf(section)
	for i := range t.NumField() {
		if key := strings.Split(t.Field(i).Tag.Get("env"), ",")[0]; key != "" && key != "-" {
			keys = append(keys, key)
		}
	}
	return keys
}

// unknown reports every AUTHSIDECAR_* variable that is not one the sidecar
// reads, so that a misspelling never fails open: a typo in
// AUTHSIDECAR_INBOUND_REQUIRED_SCOPES would otherwise leave scopes
// unchecked. Each is named with the closest known name.
func (p *problems) unknown(environ map[string]string, routes []string) {
	known := map[string]bool{}
	var names []string
	addKnown := func(n string) {
		known[n] = true
		names = append(names, n)
	}
	for _, s := range sections() {
		for _, key := range s.keys {
			addKnown(s.prefix + key)
		}
	}
	routeKeys := envKeys(Route{})
	for _, r := range routes {
		if validRouteName(r) {
			for _, key := range routeKeys {
				addKnown(RoutePrefix(r) + key)
			}
		}
	}
	for name := range environ {
		if !strings.HasPrefix(name, Prefix) || known[name] {
			continue
		}
		if route, ok := routeVariable(name, routeKeys); ok && !slices.Contains(routes, route) {
			p.add(name, "is a variable of route %q, which %sOUTBOUND_ROUTES does not list: add the route there, or remove the variable%s",
				route, Prefix, suggestion(name, names))
			continue
		}
		p.add(name, "is not a variable authsidecar reads%s", suggestion(name, names))
	}
}

// routeVariable returns the route that AUTHSIDECAR_ROUTE_<NAME>_<KEY>
// names, for a known key.
func routeVariable(name string, keys []string) (route string, ok bool) {
	rest, ok := strings.CutPrefix(name, Prefix+"ROUTE_")
	if !ok {
		return "", false
	}
	for _, k := range keys {
		if r, found := strings.CutSuffix(rest, "_"+k); found && r != "" {
			return strings.ToLower(strings.ReplaceAll(r, "_", "-")), true
		}
	}
	return "", false
}

// suggestion is "; did you mean X?" for the known name closest to name: a
// setting of one section put under another (AUTHSIDECAR_INBOUND_LOG_LEVEL
// for AUTHSIDECAR_LOG_LEVEL), or else the name a few typing mistakes
// away; "" when nothing is that close.
func suggestion(name string, known []string) string {
	slices.Sort(known)
	for _, sectionPrefix := range []string{Prefix + "INBOUND_", Prefix + "OUTBOUND_", Prefix} {
		if key, ok := strings.CutPrefix(name, sectionPrefix); ok {
			for _, k := range known {
				if strings.HasSuffix(k, "_"+key) && !strings.HasPrefix(k, Prefix+"ROUTE_") {
					return "; did you mean " + k + "?"
				}
			}
		}
	}
	best, bestDist := "", -1
	for _, k := range known {
		if d := distance(name, k); bestDist < 0 || d < bestDist {
			best, bestDist = k, d
		}
	}
	if best == "" || bestDist > max(2, len(name)/10) {
		return ""
	}
	return "; did you mean " + best + "?"
}

// distance is the Levenshtein distance between a and b.
func distance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
