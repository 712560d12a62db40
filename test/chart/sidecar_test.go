package chart

import (
	"fmt"
	"path"
	"reflect"
	"sort"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// specVariables are the variables SPEC.md names (and the two announced
// additions), except the per-route ones, which routeVariable matches, and
// the OpenTelemetry ones SPEC names as the standard OTEL_* set.
var specVariables = []string{
	"AUTHSIDECAR_INBOUND_LISTEN",
	"AUTHSIDECAR_OUTBOUND_LISTEN",
	"AUTHSIDECAR_ADMIN_LISTEN",
	"AUTHSIDECAR_OUTBOUND_ALLOW_REMOTE",
	"AUTHSIDECAR_LOG_LEVEL",
	"AUTHSIDECAR_LOG_FORMAT",
	"AUTHSIDECAR_ACCESS_LOG",
	"AUTHSIDECAR_SHUTDOWN_GRACE",
	"AUTHSIDECAR_INBOUND_UPSTREAM",
	"AUTHSIDECAR_INBOUND_ISSUERS",
	"AUTHSIDECAR_INBOUND_JWKS_URL",
	"AUTHSIDECAR_INBOUND_AUDIENCES",
	"AUTHSIDECAR_INBOUND_ALGORITHMS",
	"AUTHSIDECAR_INBOUND_CLOCK_SKEW",
	"AUTHSIDECAR_INBOUND_REQUIRED_SCOPES",
	"AUTHSIDECAR_INBOUND_ALLOWED_CLIENTS",
	"AUTHSIDECAR_INBOUND_PUBLIC_PATHS",
	"AUTHSIDECAR_INBOUND_FORWARD_TOKEN",
	"AUTHSIDECAR_INBOUND_TLS_CERT_FILE",
	"AUTHSIDECAR_INBOUND_TLS_KEY_FILE",
	"AUTHSIDECAR_INBOUND_CLIENT_CA_FILE",
	"AUTHSIDECAR_INBOUND_INTROSPECTION_CLIENT_ID",
	"AUTHSIDECAR_INBOUND_INTROSPECTION_CLIENT_SECRET",
	"AUTHSIDECAR_INBOUND_INTROSPECTION_CLIENT_SECRET_FILE",
	"AUTHSIDECAR_INBOUND_INTROSPECTION_URL",
	"AUTHSIDECAR_INBOUND_INTROSPECT",
	"AUTHSIDECAR_INBOUND_INTROSPECTION_CACHE_TTL",
	"AUTHSIDECAR_INBOUND_RULES_FILE",
	"AUTHSIDECAR_OUTBOUND_ROUTES",
	"AUTHSIDECAR_OUTBOUND_ISSUER",
	"AUTHSIDECAR_OUTBOUND_TOKEN_URL",
	"AUTHSIDECAR_OUTBOUND_CLIENT_ID",
	"AUTHSIDECAR_OUTBOUND_CLIENT_SECRET",
	"AUTHSIDECAR_OUTBOUND_CLIENT_SECRET_FILE",
	"AUTHSIDECAR_OUTBOUND_CLIENT_ASSERTION_FILE",
	"AUTHSIDECAR_OUTBOUND_AUTH_METHOD",
	"AUTHSIDECAR_OUTBOUND_PRIVATE_KEY_FILE",
	"AUTHSIDECAR_OUTBOUND_PRIVATE_KEY_ID",
	"AUTHSIDECAR_OUTBOUND_TLS_CA_FILE",
	"AUTHSIDECAR_OUTBOUND_TLS_CERT_FILE",
	"AUTHSIDECAR_OUTBOUND_TLS_KEY_FILE",
	// "Strict configuration", "Token types", "What the rules see".
	"AUTHSIDECAR_ALLOW_INSECURE_HTTP",
	"AUTHSIDECAR_INBOUND_INTROSPECTION_AUTH_METHOD",
	"AUTHSIDECAR_INBOUND_REQUIRE_AT_JWT",
	"AUTHSIDECAR_INBOUND_ALLOW_ENCODED_SLASHES",
	"AUTHSIDECAR_INBOUND_CASE_INSENSITIVE_PATHS",
	"AUTHSIDECAR_BODY_IDLE_TIMEOUT",
	// "HTTP/2 and gRPC".
	"AUTHSIDECAR_INBOUND_UPSTREAM_PROTOCOL",
	// "Rollouts, timeouts and reload".
	"AUTHSIDECAR_SHUTDOWN_DELAY",
	"AUTHSIDECAR_INBOUND_UPSTREAM_TIMEOUT",
	"AUTHSIDECAR_OUTBOUND_READY_REQUIRES_TOKENS",
	// "Tracing and access logs": the OTEL_* variables SPEC names...
	"OTEL_EXPORTER_OTLP_ENDPOINT",
	"OTEL_EXPORTER_OTLP_PROTOCOL",
	"OTEL_SERVICE_NAME",
	"OTEL_TRACES_SAMPLER",
	"OTEL_PROPAGATORS",
	"OTEL_TRACES_EXPORTER",
	// ...and the standard ones its "…" stands for that the chart sets.
	"OTEL_TRACES_SAMPLER_ARG",
	"OTEL_RESOURCE_ATTRIBUTES",
}

// plainSecretVariables carry a secret's value. The chart never sets them:
// secrets reach the sidecar as files only.
var plainSecretVariables = map[string]bool{
	"AUTHSIDECAR_OUTBOUND_CLIENT_SECRET":              true,
	"AUTHSIDECAR_INBOUND_INTROSPECTION_CLIENT_SECRET": true,
}

var routeVariableSuffixes = []string{"_URL", "_AUDIENCE", "_RESOURCE", "_SCOPES", "_LISTEN", "_TIMEOUT", "_PROTOCOL"}

// isRouteVariable reports whether name is AUTHSIDECAR_ROUTE_<NAME>_<FIELD>.
func isRouteVariable(name string) bool {
	rest, ok := strings.CutPrefix(name, "AUTHSIDECAR_ROUTE_")
	if !ok {
		return false
	}
	for _, s := range routeVariableSuffixes {
		if r, ok := strings.CutSuffix(rest, s); ok && r != "" && strings.Trim(r, "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_") == "" {
			return true
		}
	}
	return false
}

func isSpecVariable(name string) bool {
	for _, v := range specVariables {
		if v == name {
			return true
		}
	}
	return isRouteVariable(name)
}

// podSpec returns the pod template of the only Deployment in objs.
func deployment(t *testing.T, objs []object) *appsv1.Deployment {
	t.Helper()
	var found *appsv1.Deployment
	for _, o := range objs {
		if d, ok := o.Obj.(*appsv1.Deployment); ok {
			if found != nil {
				t.Fatalf("more than one Deployment: %v", keys(objs))
			}
			found = d
		}
	}
	if found == nil {
		t.Fatalf("no Deployment among %v", keys(objs))
	}
	return found
}

// sidecarOf finds the container named name in spec and says whether it
// runs as a native sidecar (an init container).
func sidecarOf(t *testing.T, spec *corev1.PodSpec, name string) (corev1.Container, bool) {
	t.Helper()
	var (
		found  []corev1.Container
		native bool
	)
	for _, c := range spec.InitContainers {
		if c.Name == name {
			found, native = append(found, c), true
		}
	}
	for _, c := range spec.Containers {
		if c.Name == name {
			found = append(found, c)
		}
	}
	if len(found) != 1 {
		t.Fatalf("want exactly one %q container, got %d", name, len(found))
	}
	return found[0], native
}

func envList(c corev1.Container) []string {
	var out []string
	for _, e := range c.Env {
		if e.ValueFrom != nil {
			out = append(out, e.Name+" from "+e.ValueFrom.String())
			continue
		}
		out = append(out, e.Name+"="+e.Value)
	}
	return out
}

func envValue(c corev1.Container, name string) (string, bool) {
	for _, e := range c.Env {
		if e.Name == name {
			return e.Value, true
		}
	}
	return "", false
}

func portList(c corev1.Container) []string {
	var out []string
	for _, p := range c.Ports {
		out = append(out, fmt.Sprintf("%s %d/%s", p.Name, p.ContainerPort, p.Protocol))
	}
	return out
}

// describeVolume writes a volume's source on one line.
func describeVolume(v corev1.Volume) string {
	items := func(ks []corev1.KeyToPath) string {
		var s []string
		for _, k := range ks {
			s = append(s, k.Key+"->"+k.Path)
		}
		return strings.Join(s, ",")
	}
	switch {
	case v.Secret != nil:
		return fmt.Sprintf("%s: secret %s %s", v.Name, v.Secret.SecretName, items(v.Secret.Items))
	case v.ConfigMap != nil:
		return fmt.Sprintf("%s: configMap %s %s", v.Name, v.ConfigMap.Name, items(v.ConfigMap.Items))
	case v.Projected != nil:
		var s []string
		for _, src := range v.Projected.Sources {
			if tok := src.ServiceAccountToken; tok != nil {
				exp := int64(0)
				if tok.ExpirationSeconds != nil {
					exp = *tok.ExpirationSeconds
				}
				s = append(s, fmt.Sprintf("serviceAccountToken audience=%s expirationSeconds=%d path=%s", tok.Audience, exp, tok.Path))
			} else {
				s = append(s, "other")
			}
		}
		return fmt.Sprintf("%s: projected %s", v.Name, strings.Join(s, "; "))
	case v.CSI != nil:
		var attrs []string
		for k, val := range v.CSI.VolumeAttributes {
			attrs = append(attrs, k+"="+val)
		}
		sort.Strings(attrs)
		ro := v.CSI.ReadOnly != nil && *v.CSI.ReadOnly
		return fmt.Sprintf("%s: csi %s readOnly=%v %s", v.Name, v.CSI.Driver, ro, strings.Join(attrs, " "))
	}
	return v.Name + ": other"
}

func mountList(c corev1.Container) []string {
	var out []string
	for _, m := range c.VolumeMounts {
		out = append(out, fmt.Sprintf("%s at %s ro=%v", m.Name, m.MountPath, m.ReadOnly))
	}
	return out
}

func volumeList(spec *corev1.PodSpec) []string {
	var out []string
	for _, v := range spec.Volumes {
		out = append(out, describeVolume(v))
	}
	return out
}

func httpProbe(path string, port int, period, timeout, failures int32) *corev1.Probe {
	return &corev1.Probe{
		ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
			Path: path, Port: intstr.FromInt32(int32(port)), Scheme: corev1.URISchemeHTTP,
		}},
		PeriodSeconds: period, TimeoutSeconds: timeout, FailureThreshold: failures,
	}
}

