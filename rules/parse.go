package rules

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/google/cel-go/cel"
	"go.yaml.in/yaml/v3"
)

var errNoRules = errors.New(`rules: no rules: want a top-level "rules" list with at least one rule`)

// Load reads the rules file at path and compiles it; see Parse.
func Load(path string) (*Set, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("rules: %w", err)
	}
	return Parse(data)
}

// Parse compiles a rules file. The error, when there is one, lists every
// problem in the file, one per line, each naming its rule.
func Parse(data []byte) (*Set, error) {
	items, err := decodeItems(data)
	if err != nil {
		return nil, err
	}
	env, err := newEnv()
	if err != nil {
		return nil, err
	}
	var errs []error
	rules := make([]*Rule, len(items))
	for i, n := range items {
		rules[i] = compileRule(i+1, n, env, &errs)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return newSet(rules), nil
}

// decodeItems returns the nodes of the top-level "rules" list. The file is
// walked as nodes rather than decoded into structs so that every problem
// can name its rule, which a decoder with KnownFields cannot do.
func decodeItems(data []byte) ([]*yaml.Node, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); errors.Is(err, io.EOF) {
		return nil, errNoRules
	} else if err != nil {
		return nil, fmt.Errorf("rules: %w", err)
	}
	if err := dec.Decode(new(yaml.Node)); !errors.Is(err, io.EOF) {
		return nil, errors.New("rules: want one YAML document, got more")
	}
	if len(doc.Content) == 0 {
		return nil, errNoRules
	}
	root := resolve(doc.Content[0])
	if root.Kind != yaml.MappingNode {
		return nil, fmt.Errorf(`rules: want a mapping with a "rules" list at the top, got %s`, describe(root))
	}
	var list *yaml.Node
	var errs []error
	for i := 0; i+1 < len(root.Content); i += 2 {
		switch k := root.Content[i].Value; {
		case k != "rules":
			errs = append(errs, fmt.Errorf("rules: unknown top-level key %q", k))
		case list != nil:
			errs = append(errs, errors.New(`rules: key "rules" given twice`))
		default:
			list = resolve(root.Content[i+1])
		}
	}
	switch {
	case len(errs) > 0:
		return nil, errors.Join(errs...)
	case list == nil || list.Kind == yaml.ScalarNode && list.ShortTag() == "!!null":
		return nil, errNoRules
	case list.Kind != yaml.SequenceNode:
		return nil, fmt.Errorf(`rules: "rules" must be a list, got %s`, describe(list))
	case len(list.Content) == 0:
		return nil, errNoRules
	}
	return list.Content, nil
}

// spec is one rule as written, before compiling.
type spec struct {
	paths, methods, scopes, clients []string
	public                          bool
	when                            string
	// has holds the keys given; bad those whose value had the wrong type.
	has, bad map[string]bool
}

// compileRule checks and compiles the index-th rule, adding each problem
// to errs; the rule it returns is only used when errs stays empty.
func compileRule(index int, n *yaml.Node, env *cel.Env, errs *[]error) *Rule {
	n = resolve(n)
	name := ruleName(index, n)
	errorf := func(format string, args ...any) {
		*errs = append(*errs, fmt.Errorf("rules: %s: %s", name, fmt.Sprintf(format, args...)))
	}
	if n.Kind != yaml.MappingNode {
		errorf("want a mapping, got %s", describe(n))
		return nil
	}
	s := decodeSpec(n, errorf)
	r := &Rule{
		Index:   index,
		Source:  fmt.Sprintf("rule %d", index),
		Public:  s.public,
		Paths:   s.paths,
		Methods: s.methods,
		Scopes:  s.scopes,
		Clients: s.clients,
		When:    s.when,
		methods: compileMethods(s.methods, errorf),
	}
	if len(s.paths) == 0 && !s.bad["paths"] {
		errorf("no paths")
	}
	for _, p := range s.paths {
		g, err := compileGlob(p)
		if err != nil {
			errorf("%v", err)
		}
		r.globs = append(r.globs, g)
	}
	checkTokens("scope", s.scopes, errorf)
	checkTokens("client", s.clients, errorf)
	if s.public {
		checkPublic(s, errorf)
	}
	if s.has["when"] {
		r.program = compileWhen(env, s.when, errorf)
	}
	return r
}

