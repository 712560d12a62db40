package chart

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

// chartDir is the chart under test, relative to this package.
const chartDir = "../../charts/authsidecar"

// kubeVersion is passed to every helm call that does not choose its own, so
// results do not depend on the Kubernetes version a helm build assumes.
const kubeVersion = "v1.31.0"

var (
	helmOnce sync.Once
	helmBin  string
	helmErr  error
)

// findHelm looks for helm in $HELM, PATH, then $(go env GOPATH)/bin, where
// scripts/install-helm.sh puts it.
func findHelm() (string, error) {
	if p := os.Getenv("HELM"); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("HELM=%q: %w", p, err)
		}
		return p, nil
	}
	if p, err := exec.LookPath("helm"); err == nil {
		return p, nil
	}
	out, err := exec.Command("go", "env", "GOPATH").Output()
	if err == nil {
		p := filepath.Join(strings.TrimSpace(string(out)), "bin", "helm")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("helm is not in $HELM, on PATH or in $(go env GOPATH)/bin")
}

// requireHelm returns helm's path. Without helm the test fails under
// CI=true and skips, loudly, elsewhere.
func requireHelm(t *testing.T) string {
	t.Helper()
	helmOnce.Do(func() {
		helmBin, helmErr = findHelm()
		if helmErr != nil && os.Getenv("CI") != "true" {
			fmt.Fprintf(os.Stderr, "\n*** SKIPPING the Helm chart tests: %v.\n*** Install it with: bash scripts/install-helm.sh\n\n", helmErr)
		}
	})
	if helmErr != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%v; CI=true needs it: run bash scripts/install-helm.sh first", helmErr)
		}
		t.Skipf("SKIPPED: %v; install it with: bash scripts/install-helm.sh", helmErr)
	}
	return helmBin
}

// runHelm runs helm with args and returns stdout, or stderr as the error.
func runHelm(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(requireHelm(t), args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	// No user configuration or repositories leak into the test.
	home := t.TempDir()
	cmd.Env = append(os.Environ(),
		"HELM_CONFIG_HOME="+filepath.Join(home, "config"),
		"HELM_CACHE_HOME="+filepath.Join(home, "cache"),
		"HELM_DATA_HOME="+filepath.Join(home, "data"),
	)
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("helm %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

// valuesArgs turns a values file and --set pairs into helm flags.
func valuesArgs(valuesFile string, set []string) []string {
	var args []string
	if valuesFile != "" {
		args = append(args, "-f", valuesFile)
	}
	for _, s := range set {
		args = append(args, "--set", s)
	}
	return args
}

// hasFlag reports whether args already chooses flag.
func hasFlag(args []string, flag string) bool {
	for _, a := range args {
		if a == flag || strings.HasPrefix(a, flag+"=") {
			return true
		}
	}
	return false
}

// helmTemplate renders chart as release "demo" in namespace "shop".
func helmTemplate(t *testing.T, chart string, extra ...string) (string, error) {
	t.Helper()
	args := append([]string{"template", "demo", chart, "--namespace", "shop"}, extra...)
	if !hasFlag(extra, "--kube-version") {
		args = append(args, "--kube-version", kubeVersion)
	}
	return runHelm(t, args...)
}

func helmLint(t *testing.T, chart string, extra ...string) error {
	t.Helper()
	args := append([]string{"lint", "--strict", chart, "--namespace", "shop", "--kube-version", kubeVersion}, extra...)
	_, err := runHelm(t, args...)
	return err
}

// object is one rendered manifest, decoded into its API type.
type object struct {
	Kind, Name, Namespace string
	Obj                   any
}

func (o object) key() string { return o.Kind + "/" + o.Name }

// ServiceMonitor is the part of monitoring.coreos.com/v1 ServiceMonitor the
// chart renders; strict decoding fails on anything else.
type ServiceMonitor struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		Selector          metav1.LabelSelector `json:"selector"`
		NamespaceSelector namespaceSelector    `json:"namespaceSelector"`
		Endpoints         []metricsEndpoint    `json:"endpoints"`
	} `json:"spec"`
}

// PodMonitor is the part of monitoring.coreos.com/v1 PodMonitor the chart
// renders.
type PodMonitor struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		Selector            metav1.LabelSelector `json:"selector"`
		NamespaceSelector   namespaceSelector    `json:"namespaceSelector"`
		PodMetricsEndpoints []metricsEndpoint    `json:"podMetricsEndpoints"`
	} `json:"spec"`
}

// PrometheusRule is the part of monitoring.coreos.com/v1 PrometheusRule the
// chart renders.
type PrometheusRule struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		Groups []ruleGroup `json:"groups"`
	} `json:"spec"`
}

