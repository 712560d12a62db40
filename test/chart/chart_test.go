package chart

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"
)

// renderCase is one set of values and everything the sidecar must get.
type renderCase struct {
	name       string
	valuesFile string // relative to this package; "" for the defaults
	set        []string
	// apiVersions are passed as --api-versions: what the cluster serves.
	apiVersions []string

	wantObjects []string // Kind/name, sorted
	wantNative  bool
	wantEnv     []string // NAME=value, in order
	wantPorts   []string
	wantVolumes []string // describeVolume, in order
	adminPort   int
	inboundPort int
	// wantService is the Service port and its name; 0 for no Service.
	wantService     int32
	wantServiceName string
	extraEnv        map[string]bool
}

const (
	fileClientSecret = "AUTHSIDECAR_OUTBOUND_CLIENT_SECRET_FILE=/etc/authsidecar/client-secret/client-secret"
	// shutdownDelay is what the chart sets unless told otherwise.
	shutdownDelay = "AUTHSIDECAR_SHUTDOWN_DELAY=5s"
	keycloak      = "https://keycloak.example.com/realms/shop"
)

// csiVolume is the pod certificate ci/cert-manager-csi-values.yaml asks for.
const csiVolume = "authsidecar-pod-tls: csi csi.cert-manager.io readOnly=true" +
	" csi.cert-manager.io/dns-names=payments.shop.svc,payments.shop.svc.cluster.local" +
	" csi.cert-manager.io/duration=24h" +
	" csi.cert-manager.io/fs-group=65532" +
	" csi.cert-manager.io/issuer-kind=ClusterIssuer" +
	" csi.cert-manager.io/issuer-name=shop-ca" +
	" csi.cert-manager.io/key-usages=server auth,client auth,digital signature" +
	" csi.cert-manager.io/uri-sans=spiffe://cluster.local/ns/${POD_NAMESPACE}/sa/${SERVICE_ACCOUNT_NAME}"