// ruleName is how errors name a rule: its 1-based index and first path.
func ruleName(index int, n *yaml.Node) string {
	if n.Kind == yaml.MappingNode {
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value != "paths" {
				continue
			}
			if l := resolve(n.Content[i+1]); l.Kind == yaml.SequenceNode && len(l.Content) > 0 {
				if first := resolve(l.Content[0]); first.Kind == yaml.ScalarNode {
					return fmt.Sprintf("rule %d (%s)", index, first.Value)
				}
			}
		}
	}
	return fmt.Sprintf("rule %d", index)
}

func decodeSpec(n *yaml.Node, errorf func(string, ...any)) spec {
	s := spec{has: map[string]bool{}, bad: map[string]bool{}}
	for i := 0; i+1 < len(n.Content); i += 2 {
		key, v := n.Content[i].Value, resolve(n.Content[i+1])
		if s.has[key] {
			errorf("key %q given twice", key)
			continue
		}
		s.has[key] = true
		var err error
		switch key {
		case "paths":
			s.paths, err = stringList(v)
		case "methods":
			s.methods, err = stringList(v)
		case "scopes":
			s.scopes, err = stringList(v)
		case "clients":
			s.clients, err = stringList(v)
		case "public":
			s.public, err = boolean(v)
		case "when":
			s.when, err = str(v)
		default:
			errorf("unknown key %q", key)
			continue
		}
		if err != nil {
			s.bad[key] = true
			errorf("%s: %v", key, err)
		}
	}
	return s
}

// checkTokens refuses empty names and names with spaces: scopes and client
// ids never hold one (RFC 6749, appendix A), so "a b" is two scopes written
// as one string.
func checkTokens(kind string, names []string, errorf func(string, ...any)) {
	for _, v := range names {
		switch {
		case v == "":
			errorf("empty %s", kind)
		case strings.ContainsAny(v, " \t\r\n"):
			errorf("%s %q holds a space: list each %s on its own", kind, v, kind)
		}
	}
}

// checkPublic refuses a public rule that asks for anything: it would read
// as protected while no token is ever checked.
func checkPublic(s spec, errorf func(string, ...any)) {
	var with []string
	if len(s.scopes) > 0 {
		with = append(with, "scopes")
	}
	if len(s.clients) > 0 {
		with = append(with, "clients")
	}
	if s.has["when"] {
		with = append(with, "when")
	}
	if len(with) > 0 {
		errorf("public: true cannot go with %s: a public rule checks no token", strings.Join(with, ", "))
	}
}

// resolve follows an alias to the node it names.
func resolve(n *yaml.Node) *yaml.Node {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	return n
}

func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		kind := scalarKind(n.ShortTag())
		return fmt.Sprintf("%s %q", kind, n.Value)
	}
	return "nothing"
}

func scalarKind(tag string) string {
	switch tag {
	case "!!str":
		return "string"
	case "!!int":
		return "integer"
	case "!!float":
		return "float"
	case "!!bool":
		return "bool"
	case "!!null":
		return "null"
	}
	return tag
}

func stringList(n *yaml.Node) ([]string, error) {
	if n.Kind != yaml.SequenceNode {
		return nil, fmt.Errorf("want a list of strings, got %s", describe(n))
	}
	out := make([]string, 0, len(n.Content))
	for _, c := range n.Content {
		v, err := str(resolve(c))
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, nil
}

func str(n *yaml.Node) (string, error) {
	if n.Kind == yaml.ScalarNode && n.ShortTag() != "!!str" {
		return "", fmt.Errorf("want a string, got %s (quote it)", describe(n))
	}
	if n.Kind != yaml.ScalarNode {
		return "", fmt.Errorf("want a string, got %s", describe(n))
	}
	return n.Value, nil
}

func boolean(n *yaml.Node) (bool, error) {
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!bool" {
		return false, fmt.Errorf("want true or false, got %s", describe(n))
	}
	var b bool
	err := n.Decode(&b)
	return b, err
}
