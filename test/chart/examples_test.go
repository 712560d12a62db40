package chart

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

const (
	kubernetesExample = "../../examples/kubernetes"
	composeExample    = "../../examples/docker-compose"
)

// TestKubernetesExample decodes examples/kubernetes strictly and checks
// each authsidecar container as the chart's are checked.
func TestKubernetesExample(t *testing.T) {
	var kust struct {
		APIVersion string   `json:"apiVersion"`
		Kind       string   `json:"kind"`
		Resources  []string `json:"resources"`
	}
	readYAML(t, filepath.Join(kubernetesExample, "kustomization.yaml"), &kust)
	files, err := filepath.Glob(filepath.Join(kubernetesExample, "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var manifests []string
	for _, f := range files {
		if filepath.Base(f) != "kustomization.yaml" {
			manifests = append(manifests, filepath.Base(f))
		}
	}
	diffLists(t, "kustomization resources", sorted(kust.Resources), manifests)

	var objs []object
	for _, f := range manifests {
		b, err := os.ReadFile(filepath.Join(kubernetesExample, f))
		if err != nil {
			t.Fatal(err)
		}
		o, err := decodeManifests(string(b))
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		objs = append(objs, o...)
	}
	diffLists(t, "objects", sorted(keys(objs)), []string{
		"ConfigMap/keycloak-realm", "Deployment/keycloak", "Deployment/orders", "Deployment/payments",
		"Namespace/shop", "Secret/orders-oauth-client", "Service/keycloak", "Service/payments",
		"ServiceAccount/orders", "ServiceAccount/payments",
	})

	wantEnv := map[string][]string{
		"payments": {
			"AUTHSIDECAR_INBOUND_ISSUERS=http://keycloak:8080/realms/shop",
			"AUTHSIDECAR_INBOUND_AUDIENCES=payments",
			"AUTHSIDECAR_INBOUND_ALLOWED_CLIENTS=orders",
			"AUTHSIDECAR_INBOUND_UPSTREAM=http://127.0.0.1:8080",
			"AUTHSIDECAR_INBOUND_PUBLIC_PATHS=/healthz",
			"AUTHSIDECAR_ACCESS_LOG=true",
			"AUTHSIDECAR_ALLOW_INSECURE_HTTP=true",
			"AUTHSIDECAR_SHUTDOWN_DELAY=5s",
		},
		"orders": {
			"AUTHSIDECAR_OUTBOUND_ROUTES=payments",
			"AUTHSIDECAR_OUTBOUND_ISSUER=http://keycloak:8080/realms/shop",
			"AUTHSIDECAR_OUTBOUND_CLIENT_ID=orders",
			"AUTHSIDECAR_OUTBOUND_CLIENT_SECRET_FILE=/etc/authsidecar/client-secret/client-secret",
			"AUTHSIDECAR_ROUTE_PAYMENTS_URL=http://payments.shop.svc.cluster.local",
			"AUTHSIDECAR_ALLOW_INSECURE_HTTP=true",
			"AUTHSIDECAR_SHUTDOWN_DELAY=5s",
		},
	}
	for name, env := range wantEnv {
		t.Run(name, func(t *testing.T) {
			d := find[appsv1.Deployment](t, objs, "Deployment", name)
			checkPod(t, d)
			spec := &d.Spec.Template.Spec
			c, native := sidecarOf(t, spec, "authsidecar")
			if !native {
				t.Errorf("%s's sidecar is not native", name)
			}
			checkSidecar(t, spec, c, native, 9464, nil)
			diffLists(t, "sidecar env", envList(c), env)
		})
	}
	payments := find[appsv1.Deployment](t, objs, "Deployment", "payments")
	checkService(t, find[corev1.Service](t, objs, "Service", "payments"), payments, 80, 8000, "http")

	secret := find[corev1.Secret](t, objs, "Secret", "orders-oauth-client")
	if got := secret.StringData["client-secret"]; got != realmSecret(t) {
		t.Errorf("orders' Secret = %q, the realm's client secret is %q", got, realmSecret(t))
	}
}

// realmSecret is the client secret of "orders" in the Compose example's
// realm, which must equal the Kubernetes example's realm.
func realmSecret(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(composeExample, "shop-realm.json"))
	if err != nil {
		t.Fatal(err)
	}
	var realm struct {
		Clients []struct {
			ClientID string `json:"clientId"`
			Secret   string `json:"secret"`
		} `json:"clients"`
	}
	if err := json.Unmarshal(b, &realm); err != nil {
		t.Fatalf("shop-realm.json: %v", err)
	}
	for _, c := range realm.Clients {
		if c.ClientID == "orders" {
			return c.Secret
		}
	}
	t.Fatal("shop-realm.json has no client orders")
	return ""
}

func TestExamplesShareOneRealm(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(kubernetesExample, "keycloak.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	objs, err := decodeManifests(string(b))
	if err != nil {
		t.Fatal(err)
	}
	cm := find[corev1.ConfigMap](t, objs, "ConfigMap", "keycloak-realm")
	compose, err := os.ReadFile(filepath.Join(composeExample, "shop-realm.json"))
	if err != nil {
		t.Fatal(err)
	}
	var a, c any
	if err := json.Unmarshal([]byte(cm.Data["shop-realm.json"]), &a); err != nil {
		t.Fatalf("keycloak.yaml's realm: %v", err)
	}
	if err := json.Unmarshal(compose, &c); err != nil {
		t.Fatalf("shop-realm.json: %v", err)
	}
	if !reflect.DeepEqual(a, c) {
		t.Errorf("the realm in examples/kubernetes/keycloak.yaml differs from examples/docker-compose/shop-realm.json")
	}
	secretFile, err := os.ReadFile(filepath.Join(composeExample, "orders-client-secret.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(string(secretFile)); got != realmSecret(t) {
		t.Errorf("orders-client-secret.txt = %q, the realm's client secret is %q", got, realmSecret(t))
	}
}

// TestComposeExample checks the sidecars' variables in compose.yaml.
func TestComposeExample(t *testing.T) {
	var compose struct {
		Services map[string]struct {
			Image       string            `json:"image"`
			Environment map[string]string `json:"environment"`
			NetworkMode string            `json:"network_mode"`
			Secrets     []string          `json:"secrets"`
			Ports       []string          `json:"ports"`
		} `json:"services"`
	}
	readYAML(t, filepath.Join(composeExample, "compose.yaml"), &compose)
	var names []string
	for name, svc := range compose.Services {
		names = append(names, name)
		for k := range svc.Environment {
			if strings.HasPrefix(k, "AUTHSIDECAR_") && !isSpecVariable(k) {
				t.Errorf("%s: %s is not a variable SPEC.md names", name, k)
			}
			if plainSecretVariables[k] {
				t.Errorf("%s: %s carries a secret's value; use the _FILE variable", name, k)
			}
		}
	}
	sort.Strings(names)
	diffLists(t, "services", names, []string{"keycloak", "orders", "orders-sidecar", "payments", "payments-sidecar"})
	for app, sidecar := range map[string]string{"orders": "orders-sidecar", "payments": "payments-sidecar"} {
		if got := compose.Services[app].NetworkMode; got != "service:"+sidecar {
			t.Errorf("%s network_mode = %q, want it in %s's namespace", app, got, sidecar)
		}
	}
	orders := compose.Services["orders-sidecar"]
	if orders.Environment["AUTHSIDECAR_OUTBOUND_CLIENT_SECRET_FILE"] != "/run/secrets/orders_client_secret" ||
		!reflect.DeepEqual(orders.Secrets, []string{"orders_client_secret"}) {
		t.Errorf("orders-sidecar: secret file %q, secrets %v; want the Compose secret's file",
			orders.Environment["AUTHSIDECAR_OUTBOUND_CLIENT_SECRET_FILE"], orders.Secrets)
	}
	if got := orders.Environment["AUTHSIDECAR_ROUTE_PAYMENTS_URL"]; got != "http://payments-sidecar:8000" {
		t.Errorf("orders' route payments = %q, want payments' sidecar, not its app", got)
	}
}

// readYAML decodes a YAML file into v, ignoring fields v lacks (a Compose
// file has many this test does not read).
func readYAML(t *testing.T, file string, v any) {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
}