var renderCases = []renderCase{
	{
		name:        "default values render a native sidecar with only the admin port",
		wantObjects: []string{"Deployment/demo-authsidecar", "ServiceAccount/demo-authsidecar"},
		wantNative:  true,
		wantEnv:     []string{"AUTHSIDECAR_ADMIN_LISTEN=:9464", shutdownDelay},
		wantPorts:   []string{"auth-admin 9464/TCP"},
	},
	{
		name:       "inbound only validates Keycloak tokens in front of the app",
		valuesFile: "../../charts/authsidecar/ci/inbound-only-values.yaml",
		wantObjects: []string{
			"Deployment/demo-authsidecar", "NetworkPolicy/demo-authsidecar",
			"Service/demo-authsidecar", "ServiceAccount/demo-authsidecar",
		},
		wantNative: true,
		wantEnv: []string{
			"AUTHSIDECAR_ADMIN_LISTEN=:9464",
			shutdownDelay,
			"AUTHSIDECAR_INBOUND_LISTEN=:8000",
			"AUTHSIDECAR_INBOUND_UPSTREAM=http://127.0.0.1:8080",
			"AUTHSIDECAR_INBOUND_ISSUERS=" + keycloak,
			"AUTHSIDECAR_INBOUND_AUDIENCES=payments",
			"AUTHSIDECAR_INBOUND_REQUIRED_SCOPES=payments:write",
			"AUTHSIDECAR_INBOUND_ALLOWED_CLIENTS=orders",
			"AUTHSIDECAR_INBOUND_PUBLIC_PATHS=/healthz",
		},
		wantPorts:       []string{"auth-inbound 8000/TCP", "auth-admin 9464/TCP"},
		wantService:     80,
		wantServiceName: "http",
	},
	{
		name:        "outbound only mounts the user's Secret as the client secret file",
		valuesFile:  "../../charts/authsidecar/ci/outbound-only-values.yaml",
		wantObjects: []string{"Deployment/demo-authsidecar", "ServiceAccount/demo-authsidecar"},
		wantNative:  true,
		wantEnv: []string{
			"AUTHSIDECAR_ADMIN_LISTEN=:9464",
			shutdownDelay,
			"AUTHSIDECAR_OUTBOUND_LISTEN=127.0.0.1:4000",
			"AUTHSIDECAR_OUTBOUND_ROUTES=payments",
			"AUTHSIDECAR_OUTBOUND_ISSUER=" + keycloak,
			"AUTHSIDECAR_OUTBOUND_CLIENT_ID=orders",
			fileClientSecret,
			"AUTHSIDECAR_ROUTE_PAYMENTS_URL=http://payments.shop.svc.cluster.local",
			"AUTHSIDECAR_ROUTE_PAYMENTS_AUDIENCE=payments",
			"AUTHSIDECAR_ROUTE_PAYMENTS_SCOPES=payments:write",
		},
		wantPorts:   []string{"auth-admin 9464/TCP"},
		wantVolumes: []string{"authsidecar-client-secret: secret orders-oauth-client client-secret->client-secret"},
	},
	{
		name:       "plain container mode puts the sidecar beside the app with the chart's own Secret",
		valuesFile: "../../charts/authsidecar/ci/plain-container-values.yaml",
		wantObjects: []string{
			"Deployment/demo-authsidecar", "Secret/demo-authsidecar",
			"Service/demo-authsidecar", "ServiceAccount/demo-authsidecar",
		},
		wantNative: false,
		wantEnv: []string{
			"AUTHSIDECAR_ADMIN_LISTEN=:9464",
			"AUTHSIDECAR_LOG_LEVEL=debug",
			"AUTHSIDECAR_ACCESS_LOG=true",
			shutdownDelay,
			"AUTHSIDECAR_INBOUND_LISTEN=:8000",
			"AUTHSIDECAR_INBOUND_UPSTREAM=http://127.0.0.1:8080",
			"AUTHSIDECAR_INBOUND_ISSUERS=https://login.microsoftonline.com/11111111-2222-3333-4444-555555555555/v2.0",
			"AUTHSIDECAR_INBOUND_AUDIENCES=api://payments",
			"AUTHSIDECAR_OUTBOUND_LISTEN=127.0.0.1:4000",
			"AUTHSIDECAR_OUTBOUND_ROUTES=ledger",
			"AUTHSIDECAR_OUTBOUND_TOKEN_URL=https://login.microsoftonline.com/11111111-2222-3333-4444-555555555555/oauth2/v2.0/token",
			"AUTHSIDECAR_OUTBOUND_CLIENT_ID=6b0e4c3c-0000-4000-8000-000000000001",
			fileClientSecret,
			"AUTHSIDECAR_OUTBOUND_AUTH_METHOD=client_secret_post",
			"AUTHSIDECAR_ROUTE_LEDGER_URL=https://ledger.example.com",
			"AUTHSIDECAR_ROUTE_LEDGER_SCOPES=api://ledger/.default",
		},
		wantPorts:       []string{"auth-inbound 8000/TCP", "auth-admin 9464/TCP"},
		wantVolumes:     []string{"authsidecar-client-secret: secret demo-authsidecar client-secret->client-secret"},
		wantService:     80,
		wantServiceName: "http",
	},
	{
		name:        "monitoring renders a PodMonitor and the dashboard ConfigMap",
		valuesFile:  "../../charts/authsidecar/ci/monitoring-dashboard-values.yaml",
		apiVersions: prometheusOperator,
		wantObjects: []string{
			"ConfigMap/demo-authsidecar-dashboard", "Deployment/demo-authsidecar", "PodMonitor/demo-authsidecar",
			"Service/demo-authsidecar", "ServiceAccount/demo-authsidecar",
		},
		wantNative: true,
		wantEnv: []string{
			"AUTHSIDECAR_ADMIN_LISTEN=:9464",
			shutdownDelay,
			"AUTHSIDECAR_INBOUND_LISTEN=:8000",
			"AUTHSIDECAR_INBOUND_UPSTREAM=http://127.0.0.1:8080",
			"AUTHSIDECAR_INBOUND_ISSUERS=" + keycloak,
			"AUTHSIDECAR_INBOUND_AUDIENCES=payments",
		},
		wantPorts:       []string{"auth-inbound 8000/TCP", "auth-admin 9464/TCP"},
		wantService:     80,
		wantServiceName: "http",
	},
	{
		name:        "a ServiceMonitor comes with a headless metrics Service",
		valuesFile:  "../../charts/authsidecar/ci/servicemonitor-values.yaml",
		apiVersions: prometheusOperator,
		wantObjects: []string{
			"Deployment/demo-authsidecar", "Service/demo-authsidecar-metrics",
			"ServiceAccount/demo-authsidecar", "ServiceMonitor/demo-authsidecar",
		},
		wantNative: true,
		wantEnv: []string{
			"AUTHSIDECAR_ADMIN_LISTEN=:9464",
			shutdownDelay,
			"AUTHSIDECAR_OUTBOUND_LISTEN=127.0.0.1:4000",
			"AUTHSIDECAR_OUTBOUND_ROUTES=payments",
			"AUTHSIDECAR_OUTBOUND_ISSUER=" + keycloak,
			"AUTHSIDECAR_OUTBOUND_CLIENT_ID=orders",
			fileClientSecret,
			"AUTHSIDECAR_ROUTE_PAYMENTS_URL=http://payments.shop.svc.cluster.local",
			"AUTHSIDECAR_ROUTE_PAYMENTS_AUDIENCE=payments",
		},
		wantPorts:   []string{"auth-admin 9464/TCP"},
		wantVolumes: []string{"authsidecar-client-secret: secret orders-oauth-client client-secret->client-secret"},
	},
	{
		name:       "mTLS, rules and introspection are all files from Secrets and a ConfigMap",
		valuesFile: "../../charts/authsidecar/ci/inbound-mtls-rules-values.yaml",
		wantObjects: []string{
			"ConfigMap/demo-authsidecar-rules", "Deployment/demo-authsidecar",
			"Service/demo-authsidecar", "ServiceAccount/demo-authsidecar",
		},
		wantNative: true,
		wantEnv: []string{
			"AUTHSIDECAR_ADMIN_LISTEN=:9464",
			shutdownDelay,
			"AUTHSIDECAR_INBOUND_LISTEN=:8000",
			"AUTHSIDECAR_INBOUND_UPSTREAM=http://127.0.0.1:8080",
			"AUTHSIDECAR_INBOUND_ISSUERS=https://shop.okta.com/oauth2/default",
			"AUTHSIDECAR_INBOUND_AUDIENCES=api://payments",
			"AUTHSIDECAR_INBOUND_RULES_FILE=/etc/authsidecar/rules/rules.yaml",
			"AUTHSIDECAR_INBOUND_TLS_CERT_FILE=/etc/authsidecar/inbound-tls/tls.crt",
			"AUTHSIDECAR_INBOUND_TLS_KEY_FILE=/etc/authsidecar/inbound-tls/tls.key",
			"AUTHSIDECAR_INBOUND_CLIENT_CA_FILE=/etc/authsidecar/client-ca/ca.crt",
			"AUTHSIDECAR_INBOUND_INTROSPECTION_CLIENT_ID=payments-rs",
			"AUTHSIDECAR_INBOUND_INTROSPECTION_CLIENT_SECRET_FILE=/etc/authsidecar/introspection/client-secret",
			"AUTHSIDECAR_INBOUND_INTROSPECT=opaque",
			"AUTHSIDECAR_INBOUND_INTROSPECTION_CACHE_TTL=30s",
		},
		wantPorts: []string{"auth-inbound 8000/TCP", "auth-admin 9464/TCP"},
		wantVolumes: []string{
			"authsidecar-rules: configMap demo-authsidecar-rules rules.yaml->rules.yaml",
			"authsidecar-inbound-tls: secret payments-tls tls.crt->tls.crt,tls.key->tls.key",
			"authsidecar-client-ca: secret payments-tls ca.crt->ca.crt",
			"authsidecar-introspection-secret: secret payments-introspection client-secret->client-secret",
		},
		wantService:     443,
		wantServiceName: "https",
	},
	{
		name:       "a cert-manager CSI certificate serves inbound and outbound TLS, a trust-manager bundle the CAs",
		valuesFile: "../../charts/authsidecar/ci/cert-manager-csi-values.yaml",
		wantObjects: []string{
			"Deployment/demo-authsidecar", "Service/demo-authsidecar", "ServiceAccount/demo-authsidecar",
		},
		wantNative: true,
		wantEnv: []string{
			"AUTHSIDECAR_ADMIN_LISTEN=:9464",
			shutdownDelay,
			"AUTHSIDECAR_INBOUND_LISTEN=:8000",
			"AUTHSIDECAR_INBOUND_UPSTREAM=http://127.0.0.1:8080",
			"AUTHSIDECAR_INBOUND_ISSUERS=" + keycloak,
			"AUTHSIDECAR_INBOUND_AUDIENCES=payments",
			"AUTHSIDECAR_INBOUND_TLS_CERT_FILE=/etc/authsidecar/pod-tls/tls.crt",
			"AUTHSIDECAR_INBOUND_TLS_KEY_FILE=/etc/authsidecar/pod-tls/tls.key",
			"AUTHSIDECAR_INBOUND_CLIENT_CA_FILE=/etc/authsidecar/client-ca/ca.crt",
			"AUTHSIDECAR_OUTBOUND_LISTEN=127.0.0.1:4000",
			"AUTHSIDECAR_OUTBOUND_ROUTES=ledger",
			"AUTHSIDECAR_OUTBOUND_ISSUER=" + keycloak,
			"AUTHSIDECAR_OUTBOUND_CLIENT_ID=payments",
			fileClientSecret,
			"AUTHSIDECAR_OUTBOUND_TLS_CA_FILE=/etc/authsidecar/outbound-ca/ca.crt",
			"AUTHSIDECAR_OUTBOUND_TLS_CERT_FILE=/etc/authsidecar/pod-tls/tls.crt",
			"AUTHSIDECAR_OUTBOUND_TLS_KEY_FILE=/etc/authsidecar/pod-tls/tls.key",
			"AUTHSIDECAR_ROUTE_LEDGER_URL=https://ledger.shop.svc.cluster.local",
		},
		wantPorts: []string{"auth-inbound 8000/TCP", "auth-admin 9464/TCP"},
		wantVolumes: []string{
			"authsidecar-client-ca: configMap shop-ca ca.crt->ca.crt",
			"authsidecar-client-secret: secret payments-oauth-client client-secret->client-secret",
			"authsidecar-outbound-ca: configMap shop-ca ca.crt->ca.crt",
			csiVolume,
		},
		wantService:     443,
		wantServiceName: "https",
	},
	{
		name:        "a projected service-account token is the client assertion",
		valuesFile:  "../../charts/authsidecar/ci/client-assertion-values.yaml",
		wantObjects: []string{"Deployment/demo-authsidecar", "ServiceAccount/demo-authsidecar"},
		wantNative:  true,
		wantEnv: []string{
			"AUTHSIDECAR_ADMIN_LISTEN=:9464",
			shutdownDelay,
			"AUTHSIDECAR_OUTBOUND_LISTEN=127.0.0.1:4000",
			"AUTHSIDECAR_OUTBOUND_ROUTES=inventory-api,payments",
			"AUTHSIDECAR_OUTBOUND_TOKEN_URL=https://idp.example.com/oauth2/token",
			"AUTHSIDECAR_OUTBOUND_CLIENT_ID=orders",
			"AUTHSIDECAR_OUTBOUND_CLIENT_ASSERTION_FILE=/var/run/secrets/authsidecar/client-assertion/token",
			"AUTHSIDECAR_ROUTE_INVENTORY_API_URL=http://inventory.shop.svc.cluster.local:8080",
			"AUTHSIDECAR_ROUTE_INVENTORY_API_RESOURCE=https://inventory.shop.example.com",
			"AUTHSIDECAR_ROUTE_INVENTORY_API_SCOPES=inventory.read inventory.write",
			"AUTHSIDECAR_ROUTE_INVENTORY_API_LISTEN=127.0.0.1:4001",
			"AUTHSIDECAR_ROUTE_PAYMENTS_URL=http://payments.shop.svc.cluster.local",
			"AUTHSIDECAR_ROUTE_PAYMENTS_AUDIENCE=payments",
		},
		wantPorts: []string{"auth-admin 9464/TCP"},
		wantVolumes: []string{
			"authsidecar-client-assertion: projected serviceAccountToken audience=https://idp.example.com expirationSeconds=3600 path=token",
		},
	},
	{
		name:       "every structured value reaches its variable, on non-default ports",
		valuesFile: "testdata/all-variables-values.yaml",
		wantObjects: []string{
			"ConfigMap/demo-authsidecar-rules", "Deployment/demo-authsidecar", "Secret/demo-authsidecar",
			"Service/demo-authsidecar", "ServiceAccount/demo-authsidecar",
		},
		wantNative: true,
		wantEnv: []string{
			"AUTHSIDECAR_ADMIN_LISTEN=:9090",
			"AUTHSIDECAR_LOG_LEVEL=warn",
			"AUTHSIDECAR_LOG_FORMAT=text",
			"AUTHSIDECAR_ACCESS_LOG=true",
			"AUTHSIDECAR_SHUTDOWN_DELAY=3s",
			"AUTHSIDECAR_SHUTDOWN_GRACE=20s",
			"AUTHSIDECAR_BODY_IDLE_TIMEOUT=45s",
			"AUTHSIDECAR_ALLOW_INSECURE_HTTP=true",
			"AUTHSIDECAR_INBOUND_LISTEN=:8443",
			"AUTHSIDECAR_INBOUND_UPSTREAM=http://127.0.0.1:3001",
			"AUTHSIDECAR_INBOUND_UPSTREAM_TIMEOUT=2m",
			"AUTHSIDECAR_INBOUND_UPSTREAM_PROTOCOL=h2c",
			"AUTHSIDECAR_INBOUND_ISSUERS=https://idp.example.com/",
			"AUTHSIDECAR_INBOUND_JWKS_URL=https://idp.example.com/keys",
			"AUTHSIDECAR_INBOUND_AUDIENCES=payments,https://payments.example.com",
			"AUTHSIDECAR_INBOUND_ALGORITHMS=RS256,ES256",
			"AUTHSIDECAR_INBOUND_CLOCK_SKEW=10s",
			"AUTHSIDECAR_INBOUND_REQUIRED_SCOPES=payments:read,payments:write",
			"AUTHSIDECAR_INBOUND_ALLOWED_CLIENTS=orders,billing",
			"AUTHSIDECAR_INBOUND_PUBLIC_PATHS=/healthz,/docs/",
			"AUTHSIDECAR_INBOUND_FORWARD_TOKEN=true",
			"AUTHSIDECAR_INBOUND_REQUIRE_AT_JWT=true",
			"AUTHSIDECAR_INBOUND_ALLOW_ENCODED_SLASHES=true",
			// false is set, not left out: only null leaves a variable unset.
			"AUTHSIDECAR_INBOUND_CASE_INSENSITIVE_PATHS=false",
			"AUTHSIDECAR_INBOUND_RULES_FILE=/etc/authsidecar/rules/rules.yaml",
			"AUTHSIDECAR_INBOUND_TLS_CERT_FILE=/etc/authsidecar/inbound-tls/tls.crt",
			"AUTHSIDECAR_INBOUND_TLS_KEY_FILE=/etc/authsidecar/inbound-tls/tls.key",
			"AUTHSIDECAR_INBOUND_CLIENT_CA_FILE=/etc/authsidecar/client-ca/ca.crt",
			"AUTHSIDECAR_INBOUND_INTROSPECTION_CLIENT_ID=payments-rs",
			"AUTHSIDECAR_INBOUND_INTROSPECTION_AUTH_METHOD=client_secret_post",
			"AUTHSIDECAR_INBOUND_INTROSPECTION_CLIENT_SECRET_FILE=/etc/authsidecar/introspection/client-secret",
			"AUTHSIDECAR_INBOUND_INTROSPECTION_URL=https://idp.example.com/introspect",
			"AUTHSIDECAR_INBOUND_INTROSPECT=all",
			"AUTHSIDECAR_INBOUND_INTROSPECTION_CACHE_TTL=1m",
			"AUTHSIDECAR_OUTBOUND_LISTEN=0.0.0.0:4100",
			"AUTHSIDECAR_OUTBOUND_ALLOW_REMOTE=true",
			"AUTHSIDECAR_OUTBOUND_ROUTES=ledger-v2",
			"AUTHSIDECAR_OUTBOUND_TOKEN_URL=https://idp.example.com/token",
			"AUTHSIDECAR_OUTBOUND_CLIENT_ID=payments",
			fileClientSecret,
			"AUTHSIDECAR_OUTBOUND_AUTH_METHOD=private_key_jwt",
			"AUTHSIDECAR_OUTBOUND_READY_REQUIRES_TOKENS=true",
			"AUTHSIDECAR_OUTBOUND_PRIVATE_KEY_FILE=/etc/authsidecar/private-key/private-key.pem",
			"AUTHSIDECAR_OUTBOUND_PRIVATE_KEY_ID=key-2025",
			"AUTHSIDECAR_OUTBOUND_CLIENT_ASSERTION_FILE=/var/run/secrets/authsidecar/client-assertion/token",
			"AUTHSIDECAR_OUTBOUND_TLS_CA_FILE=/etc/authsidecar/outbound-ca/ca.crt",
			"AUTHSIDECAR_OUTBOUND_TLS_CERT_FILE=/etc/authsidecar/outbound-tls/tls.crt",
			"AUTHSIDECAR_OUTBOUND_TLS_KEY_FILE=/etc/authsidecar/outbound-tls/tls.key",
			"AUTHSIDECAR_ROUTE_LEDGER_V2_URL=https://ledger.example.com/api",
			"AUTHSIDECAR_ROUTE_LEDGER_V2_AUDIENCE=ledger",
			"AUTHSIDECAR_ROUTE_LEDGER_V2_RESOURCE=https://ledger.example.com",
			"AUTHSIDECAR_ROUTE_LEDGER_V2_SCOPES=ledger.read ledger.write",
			"AUTHSIDECAR_ROUTE_LEDGER_V2_LISTEN=127.0.0.1:4001",
			"AUTHSIDECAR_ROUTE_LEDGER_V2_TIMEOUT=10s",
			"AUTHSIDECAR_ROUTE_LEDGER_V2_PROTOCOL=http1",
			"OTEL_TRACES_EXPORTER=otlp",
			"OTEL_EXPORTER_OTLP_ENDPOINT=http://otel-collector.observability:4317",
			"OTEL_EXPORTER_OTLP_PROTOCOL=grpc",
			"OTEL_SERVICE_NAME=payments",
			"OTEL_TRACES_SAMPLER=parentbased_traceidratio",
			"OTEL_TRACES_SAMPLER_ARG=0.25",
			"OTEL_PROPAGATORS=tracecontext,baggage",
			"OTEL_RESOURCE_ATTRIBUTES=deployment.environment=prod,service.namespace=shop",
		},
		wantPorts: []string{"auth-inbound 8443/TCP", "auth-outbound 4100/TCP", "auth-admin 9090/TCP"},
		wantVolumes: []string{
			"authsidecar-rules: configMap demo-authsidecar-rules rules.yaml->rules.yaml",
			"authsidecar-inbound-tls: secret payments-tls tls.crt->tls.crt,tls.key->tls.key",
			"authsidecar-client-ca: secret clients-ca ca.pem->ca.crt",
			"authsidecar-introspection-secret: secret demo-authsidecar introspection-client-secret->client-secret",
			"authsidecar-client-secret: secret payments-oauth secret->client-secret",
			"authsidecar-private-key: secret payments-jwt-key key.pem->private-key.pem",
			"authsidecar-client-assertion: projected serviceAccountToken audience=https://idp.example.com/token expirationSeconds=600 path=token",
			"authsidecar-outbound-ca: configMap corp-trust bundle.pem->ca.crt",
			"authsidecar-outbound-tls: secret payments-client-tls tls.crt->tls.crt,tls.key->tls.key",
		},
		adminPort:       9090,
		inboundPort:     8443,
		wantService:     443,
		wantServiceName: "https",
	},
	{
		name:       "extraEnv reaches the sidecar after the chart's variables",
		valuesFile: "../../charts/authsidecar/ci/outbound-only-values.yaml",
		set: []string{
			"sidecar.extraEnv[0].name=AUTHSIDECAR_OUTBOUND_TOKEN_TIMEOUT",
			"sidecar.extraEnv[0].value=5s",
		},
		wantObjects: []string{"Deployment/demo-authsidecar", "ServiceAccount/demo-authsidecar"},
		wantNative:  true,
		wantEnv: []string{
			"AUTHSIDECAR_ADMIN_LISTEN=:9464",
			shutdownDelay,
			"AUTHSIDECAR_OUTBOUND_LISTEN=127.0.0.1:4000",
			"AUTHSIDECAR_OUTBOUND_ROUTES=payments",
			"AUTHSIDECAR_OUTBOUND_ISSUER=" + keycloak,
			"AUTHSIDECAR_OUTBOUND_CLIENT_ID=orders",
			fileClientSecret,
			"AUTHSIDECAR_ROUTE_PAYMENTS_URL=http://payments.shop.svc.cluster.local",
			"AUTHSIDECAR_ROUTE_PAYMENTS_AUDIENCE=payments",
			"AUTHSIDECAR_ROUTE_PAYMENTS_SCOPES=payments:write",
			"AUTHSIDECAR_OUTBOUND_TOKEN_TIMEOUT=5s",
		},
		wantPorts:   []string{"auth-admin 9464/TCP"},
		wantVolumes: []string{"authsidecar-client-secret: secret orders-oauth-client client-secret->client-secret"},
		extraEnv:    map[string]bool{"AUTHSIDECAR_OUTBOUND_TOKEN_TIMEOUT": true},
	},
}