type ruleGroup struct {
	Name  string      `json:"name"`
	Rules []alertRule `json:"rules"`
}

type alertRule struct {
	Alert       string            `json:"alert"`
	Expr        string            `json:"expr"`
	For         string            `json:"for,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

type namespaceSelector struct {
	Any        bool     `json:"any,omitempty"`
	MatchNames []string `json:"matchNames,omitempty"`
}

type metricsEndpoint struct {
	Port          string `json:"port"`
	Path          string `json:"path"`
	Scheme        string `json:"scheme"`
	Interval      string `json:"interval,omitempty"`
	ScrapeTimeout string `json:"scrapeTimeout,omitempty"`
}

// apiTypes maps each kind the chart may render to its apiVersion and type.
type apiType struct {
	apiVersion string
	new        func() any
}

var apiTypes = map[string]apiType{
	"Deployment":          {"apps/v1", func() any { return &appsv1.Deployment{} }},
	"Service":             {"v1", func() any { return &corev1.Service{} }},
	"ServiceAccount":      {"v1", func() any { return &corev1.ServiceAccount{} }},
	"Secret":              {"v1", func() any { return &corev1.Secret{} }},
	"ConfigMap":           {"v1", func() any { return &corev1.ConfigMap{} }},
	"Namespace":           {"v1", func() any { return &corev1.Namespace{} }},
	"NetworkPolicy":       {"networking.k8s.io/v1", func() any { return &networkingv1.NetworkPolicy{} }},
	"PodDisruptionBudget": {"policy/v1", func() any { return &policyv1.PodDisruptionBudget{} }},
	"ServiceMonitor":      {"monitoring.coreos.com/v1", func() any { return &ServiceMonitor{} }},
	"PodMonitor":          {"monitoring.coreos.com/v1", func() any { return &PodMonitor{} }},
	"PrometheusRule":      {"monitoring.coreos.com/v1", func() any { return &PrometheusRule{} }},
}

var docSeparator = regexp.MustCompile(`(?m)^---[ \t]*$`)

// decodeManifests splits helm's output into documents and decodes each one
// strictly: an unknown or duplicated field is an error.
func decodeManifests(out string) ([]object, error) {
	var objs []object
	for _, doc := range docSeparator.Split(out, -1) {
		if isEmptyDoc(doc) {
			continue
		}
		var head struct {
			APIVersion string            `json:"apiVersion"`
			Kind       string            `json:"kind"`
			Metadata   metav1.ObjectMeta `json:"metadata"`
		}
		if err := yaml.Unmarshal([]byte(doc), &head); err != nil {
			return nil, fmt.Errorf("manifest is not YAML: %v\n%s", err, doc)
		}
		typ, ok := apiTypes[head.Kind]
		if !ok {
			return nil, fmt.Errorf("unexpected kind %q in:\n%s", head.Kind, doc)
		}
		if head.APIVersion != typ.apiVersion {
			return nil, fmt.Errorf("%s/%s: apiVersion %q, want %q", head.Kind, head.Metadata.Name, head.APIVersion, typ.apiVersion)
		}
		obj := typ.new()
		if err := yaml.UnmarshalStrict([]byte(doc), obj); err != nil {
			return nil, fmt.Errorf("%s/%s does not decode strictly: %v\n%s", head.Kind, head.Metadata.Name, err, doc)
		}
		objs = append(objs, object{Kind: head.Kind, Name: head.Metadata.Name, Namespace: head.Metadata.Namespace, Obj: obj})
	}
	return objs, nil
}

func isEmptyDoc(doc string) bool {
	for _, line := range strings.Split(doc, "\n") {
		line = strings.TrimSpace(line)
		if line != "" && !strings.HasPrefix(line, "#") {
			return false
		}
	}
	return true
}

// render runs helm template and decodes the result, failing the test on
// any error.
func render(t *testing.T, chart string, extra ...string) []object {
	t.Helper()
	out, err := helmTemplate(t, chart, extra...)
	if err != nil {
		t.Fatal(err)
	}
	objs, err := decodeManifests(out)
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

// find returns the object kind/name, decoded, or fails the test.
func find[T any](t *testing.T, objs []object, kind, name string) *T {
	t.Helper()
	for _, o := range objs {
		if o.Kind == kind && o.Name == name {
			v, ok := o.Obj.(*T)
			if !ok {
				t.Fatalf("%s/%s is a %T", kind, name, o.Obj)
			}
			return v
		}
	}
	t.Fatalf("no %s/%s among %v", kind, name, keys(objs))
	return nil
}

func keys(objs []object) []string {
	var ks []string
	for _, o := range objs {
		ks = append(ks, o.key())
	}
	return ks
}