func ptr[T any](v T) *T { return &v }

// wantSecurityContext is the sidecar's hardened security context.
var wantSecurityContext = &corev1.SecurityContext{
	RunAsNonRoot:             ptr(true),
	RunAsUser:                ptr(int64(65532)),
	RunAsGroup:               ptr(int64(65532)),
	ReadOnlyRootFilesystem:   ptr(true),
	AllowPrivilegeEscalation: ptr(false),
	Privileged:               ptr(false),
	Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
	SeccompProfile:           &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
}

// checkSidecar asserts what holds for every rendering: probes on the admin
// port, the security context, secrets as files on read-only whole-volume
// mounts, only known variables, restartPolicy matching the placement.
func checkSidecar(t *testing.T, spec *corev1.PodSpec, c corev1.Container, native bool, adminPort int, extraEnv map[string]bool) {
	t.Helper()
	if native {
		if c.RestartPolicy == nil || *c.RestartPolicy != corev1.ContainerRestartPolicyAlways {
			t.Errorf("native sidecar restartPolicy = %v, want Always", c.RestartPolicy)
		}
		if spec.InitContainers[0].Name != c.Name {
			t.Errorf("native sidecar is init container %q, want it first so later init containers can use it", spec.InitContainers[0].Name)
		}
	} else if c.RestartPolicy != nil {
		t.Errorf("plain sidecar container has restartPolicy %v, want none", *c.RestartPolicy)
	}

	if got, want := c.StartupProbe, httpProbe("/healthz", adminPort, 1, 2, 30); !reflect.DeepEqual(got, want) {
		t.Errorf("startupProbe = %+v, want %+v", got, want)
	}
	if got, want := c.LivenessProbe, httpProbe("/healthz", adminPort, 10, 2, 3); !reflect.DeepEqual(got, want) {
		t.Errorf("livenessProbe = %+v, want %+v", got, want)
	}
	if got, want := c.ReadinessProbe, httpProbe("/readyz", adminPort, 5, 2, 3); !reflect.DeepEqual(got, want) {
		t.Errorf("readinessProbe = %+v, want %+v", got, want)
	}
	if !reflect.DeepEqual(c.SecurityContext, wantSecurityContext) {
		t.Errorf("securityContext = %+v, want %+v", c.SecurityContext, wantSecurityContext)
	}

	volumes := map[string]corev1.Volume{}
	for _, v := range spec.Volumes {
		volumes[v.Name] = v
	}
	mounts := map[string]bool{}
	for _, m := range c.VolumeMounts {
		if _, ok := volumes[m.Name]; !ok {
			t.Errorf("volumeMount %q has no pod volume", m.Name)
		}
		if !m.ReadOnly {
			t.Errorf("volumeMount %q is writable, want readOnly", m.Name)
		}
		if m.SubPath != "" {
			t.Errorf("volumeMount %q uses subPath %q: the kubelet never updates it, so rotated secrets would not reach the sidecar", m.Name, m.SubPath)
		}
		mounts[m.MountPath] = true
	}

	seen := map[string]bool{}
	for _, e := range c.Env {
		if seen[e.Name] {
			t.Errorf("%s is set twice", e.Name)
		}
		seen[e.Name] = true
		if plainSecretVariables[e.Name] {
			t.Errorf("%s is set: secrets must reach the sidecar as files (%s_FILE)", e.Name, e.Name)
		}
		if extraEnv[e.Name] {
			continue
		}
		if !isSpecVariable(e.Name) {
			t.Errorf("%s is not a variable SPEC.md names", e.Name)
		}
		if e.ValueFrom != nil {
			t.Errorf("%s uses valueFrom; the chart sets plain values and files only", e.Name)
		}
		if strings.HasSuffix(e.Name, "_FILE") && !mounts[path.Dir(e.Value)] {
			t.Errorf("%s=%s is not in a directory the sidecar mounts (%v)", e.Name, e.Value, c.VolumeMounts)
		}
	}
}