func (rc renderCase) args() []string {
	args := valuesArgs(rc.valuesFile, rc.set)
	for _, v := range rc.apiVersions {
		args = append(args, "--api-versions", v)
	}
	return args
}

// prometheusOperator is what a cluster with the Prometheus Operator serves.
var prometheusOperator = []string{"monitoring.coreos.com/v1"}

func (rc renderCase) ports() (admin, inbound int) {
	admin, inbound = rc.adminPort, rc.inboundPort
	if admin == 0 {
		admin = 9464
	}
	if inbound == 0 {
		inbound = 8000
	}
	return admin, inbound
}

func TestChartLintsStrictly(t *testing.T) {
	for _, file := range append([]string{""}, ciValuesFiles(t)...) {
		name := "with default values"
		if file != "" {
			name = "with " + filepath.Base(file)
		}
		t.Run(name, func(t *testing.T) {
			if err := helmLint(t, chartDir, valuesArgs(file, nil)...); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// ciValuesFiles lists the chart's example values; each must have a case.
func ciValuesFiles(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(chartDir, "ci", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no values files in %s/ci: %v", chartDir, err)
	}
	return files
}

func TestEveryCIValuesFileHasARenderCase(t *testing.T) {
	covered := map[string]bool{}
	for _, rc := range renderCases {
		covered[filepath.Clean(rc.valuesFile)] = true
	}
	for _, f := range ciValuesFiles(t) {
		if !covered[filepath.Clean(f)] {
			t.Errorf("%s has no case in renderCases", f)
		}
	}
}

func TestRenderedSidecar(t *testing.T) {
	for _, rc := range renderCases {
		t.Run(rc.name, func(t *testing.T) {
			objs := render(t, chartDir, rc.args()...)
			diffLists(t, "objects", sorted(keys(objs)), rc.wantObjects)
			for _, o := range objs {
				if o.Namespace != "shop" {
					t.Errorf("%s is in namespace %q, want the release's %q", o.key(), o.Namespace, "shop")
				}
			}

			d := deployment(t, objs)
			spec := &d.Spec.Template.Spec
			checkPod(t, d)
			c, native := sidecarOf(t, spec, "authsidecar")
			if native != rc.wantNative {
				t.Errorf("native sidecar = %v, want %v", native, rc.wantNative)
			}
			admin, inbound := rc.ports()
			checkSidecar(t, spec, c, native, admin, rc.extraEnv)
			diffLists(t, "sidecar env", envList(c), rc.wantEnv)
			diffLists(t, "sidecar ports", portList(c), rc.wantPorts)
			diffLists(t, "pod volumes", volumeList(spec), rc.wantVolumes)
			if len(spec.Containers) == 0 || spec.Containers[0].Name != "app" {
				t.Errorf("first container is not the app: %v", spec.Containers)
			}
			if got := d.Spec.Template.Annotations["kubectl.kubernetes.io/default-container"]; got != "app" {
				t.Errorf("default-container annotation = %q, want %q", got, "app")
			}

			if rc.wantService == 0 {
				return
			}
			checkService(t, find[corev1.Service](t, objs, "Service", "demo-authsidecar"), d, rc.wantService, inbound, rc.wantServiceName)
		})
	}
}

// TestEverySpecVariableIsReachable: between them, the render cases set
// every variable SPEC.md names, except those that would carry a secret's
// value.
func TestEverySpecVariableIsReachable(t *testing.T) {
	set := map[string]bool{}
	for _, rc := range renderCases {
		for _, e := range rc.wantEnv {
			name, _, _ := strings.Cut(e, "=")
			set[name] = true
		}
	}
	for _, v := range specVariables {
		if !set[v] && !plainSecretVariables[v] {
			t.Errorf("no values set %s", v)
		}
	}
	for _, suffix := range routeVariableSuffixes {
		if !set["AUTHSIDECAR_ROUTE_LEDGER_V2"+suffix] {
			t.Errorf("no values set AUTHSIDECAR_ROUTE_<NAME>%s", suffix)
		}
	}
}

func TestInlineSecretIsOnlyInTheSecret(t *testing.T) {
	objs := render(t, chartDir, "-f", "../../charts/authsidecar/ci/plain-container-values.yaml")
	s := find[corev1.Secret](t, objs, "Secret", "demo-authsidecar")
	want := map[string][]byte{"client-secret": []byte("not-a-real-secret")}
	if !reflect.DeepEqual(s.Data, want) || s.Type != corev1.SecretTypeOpaque {
		t.Errorf("Secret type %q data %q, want Opaque %q", s.Type, s.Data, want)
	}
	for _, o := range objs {
		if o.Kind == "Secret" {
			continue
		}
		b, err := yaml.Marshal(o.Obj)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(b), "not-a-real-secret") {
			t.Errorf("%s holds the client secret's value", o.key())
		}
	}
}

func TestRulesConfigMap(t *testing.T) {
	objs := render(t, chartDir, "-f", "../../charts/authsidecar/ci/inbound-mtls-rules-values.yaml")
	cm := find[corev1.ConfigMap](t, objs, "ConfigMap", "demo-authsidecar-rules")
	var got any
	if err := yaml.Unmarshal([]byte(cm.Data["rules.yaml"]), &got); err != nil {
		t.Fatalf("rules.yaml is not YAML: %v", err)
	}
	var want any
	if err := yaml.Unmarshal([]byte(`
rules:
  - paths: ["/healthz", "/docs/**"]
    public: true
  - paths: ["/admin/**"]
    scopes: [admin]
    clients: [ops-console]
  - paths: ["/orders/*"]
    methods: [POST, PUT, DELETE]
    scopes: ["orders:write"]
`), &want); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("rules.yaml = %v, want %v", got, want)
	}
	if len(cm.Data) != 1 {
		t.Errorf("ConfigMap keys = %v, want rules.yaml only", cm.Data)
	}
	d := deployment(t, objs)
	if sum := d.Spec.Template.Annotations["checksum/rules"]; len(sum) != 64 {
		t.Errorf("checksum/rules annotation = %q, want a sha256 so that a rules change rolls the pods", sum)
	}
}

func TestMonitoring(t *testing.T) {
	t.Run("the PodMonitor scrapes the sidecar's admin port by name", func(t *testing.T) {
		objs := render(t, chartDir, "-f", "../../charts/authsidecar/ci/monitoring-dashboard-values.yaml", "--api-versions", "monitoring.coreos.com/v1")
		pm := find[PodMonitor](t, objs, "PodMonitor", "demo-authsidecar")
		d := deployment(t, objs)
		if !reflect.DeepEqual(pm.Spec.Selector.MatchLabels, d.Spec.Selector.MatchLabels) {
			t.Errorf("PodMonitor selector = %v, want the pods' %v", pm.Spec.Selector.MatchLabels, d.Spec.Selector.MatchLabels)
		}
		wantEP := []metricsEndpoint{{Port: "auth-admin", Path: "/metrics", Scheme: "http", Interval: "15s"}}
		if !reflect.DeepEqual(pm.Spec.PodMetricsEndpoints, wantEP) {
			t.Errorf("podMetricsEndpoints = %+v, want %+v", pm.Spec.PodMetricsEndpoints, wantEP)
		}
		if !reflect.DeepEqual(pm.Spec.NamespaceSelector.MatchNames, []string{"shop"}) {
			t.Errorf("namespaceSelector = %+v, want shop", pm.Spec.NamespaceSelector)
		}
		if pm.Labels["release"] != "kube-prometheus-stack" {
			t.Errorf("PodMonitor labels = %v, want release=kube-prometheus-stack", pm.Labels)
		}
		c, _ := sidecarOf(t, &d.Spec.Template.Spec, "authsidecar")
		if !hasPort(c, "auth-admin", 9464) {
			t.Errorf("sidecar has no port auth-admin 9464: %v", portList(c))
		}
	})
	t.Run("the ServiceMonitor selects the metrics Service, which targets the admin port", func(t *testing.T) {
		objs := render(t, chartDir, "-f", "../../charts/authsidecar/ci/servicemonitor-values.yaml", "--api-versions", "monitoring.coreos.com/v1")
		sm := find[ServiceMonitor](t, objs, "ServiceMonitor", "demo-authsidecar")
		svc := find[corev1.Service](t, objs, "Service", "demo-authsidecar-metrics")
		d := deployment(t, objs)
		for k, v := range sm.Spec.Selector.MatchLabels {
			if svc.Labels[k] != v {
				t.Errorf("ServiceMonitor selects %s=%s, the metrics Service has %q", k, v, svc.Labels[k])
			}
		}
		if !reflect.DeepEqual(svc.Spec.Selector, d.Spec.Selector.MatchLabels) {
			t.Errorf("metrics Service selector = %v, want the pods' %v", svc.Spec.Selector, d.Spec.Selector.MatchLabels)
		}
		wantPorts := []corev1.ServicePort{{Name: "auth-admin", Port: 9464, TargetPort: intstr.FromInt32(9464), Protocol: corev1.ProtocolTCP}}
		if !reflect.DeepEqual(svc.Spec.Ports, wantPorts) || svc.Spec.ClusterIP != corev1.ClusterIPNone {
			t.Errorf("metrics Service clusterIP %q ports %+v, want headless with %+v", svc.Spec.ClusterIP, svc.Spec.Ports, wantPorts)
		}
		wantEP := []metricsEndpoint{{Port: "auth-admin", Path: "/metrics", Scheme: "http", Interval: "30s", ScrapeTimeout: "10s"}}
		if !reflect.DeepEqual(sm.Spec.Endpoints, wantEP) {
			t.Errorf("endpoints = %+v, want %+v", sm.Spec.Endpoints, wantEP)
		}
	})
	t.Run("the dashboard ConfigMap carries the dashboard file for Grafana's sidecar", func(t *testing.T) {
		objs := render(t, chartDir, "-f", "../../charts/authsidecar/ci/monitoring-dashboard-values.yaml")
		cm := find[corev1.ConfigMap](t, objs, "ConfigMap", "demo-authsidecar-dashboard")
		if cm.Labels["grafana_dashboard"] != "1" {
			t.Errorf("labels = %v, want grafana_dashboard=1", cm.Labels)
		}
		if cm.Annotations["grafana_folder"] != "Security" {
			t.Errorf("annotations = %v, want grafana_folder=Security", cm.Annotations)
		}
		file, err := os.ReadFile(filepath.Join(chartDir, "dashboards", "authsidecar.json"))
		if err != nil {
			t.Fatal(err)
		}
		if cm.Data["authsidecar.json"] != strings.TrimSpace(string(file)) {
			t.Errorf("authsidecar.json in the ConfigMap differs from dashboards/authsidecar.json")
		}
	})
}

func hasPort(c corev1.Container, name string, port int32) bool {
	for _, p := range c.Ports {
		if p.Name == name && p.ContainerPort == port {
			return true
		}
	}
	return false
}

func TestNetworkPolicyOpensOnlyTheSidecarPorts(t *testing.T) {
	objs := render(t, chartDir, "-f", "../../charts/authsidecar/ci/inbound-only-values.yaml")
	np := find[networkingv1.NetworkPolicy](t, objs, "NetworkPolicy", "demo-authsidecar")
	d := deployment(t, objs)
	if !reflect.DeepEqual(np.Spec.PodSelector.MatchLabels, d.Spec.Selector.MatchLabels) {
		t.Errorf("podSelector = %v, want %v", np.Spec.PodSelector.MatchLabels, d.Spec.Selector.MatchLabels)
	}
	var ports []string
	for _, rule := range np.Spec.Ingress {
		for _, p := range rule.Ports {
			ports = append(ports, p.Port.String()+"/"+string(*p.Protocol))
		}
	}
	diffLists(t, "ingress ports", ports, []string{"8000/TCP", "9464/TCP"})
	if !reflect.DeepEqual(np.Spec.PolicyTypes, []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}) {
		t.Errorf("policyTypes = %v, want [Ingress]", np.Spec.PolicyTypes)
	}
	t.Run("extraIngress adds rules after the sidecar's", func(t *testing.T) {
		objs := render(t, chartDir, "-f", "../../charts/authsidecar/ci/inbound-only-values.yaml",
			"--set-json", `networkPolicy.extraIngress=[{"ports":[{"port":9100,"protocol":"TCP"}]}]`)
		np := find[networkingv1.NetworkPolicy](t, objs, "NetworkPolicy", "demo-authsidecar")
		var ports []string
		for _, rule := range np.Spec.Ingress {
			for _, p := range rule.Ports {
				ports = append(ports, p.Port.String())
			}
		}
		diffLists(t, "ingress ports", ports, []string{"8000", "9464", "9100"})
	})
}

func TestKubernetesVersion(t *testing.T) {
	t.Run("a native sidecar is refused before Kubernetes 1.29", func(t *testing.T) {
		_, err := helmTemplate(t, chartDir, "--kube-version", "v1.28.9")
		wantErr(t, err, "authsidecar: sidecar.native=true needs Kubernetes 1.29 or later (native sidecars), this cluster is v1.28.9: set sidecar.native=false")
	})
	t.Run("a plain container renders on Kubernetes 1.28", func(t *testing.T) {
		objs := render(t, chartDir, "--kube-version", "v1.28.9", "--set", "sidecar.native=false")
		c, native := sidecarOf(t, &deployment(t, objs).Spec.Template.Spec, "authsidecar")
		if native || c.RestartPolicy != nil {
			t.Errorf("native = %v, restartPolicy = %v; want a plain container", native, c.RestartPolicy)
		}
	})
}

func wantErr(t *testing.T, err error, want string) {
	t.Helper()
	if err == nil {
		t.Fatalf("rendered; want an error containing %q", want)
	}
	if !strings.Contains(err.Error(), want) {
		t.Fatalf("error:\n%v\nwant it to contain:\n%s", err, want)
	}
}

func TestBadValuesAreRefused(t *testing.T) {
	keycloakIssuer := "inbound.issuers[0]=" + keycloak
	outbound := []string{
		"outbound.issuer=" + keycloak, "outbound.clientId=orders", "outbound.existingSecret=s",
		"outbound.routes.payments.url=http://payments",
	}
	cases := []struct {
		name string
		set  []string
		want string
	}{
		{"a misspelt top-level key", []string{"inbnd.issuers[0]=x"}, "- at '': additional properties 'inbnd' not allowed"},
		{"a misspelt inbound key", []string{"inbound.audience[0]=x"}, "- at '/inbound': additional properties 'audience' not allowed"},
		{"a route name with capitals", append(outbound[:3:3], "outbound.routes.Payments.url=http://p"), "'Payments' does not match pattern '^[a-z0-9-]+$'"},
		{"a route without url", append(outbound[:3:3], "outbound.routes.payments.audience=p"), "- at '/outbound/routes/payments': missing property 'url'"},
		{"an unknown auth method", append(outbound, "outbound.authMethod=secret"), "- at '/outbound/authMethod': value must be one of '', 'client_secret_basic', 'client_secret_post', 'private_key_jwt', 'tls_client_auth'"},
		{"issuers without audiences", []string{keycloakIssuer},
			"authsidecar: inbound.audiences is required when inbound.issuers is set (AUTHSIDECAR_INBOUND_AUDIENCES)"},
		{"routes without a client id", []string{"outbound.issuer=" + keycloak, "outbound.routes.payments.url=http://p"},
			"authsidecar: outbound.clientId is required when outbound.routes is set (AUTHSIDECAR_OUTBOUND_CLIENT_ID)"},
		{"routes without a token endpoint", []string{"outbound.clientId=orders", "outbound.routes.payments.url=http://p"},
			"authsidecar: outbound.issuer or outbound.tokenUrl is required when outbound.routes is set"},
		{"both an issuer and a token URL", append(outbound, "outbound.tokenUrl=https://idp/token"),
			"authsidecar: set outbound.issuer or outbound.tokenUrl, not both"},
		{"an inline and an existing client secret", append(outbound, "outbound.clientSecret=x"),
			"authsidecar: set outbound.clientSecret or outbound.existingSecret, not both"},
		{"a client assertion without audience", append(outbound, "outbound.clientAssertion.enabled=true"),
			"authsidecar: outbound.clientAssertion.audience is required when outbound.clientAssertion.enabled is true"},
		{"a remote outbound listener without allowRemote", append(outbound, "outbound.listenHost=0.0.0.0"),
			`authsidecar: outbound.listenHost "0.0.0.0" is not loopback: set outbound.allowRemote=true to accept that anyone reaching it acts as this service`},
		{"TLS without a Secret", []string{keycloakIssuer, "inbound.audiences[0]=a", "inbound.tls.enabled=true"},
			"authsidecar: inbound.tls.secretName (or inbound.tls.csi) is required when inbound.tls.enabled is true"},
		{"mTLS without TLS", []string{keycloakIssuer, "inbound.audiences[0]=a", "inbound.tls.clientCA.enabled=true"},
			"authsidecar: inbound.tls.clientCA.enabled (mTLS) needs inbound.tls.enabled"},
		{"a JWKS URL with two issuers", []string{keycloakIssuer, "inbound.issuers[1]=https://b", "inbound.audiences[0]=a", "inbound.jwksUrl=https://k"},
			"authsidecar: inbound.jwksUrl works with one issuer only"},
		{"both monitors", []string{"monitoring.serviceMonitor.enabled=true", "monitoring.podMonitor.enabled=true"},
			"authsidecar: enable monitoring.serviceMonitor or monitoring.podMonitor, not both (each target would be scraped twice)"},
		{"a shutdown delay that is not a duration", []string{"sidecar.shutdownDelay=5sec"},
			"- at '/sidecar/shutdownDelay': '5sec' does not match pattern"},
		{"an unknown upstream protocol", []string{"inbound.upstreamProtocol=h2"},
			"- at '/inbound/upstreamProtocol': value must be one of '', 'auto', 'http1', 'h2c'"},
		{"an unknown route protocol", append(outbound, "outbound.routes.payments.protocol=grpc"),
			"- at '/outbound/routes/payments/protocol': value must be one of '', 'auto', 'http1', 'h2c'"},
		{"a route timeout that is not a duration", append(outbound, "outbound.routes.payments.timeout=soon"),
			"- at '/outbound/routes/payments/timeout': 'soon' does not match pattern"},
		{"an unknown introspection auth method", []string{"inbound.introspection.authMethod=private_key_jwt"},
			"- at '/inbound/introspection/authMethod': value must be one of '', 'client_secret_basic', 'client_secret_post', 'none'"},
		{"introspection without credentials but with a secret", []string{keycloakIssuer, "inbound.audiences[0]=a",
			"inbound.introspection.authMethod=none", "inbound.introspection.url=https://idp/introspect", "inbound.introspection.existingSecret=s"},
			"authsidecar: inbound.introspection.authMethod=none sends no client credentials: unset inbound.introspection.clientSecret and existingSecret"},
		{"a string where a switch belongs", []string{"inbound.requireAtJwt=yes"},
			"- at '/inbound/requireAtJwt': got string, want null or boolean"},
		{"a misspelt tracing key", []string{"tracing.endpoints=http://otel:4317"},
			"- at '/tracing': additional properties 'endpoints' not allowed"},
		{"an unknown OTLP protocol", []string{"tracing.protocol=http"},
			"- at '/tracing/protocol': value must be one of '', 'grpc', 'http/protobuf', 'http/json'"},
		{"a negative grace period", []string{"terminationGracePeriodSeconds=-1"},
			"- at '/terminationGracePeriodSeconds': minimum: got -1, want 0"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var args []string
			for _, s := range tc.set {
				args = append(args, "--set", s)
			}
			_, err := helmTemplate(t, chartDir, args...)
			wantErr(t, err, tc.want)
		})
	}
}

