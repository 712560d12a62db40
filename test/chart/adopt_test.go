package chart

import (
	"os"
	"reflect"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
)

const (
	kustomizeComponent = "../../deploy/kustomize/authsidecar"
	kustomizeExample   = "../../deploy/kustomize/example"
	admissionDir       = "../../deploy/admission"
)

// kustomizeBuild runs kustomize (the library kubectl and the kustomize
// binary are built on) on dir and decodes the output strictly.
func kustomizeBuild(t *testing.T, dir string) []object {
	t.Helper()
	m, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		t.Fatalf("kustomize build %s: %v", dir, err)
	}
	out, err := m.AsYaml()
	if err != nil {
		t.Fatal(err)
	}
	objs, err := decodeManifests(string(out))
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

// wantInjected is the container the component and the admission policy
// add, with the given ConfigMap for its settings.
func wantInjected(configMap string) []string {
	return []string{
		"image ghcr.io/authsidecar/authsidecar:0.1.0",
		"restartPolicy Always",
		"ports auth-inbound 8000/TCP, auth-admin 9464/TCP",
		"env AUTHSIDECAR_SHUTDOWN_DELAY=5s",
		"envFrom configMap " + configMap,
		"mounts authsidecar-secret at /etc/authsidecar/secret ro=true",
	}
}

func describeInjected(c corev1.Container) []string {
	var envFrom []string
	for _, e := range c.EnvFrom {
		switch {
		case e.ConfigMapRef != nil:
			envFrom = append(envFrom, "configMap "+e.ConfigMapRef.Name)
		case e.SecretRef != nil:
			envFrom = append(envFrom, "secret "+e.SecretRef.Name)
		}
	}
	restart := "none"
	if c.RestartPolicy != nil {
		restart = string(*c.RestartPolicy)
	}
	return []string{
		"image " + c.Image,
		"restartPolicy " + restart,
		"ports " + strings.Join(portList(c), ", "),
		"env " + strings.Join(envList(c), ", "),
		"envFrom " + strings.Join(envFrom, ", "),
		"mounts " + strings.Join(mountList(c), ", "),
	}
}

// checkSameAsChart: what the chart fixes for every sidecar (probes,
// resources, security context, pull policy) is the same in the manifests
// that do not come from the chart.
func checkSameAsChart(t *testing.T, c corev1.Container) {
	t.Helper()
	chart, _ := sidecarOf(t, &deployment(t, render(t, chartDir)).Spec.Template.Spec, "authsidecar")
	for what, pair := range map[string][2]any{
		"image":           {c.Image, chart.Image},
		"imagePullPolicy": {c.ImagePullPolicy, chart.ImagePullPolicy},
		"startupProbe":    {c.StartupProbe, chart.StartupProbe},
		"livenessProbe":   {c.LivenessProbe, chart.LivenessProbe},
		"readinessProbe":  {c.ReadinessProbe, chart.ReadinessProbe},
		"resources":       {c.Resources, chart.Resources},
		"securityContext": {c.SecurityContext, chart.SecurityContext},
	} {
		if !reflect.DeepEqual(pair[0], pair[1]) {
			t.Errorf("%s = %+v, the chart renders %+v", what, pair[0], pair[1])
		}
	}
}

func TestKustomizeComponent(t *testing.T) {
	objs := kustomizeBuild(t, kustomizeExample)
	// The generated ConfigMap's name carries a hash of its content, so
	// that a change of settings rolls the pods.
	var cmName string
	for _, o := range objs {
		if o.Kind == "ConfigMap" && strings.HasPrefix(o.Name, "authsidecar-") && len(o.Name) == len("authsidecar-")+10 {
			cmName = o.Name
		}
	}
	diffLists(t, "objects", sorted(keys(objs)), []string{"ConfigMap/" + cmName, "Deployment/payments", "Service/payments"})
	cm := find[corev1.ConfigMap](t, objs, "ConfigMap", cmName)
	wantData := map[string]string{
		"AUTHSIDECAR_INBOUND_ISSUERS":      keycloak,
		"AUTHSIDECAR_INBOUND_AUDIENCES":    "payments",
		"AUTHSIDECAR_INBOUND_PUBLIC_PATHS": "/healthz",
	}
	if !reflect.DeepEqual(cm.Data, wantData) {
		t.Errorf("ConfigMap data = %v, want %v", cm.Data, wantData)
	}
	for k := range cm.Data {
		if !isSpecVariable(k) {
			t.Errorf("the ConfigMap sets %s, which SPEC.md does not name", k)
		}
	}

	d := find[appsv1.Deployment](t, objs, "Deployment", "payments")
	spec := &d.Spec.Template.Spec
	checkPod(t, d)
	c, native := sidecarOf(t, spec, "authsidecar")
	if !native {
		t.Errorf("the sidecar is not native")
	}
	checkSidecar(t, spec, c, native, 9464, nil)
	checkSameAsChart(t, c)
	// The generated ConfigMap's hashed name reaches the container.
	diffLists(t, "injected sidecar", describeInjected(c), wantInjected(cmName))
	diffLists(t, "pod volumes", volumeList(spec), []string{"authsidecar-secret: secret authsidecar "})
	if v := spec.Volumes[0].Secret; v.Optional == nil || !*v.Optional {
		t.Errorf("the Secret volume is not optional: %+v", v)
	}
	if len(spec.Containers) != 1 || spec.Containers[0].Name != "app" || len(spec.InitContainers) != 1 {
		t.Errorf("containers %d, init containers %d; want the app and the sidecar only", len(spec.Containers), len(spec.InitContainers))
	}
	if g := spec.TerminationGracePeriodSeconds; g != nil {
		t.Errorf("terminationGracePeriodSeconds = %d, want it left to the Deployment (Kubernetes' 30s)", *g)
	}

	svc := find[corev1.Service](t, objs, "Service", "payments")
	want := []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8000), Protocol: corev1.ProtocolTCP}}
	if !reflect.DeepEqual(svc.Spec.Ports, want) {
		t.Errorf("Service ports = %+v, want %+v: the Service must target the sidecar", svc.Spec.Ports, want)
	}
}

func TestKustomizeComponentLeavesUnlabelledObjectsAlone(t *testing.T) {
	dir := t.TempDir()
	copyDir(t, kustomizeExample, dir)
	copyDir(t, kustomizeComponent, dir+"/component")
	b := readFile(t, dir+"/payments.yaml")
	writeFile(t, dir+"/payments.yaml", strings.ReplaceAll(b, "    authsidecar.io/inject: \"true\"\n", ""))
	writeFile(t, dir+"/kustomization.yaml", strings.Replace(readFile(t, dir+"/kustomization.yaml"), "../authsidecar", "component", 1))
	objs := kustomizeBuild(t, dir)
	d := find[appsv1.Deployment](t, objs, "Deployment", "payments")
	if n := len(d.Spec.Template.Spec.InitContainers); n != 0 {
		t.Errorf("an unlabelled Deployment got %d init containers", n)
	}
	if got := find[corev1.Service](t, objs, "Service", "payments").Spec.Ports[0].TargetPort; got != intstr.FromInt32(8080) {
		t.Errorf("an unlabelled Service's targetPort became %v", got.String())
	}
}

func readFile(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func writeFile(t *testing.T, name, content string) {
	t.Helper()
	if err := os.WriteFile(name, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}
