package inbound

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"

	"github.com/authsidecar/authsidecar/proxy"
	"github.com/authsidecar/authsidecar/rules"
)

// wellKnownResource is the well-known path of protected-resource metadata
// (RFC 9728 3).
const wellKnownResource = "/.well-known/oauth-protected-resource"

// resourceMetadata serves the protected resource's metadata (RFC 9728),
// which tells a client which authorization servers issue tokens for it,
// and is named in every challenge.
type resourceMetadata struct {
	// url is the metadata's URL, path its path on the inbound port.
	url, path string
	// doc lacks scopes_supported, which comes from the rules in force
	// (REQUIRED_SCOPES among them) at each request: the rules file may
	// change.
	doc resourceDocument
}

type resourceDocument struct {
	Resource             string   `json:"resource"`
	AuthorizationServers []string `json:"authorization_servers"`
	ScopesSupported      []string `json:"scopes_supported,omitempty"`
	BearerMethods        []string `json:"bearer_methods_supported"`
	DPoPAlgs             []string `json:"dpop_signing_alg_values_supported"`
	DPoPRequired         bool     `json:"dpop_bound_access_tokens_required"`
}

// newResourceMetadata returns the metadata of resource, an https URL,
// whose tokens come from issuers; nil when resource is "".
func newResourceMetadata(resource string, issuers, algs []string, dpopRequired bool) *resourceMetadata {
	if resource == "" {
		return nil
	}
	u, err := url.Parse(resource)
	if err != nil {
		return nil // config.Load checked it
	}
	// RFC 9728 3.1: the well-known path goes between the host and the
	// resource's path, a terminating slash removed. path is decoded, as
	// the request paths it is compared with are.
	meta := *u
	meta.Path = wellKnownResource + strings.TrimSuffix(u.Path, "/")
	meta.RawPath = wellKnownResource + strings.TrimSuffix(u.EscapedPath(), "/")
	return &resourceMetadata{
		url:  meta.String(),
		path: meta.Path,
		doc: resourceDocument{
			Resource: resource, AuthorizationServers: issuers, BearerMethods: []string{"header"},
			DPoPAlgs: algs, DPoPRequired: dpopRequired,
		},
	}
}

// serve answers a request for the metadata: GET or HEAD, no token needed.
func (m *resourceMetadata) serve(w http.ResponseWriter, r *http.Request, set *rules.Set) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		proxy.WriteError(w, r, http.StatusMethodNotAllowed, "method_not_allowed", "the metadata is read with GET")
		return
	}
	doc := m.doc
	doc.ScopesSupported = set.Scopes()
	b, _ := json.Marshal(doc)
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "max-age=300")
	if r.Method == http.MethodHead {
		return
	}
	_, _ = w.Write(b)
}