// TestNamedTemplateInAnotherChart renders testdata/consumer, a chart that
// depends on authsidecar and includes its container and volumes in its own
// pod spec, as the chart's README tells users to.
func TestNamedTemplateInAnotherChart(t *testing.T) {
	dir := t.TempDir()
	consumer := filepath.Join(dir, "shop-api")
	copyDir(t, "testdata/consumer", consumer)
	copyDir(t, chartDir, filepath.Join(consumer, "charts", "authsidecar"))
	if err := helmLint(t, consumer); err != nil {
		t.Fatal(err)
	}
	objs := render(t, consumer, "--api-versions", "monitoring.coreos.com/v1")
	diffLists(t, "objects", sorted(keys(objs)), []string{
		"Deployment/demo-shop-api", "NetworkPolicy/demo-shop-api", "PodMonitor/demo-authsidecar", "Secret/demo-authsidecar", "Service/demo-shop-api",
	})
	d := deployment(t, objs)
	spec := &d.Spec.Template.Spec
	c, native := sidecarOf(t, spec, "authsidecar")
	if !native {
		t.Errorf("the included sidecar is not native")
	}
	checkSidecar(t, spec, c, native, 9464, nil)
	// The parent is at 1.0.0; the sidecar's image is authsidecar's own
	// version, never the parent's appVersion.
	if want := "ghcr.io/authsidecar/authsidecar:" + chartAppVersion(t); c.Image != want {
		t.Errorf("included sidecar image = %q, want %q", c.Image, want)
	}
	diffLists(t, "pod volumes", volumeList(spec), []string{
		"authsidecar-client-secret: secret demo-authsidecar client-secret->client-secret",
	})
	if g := spec.TerminationGracePeriodSeconds; g == nil || *g != 30 {
		t.Errorf("terminationGracePeriodSeconds = %v, want 30 from authsidecar.terminationGracePeriodSeconds", g)
	}
	if v, _ := envValue(c, "AUTHSIDECAR_SHUTDOWN_DELAY"); v != "5s" {
		t.Errorf("AUTHSIDECAR_SHUTDOWN_DELAY = %q, want the chart's 5s", v)
	}
	if v, _ := envValue(c, "AUTHSIDECAR_OUTBOUND_CLIENT_SECRET_FILE"); v != "/etc/authsidecar/client-secret/client-secret" {
		t.Errorf("AUTHSIDECAR_OUTBOUND_CLIENT_SECRET_FILE = %q", v)
	}
	pm := find[PodMonitor](t, objs, "PodMonitor", "demo-authsidecar")
	if !reflect.DeepEqual(pm.Spec.Selector.MatchLabels, map[string]string{"app": "shop-api"}) {
		t.Errorf("PodMonitor selector = %v, want app=shop-api", pm.Spec.Selector.MatchLabels)
	}
	checkService(t, find[corev1.Service](t, objs, "Service", "demo-shop-api"), d, 80, 8000, "http")

	// The sidecar's NetworkPolicy, included by the parent for its own pods.
	np := find[networkingv1.NetworkPolicy](t, objs, "NetworkPolicy", "demo-shop-api")
	tcp := corev1.ProtocolTCP
	port := func(p int32) []networkingv1.NetworkPolicyPort {
		return []networkingv1.NetworkPolicyPort{{Port: ptr(intstr.FromInt32(p)), Protocol: &tcp}}
	}
	wantSpec := networkingv1.NetworkPolicySpec{
		PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "shop-api"}},
		PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
		Ingress: []networkingv1.NetworkPolicyIngressRule{
			{Ports: port(8000)},
			{Ports: port(9464), From: []networkingv1.NetworkPolicyPeer{{NamespaceSelector: &metav1.LabelSelector{
				MatchLabels: map[string]string{"kubernetes.io/metadata.name": "monitoring"},
			}}}},
		},
	}
	if !reflect.DeepEqual(np.Spec, wantSpec) {
		t.Errorf("NetworkPolicy spec = %+v, want %+v", np.Spec, wantSpec)
	}
	if np.Namespace != "shop" || np.Labels["helm.sh/chart"] != "shop-api-1.0.0" {
		t.Errorf("NetworkPolicy namespace %q labels %v, want the parent chart's, in shop", np.Namespace, np.Labels)
	}
	if !reflect.DeepEqual(np.Spec.PodSelector.MatchLabels, d.Spec.Selector.MatchLabels) {
		t.Errorf("NetworkPolicy selects %v, the parent's pods are %v", np.Spec.PodSelector.MatchLabels, d.Spec.Selector.MatchLabels)
	}
}