// checkService asserts that the Service sends traffic to the sidecar's
// inbound port only, on the Deployment's pods.
func checkService(t *testing.T, svc *corev1.Service, d *appsv1.Deployment, port int32, inboundPort int, portName string) {
	t.Helper()
	want := []corev1.ServicePort{{
		Name: portName, Port: port, TargetPort: intstr.FromInt32(int32(inboundPort)), Protocol: corev1.ProtocolTCP,
	}}
	if !reflect.DeepEqual(svc.Spec.Ports, want) {
		t.Errorf("Service ports = %+v, want %+v", svc.Spec.Ports, want)
	}
	if !reflect.DeepEqual(svc.Spec.Selector, d.Spec.Selector.MatchLabels) {
		t.Errorf("Service selector = %v, want the Deployment's %v", svc.Spec.Selector, d.Spec.Selector.MatchLabels)
	}
}

// checkPod asserts the pod-level settings every rendering shares.
func checkPod(t *testing.T, d *appsv1.Deployment) {
	t.Helper()
	spec := &d.Spec.Template.Spec
	for k, v := range d.Spec.Selector.MatchLabels {
		if d.Spec.Template.Labels[k] != v {
			t.Errorf("pod label %s = %q, want the selector's %q", k, d.Spec.Template.Labels[k], v)
		}
	}
	if spec.AutomountServiceAccountToken == nil || *spec.AutomountServiceAccountToken {
		t.Errorf("automountServiceAccountToken = %v, want false", spec.AutomountServiceAccountToken)
	}
	wantPodSC := &corev1.PodSecurityContext{
		RunAsNonRoot:   ptr(true),
		SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
	}
	if !reflect.DeepEqual(spec.SecurityContext, wantPodSC) {
		t.Errorf("pod securityContext = %+v, want %+v", spec.SecurityContext, wantPodSC)
	}
	for _, c := range spec.Containers {
		for _, p := range c.Ports {
			if c.Name != "authsidecar" {
				t.Errorf("container %q declares port %d: only the sidecar's ports are the pod's", c.Name, p.ContainerPort)
			}
		}
	}
}

func sorted(s []string) []string {
	s = append([]string(nil), s...)
	sort.Strings(s)
	return s
}

func diffLists(t *testing.T, what string, got, want []string) {
	t.Helper()
	if len(got) == 0 && len(want) == 0 || reflect.DeepEqual(got, want) {
		return
	}
	t.Errorf("%s:\n got: %s\nwant: %s", what, strings.Join(got, "\n      "), strings.Join(want, "\n      "))
}