// copyDir copies the regular files under src to dst.
func copyDir(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(p string, e os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		if e.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(target, b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestStrictDecodingCatchesUnknownFields(t *testing.T) {
	cases := []struct{ name, doc, want string }{
		{"a misspelt field", "apiVersion: v1\nkind: Service\nmetadata:\n  name: s\nspec:\n  prots: []\n", `json: unknown field "prots"`},
		{"a field twice", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\ndata: {}\ndata: {}\n", `key "data" already set in map`},
		{"a kind the chart does not render", "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n", `unexpected kind "Pod"`},
		{"a wrong apiVersion", "apiVersion: apps/v1beta1\nkind: Deployment\nmetadata:\n  name: d\n", `Deployment/d: apiVersion "apps/v1beta1", want "apps/v1"`},
		{"a PodMonitor field the local type lacks", "apiVersion: monitoring.coreos.com/v1\nkind: PodMonitor\nmetadata:\n  name: p\nspec:\n  jobLabel: x\n", `json: unknown field "jobLabel"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := decodeManifests("---\n# Source: x\n" + tc.doc)
			wantErr(t, err, tc.want)
		})
	}
}

// TestNotes renders NOTES.txt, which helm template skips, for the default
// values and every ci/ file: a copy of the chart renders it into a
// ConfigMap, so a mistake in it fails here rather than at helm install.
func TestNotes(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "authsidecar")
	copyDir(t, chartDir, dir)
	notes, err := os.ReadFile(filepath.Join(chartDir, "templates", "NOTES.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "notes.txt"), notes, 0o644); err != nil {
		t.Fatal(err)
	}
	notesTemplate := "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: notes\ndata:\n  notes: {{ tpl (.Files.Get \"notes.txt\") . | toJson }}\n"
	if err := os.WriteFile(filepath.Join(dir, "templates", "zz-notes.yaml"), []byte(notesTemplate), 0o644); err != nil {
		t.Fatal(err)
	}
	want := map[string][]string{
		"": {
			"authsidecar (ghcr.io/authsidecar/authsidecar:0.1.0) runs beside app in shop/demo-authsidecar\nas a native sidecar (init container, restartPolicy: Always).",
			"WARNING: neither inbound.issuers nor outbound.routes is set.",
		},
		"plain-container-values.yaml": {
			"as a plain second container.",
			"Service demo-authsidecar:80 -> sidecar :8000 -> app 127.0.0.1:8080",
			"http://127.0.0.1:4000/ledger/...  ->  https://ledger.example.com",
		},
		"monitoring-dashboard-values.yaml": {
			`Grafana dashboard: ConfigMap shop/demo-authsidecar-dashboard (label grafana_dashboard: "1").`,
		},
	}
	for _, file := range append([]string{""}, ciValuesFiles(t)...) {
		name := "with default values"
		if file != "" {
			name = "with " + filepath.Base(file)
		}
		t.Run(name, func(t *testing.T) {
			objs := render(t, dir, append(valuesArgs(file, nil), "--show-only", "templates/zz-notes.yaml", "--api-versions", "monitoring.coreos.com/v1")...)
			got := find[corev1.ConfigMap](t, objs, "ConfigMap", "notes").Data["notes"]
			if file != "" && strings.Contains(got, "WARNING") {
				t.Errorf("NOTES warn for a working configuration:\n%s", got)
			}
			for _, w := range want[filepath.Base(file)] {
				if !strings.Contains(got, w) {
					t.Errorf("NOTES lack %q:\n%s", w, got)
				}
			}
		})
	}
	t.Run("monitoring on a cluster without the Prometheus Operator warns", func(t *testing.T) {
		objs := render(t, dir, "-f", "../../charts/authsidecar/ci/monitoring-dashboard-values.yaml", "--show-only", "templates/zz-notes.yaml")
		got := find[corev1.ConfigMap](t, objs, "ConfigMap", "notes").Data["notes"]
		want := "WARNING: monitoring is enabled, but this cluster does not serve\nmonitoring.coreos.com/v1 (the Prometheus Operator's CRDs): no PodMonitor,\nServiceMonitor or PrometheusRule was rendered."
		if !strings.Contains(got, want) {
			t.Errorf("NOTES lack %q:\n%s", want, got)
		}
	})
}

// chartAppVersion is appVersion in the chart's Chart.yaml.
func chartAppVersion(t *testing.T) string {
	t.Helper()
	var meta struct {
		Version    string `json:"version"`
		AppVersion string `json:"appVersion"`
	}
	readYAML(t, filepath.Join(chartDir, "Chart.yaml"), &meta)
	if meta.AppVersion == "" {
		t.Fatal("Chart.yaml has no appVersion")
	}
	return meta.AppVersion
}

// TestImageTagIsTheChartsAppVersion: the tag "authsidecar.appVersion"
// writes down must follow Chart.yaml, in the chart's own Deployment as in a
// parent chart's pods (TestNamedTemplateInAnotherChart).
func TestImageTagIsTheChartsAppVersion(t *testing.T) {
	want := "ghcr.io/authsidecar/authsidecar:" + chartAppVersion(t)
	c, _ := sidecarOf(t, &deployment(t, render(t, chartDir)).Spec.Template.Spec, "authsidecar")
	if c.Image != want {
		t.Errorf("sidecar image = %q, want %q: keep authsidecar.appVersion in _helpers.tpl equal to Chart.yaml's appVersion", c.Image, want)
	}
	t.Run("a tag or a digest in the values wins", func(t *testing.T) {
		for set, want := range map[string]string{
			"sidecar.image.tag=0.0.9":                                 "ghcr.io/authsidecar/authsidecar:0.0.9",
			"sidecar.image.digest=sha256:" + strings.Repeat("ab", 32): "ghcr.io/authsidecar/authsidecar@sha256:" + strings.Repeat("ab", 32),
		} {
			c, _ := sidecarOf(t, &deployment(t, render(t, chartDir, "--set", set)).Spec.Template.Spec, "authsidecar")
			if c.Image != want {
				t.Errorf("with %s: image = %q, want %q", set, c.Image, want)
			}
		}
	})
}
