package chart

import (
	"context"
	"fmt"
	"path/filepath"
	"reflect"
	"testing"

	celgo "github.com/google/cel-go/cel"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apiserver/pkg/admission"
	plugincel "k8s.io/apiserver/pkg/admission/plugin/cel"
	"k8s.io/apiserver/pkg/admission/plugin/policy/mutating/patch"
	"k8s.io/apiserver/pkg/admission/plugin/webhook/matchconditions"
	celconfig "k8s.io/apiserver/pkg/apis/cel"
	"k8s.io/apiserver/pkg/cel/environment"
)

func init() {
	apiTypes["MutatingAdmissionPolicy"] = apiType{"admissionregistration.k8s.io/v1", func() any { return &admissionregistrationv1.MutatingAdmissionPolicy{} }}
	apiTypes["MutatingAdmissionPolicyBinding"] = apiType{"admissionregistration.k8s.io/v1", func() any { return &admissionregistrationv1.MutatingAdmissionPolicyBinding{} }}
}

// admissionObjects builds deploy/admission (kubectl apply -k) and decodes
// it strictly.
func admissionObjects(t *testing.T) []object {
	t.Helper()
	return kustomizeBuild(t, admissionDir)
}

// policyVariable is a policy's variable as the compiler takes it (the API
// server's validating.Variable, without importing the validating plugin and
// the half of the API server it pulls in).
type policyVariable struct{ name, expression string }

func (v policyVariable) GetName() string       { return v.name }
func (v policyVariable) GetExpression() string { return v.expression }
func (v policyVariable) ReturnTypes() []*celgo.Type {
	return []*celgo.Type{celgo.AnyType, celgo.DynType}
}

// policyEvaluator is the policy compiled as the API server compiles it
// (k8s.io/apiserver's mutating admission policy plugin, compilation.go).
type policyEvaluator struct {
	compiler *plugincel.CompositedCompiler
	matcher  matchconditions.Matcher
	patchers []patch.Patcher
}

func compilePolicy(t *testing.T, p *admissionregistrationv1.MutatingAdmissionPolicy) policyEvaluator {
	t.Helper()
	opts := plugincel.OptionalVariableDeclarations{HasParams: p.Spec.ParamKind != nil, HasAuthorizer: true}
	compiler, err := plugincel.NewCompositedCompiler(environment.MustBaseEnvSet(environment.DefaultCompatibilityVersion()))
	if err != nil {
		t.Fatal(err)
	}
	var vars []plugincel.NamedExpressionAccessor
	for _, v := range p.Spec.Variables {
		vars = append(vars, policyVariable{v.Name, v.Expression})
	}
	for _, v := range vars {
		if r := compiler.CompileAndStoreVariable(v, opts, environment.StoredExpressions); r.Error != nil {
			t.Fatalf("variable %s does not compile: %v", v.GetName(), r.Error)
		}
	}
	var conds []plugincel.ExpressionAccessor
	for i := range p.Spec.MatchConditions {
		conds = append(conds, (*matchconditions.MatchCondition)(&p.Spec.MatchConditions[i]))
	}
	ev := policyEvaluator{compiler: compiler}
	ev.matcher = matchconditions.NewMatcher(compiler.CompileCondition(conds, opts, environment.StoredExpressions), p.Spec.FailurePolicy, "policy", "mutate", p.Name)
	patchOpts := opts
	patchOpts.HasPatchTypes = true
	for _, m := range p.Spec.Mutations {
		if m.PatchType != admissionregistrationv1.PatchTypeJSONPatch || m.JSONPatch == nil {
			t.Fatalf("mutation %+v: the test runs JSONPatch mutations only", m)
		}
		e := compiler.CompileMutatingEvaluator(&patch.JSONPatchCondition{Expression: m.JSONPatch.Expression}, patchOpts, environment.StoredExpressions)
		if errs := e.CompilationErrors(); len(errs) > 0 {
			t.Fatalf("mutation does not compile: %v", errs)
		}
		ev.patchers = append(ev.patchers, patch.NewJSONPatcher(e))
	}
	return ev
}

// admit runs the policy on the creation of pod: (mutated pod, matched).
func (ev policyEvaluator) admit(t *testing.T, pod *corev1.Pod, params *corev1.ConfigMap) (*corev1.Pod, bool) {
	t.Helper()
	scheme := runtime.NewScheme()
	if err := corev1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	gvk := schema.GroupVersionKind{Version: "v1", Kind: "Pod"}
	gvr := schema.GroupVersionResource{Version: "v1", Resource: "pods"}
	ctx := ev.compiler.CreateContext(context.Background())
	var obj runtime.Object = pod.DeepCopy()
	vattrs := func(o runtime.Object) *admission.VersionedAttributes {
		attrs := admission.NewAttributesRecord(o, nil, gvk, pod.Namespace, pod.Name, gvr, "", admission.Create, &metav1.CreateOptions{}, false, nil)
		return &admission.VersionedAttributes{Attributes: attrs, VersionedKind: gvk, VersionedObject: admission.NewLazyObject(o), VersionedOldObject: admission.NewLazyObject(nil)}
	}
	res := ev.matcher.Match(ctx, vattrs(obj), params, nil)
	if res.Error != nil {
		t.Fatalf("match conditions: %v", res.Error)
	}
	if !res.Matches {
		return pod, false
	}
	for _, p := range ev.patchers {
		r := patch.Request{
			MatchedResource:     gvr,
			VersionedAttributes: vattrs(obj),
			ObjectInterfaces:    admission.NewObjectInterfacesFromScheme(scheme),
			OptionalVariables:   plugincel.OptionalVariableBindings{VersionedParams: params},
		}
		var err error
		if obj, err = p.Patch(ctx, r, celconfig.RuntimeCELCostBudget); err != nil {
			t.Fatalf("mutation: %v", err)
		}
	}
	out, ok := obj.(*corev1.Pod)
	if !ok {
		t.Fatalf("mutation returned a %T", obj)
	}
	return out, true
}

// podOf is the Pod a Deployment's ReplicaSet creates.
func podOf(d *appsv1.Deployment) *corev1.Pod {
	return &corev1.Pod{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{Name: d.Name + "-7d9f-x2x", Namespace: "shop", Labels: d.Spec.Template.Labels, Annotations: d.Spec.Template.Annotations},
		Spec:       *d.Spec.Template.Spec.DeepCopy(),
	}
}

func TestMutatingAdmissionPolicy(t *testing.T) {
	objs := admissionObjects(t)
	diffLists(t, "objects", sorted(keys(objs)), []string{
		"ConfigMap/authsidecar-injector", "MutatingAdmissionPolicy/authsidecar-injector",
		"MutatingAdmissionPolicyBinding/authsidecar-injector", "Namespace/authsidecar-system",
	})
	policy := find[admissionregistrationv1.MutatingAdmissionPolicy](t, objs, "MutatingAdmissionPolicy", "authsidecar-injector")
	binding := find[admissionregistrationv1.MutatingAdmissionPolicyBinding](t, objs, "MutatingAdmissionPolicyBinding", "authsidecar-injector")
	params := find[corev1.ConfigMap](t, objs, "ConfigMap", "authsidecar-injector")

	t.Run("it matches Pod creations labelled authsidecar.io/inject, with ConfigMap parameters", func(t *testing.T) {
		s := policy.Spec
		if !reflect.DeepEqual(s.ParamKind, &admissionregistrationv1.ParamKind{APIVersion: "v1", Kind: "ConfigMap"}) {
			t.Errorf("paramKind = %+v", s.ParamKind)
		}
		wantRules := []admissionregistrationv1.NamedRuleWithOperations{{RuleWithOperations: admissionregistrationv1.RuleWithOperations{
			Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create},
			Rule:       admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"}},
		}}}
		if s.MatchConstraints == nil || !reflect.DeepEqual(s.MatchConstraints.ResourceRules, wantRules) {
			t.Fatalf("matchConstraints = %+v, want %+v", s.MatchConstraints, wantRules)
		}
		if !reflect.DeepEqual(s.MatchConstraints.ObjectSelector, &metav1.LabelSelector{MatchLabels: map[string]string{"authsidecar.io/inject": "true"}}) {
			t.Errorf("objectSelector = %+v", s.MatchConstraints.ObjectSelector)
		}
		if s.MatchConstraints.NamespaceSelector != nil || s.MatchConstraints.ExcludeResourceRules != nil {
			t.Errorf("matchConstraints limit more than the label: %+v", s.MatchConstraints)
		}
		if s.FailurePolicy == nil || *s.FailurePolicy != admissionregistrationv1.Fail {
			t.Errorf("failurePolicy = %v, want Fail: a labelled pod must not start without its sidecar", s.FailurePolicy)
		}
		wantRef := &admissionregistrationv1.ParamRef{Name: "authsidecar-injector", Namespace: "authsidecar-system",
			ParameterNotFoundAction: ptr(admissionregistrationv1.DenyAction)}
		if binding.Spec.PolicyName != policy.Name || !reflect.DeepEqual(binding.Spec.ParamRef, wantRef) {
			t.Errorf("binding policy %q paramRef %+v, want %q and %+v", binding.Spec.PolicyName, binding.Spec.ParamRef, policy.Name, wantRef)
		}
		if params.Namespace != wantRef.Namespace || params.Data["image"] != "ghcr.io/authsidecar/authsidecar:"+chartAppVersion(t) {
			t.Errorf("params %s/%s data %v", params.Namespace, params.Name, params.Data)
		}
	})

	ev := compilePolicy(t, policy)
	// The payments Deployment of the Kustomize example, labelled on its pod
	// template instead of using the component.
	d := examplePayments(t)
	d.Spec.Template.Labels["authsidecar.io/inject"] = "true"
	selector, err := metav1.LabelSelectorAsSelector(policy.Spec.MatchConstraints.ObjectSelector)
	if err != nil {
		t.Fatal(err)
	}

	t.Run("a labelled Deployment's pods get the sidecar", func(t *testing.T) {
		pod := podOf(d)
		if !selector.Matches(labels.Set(pod.Labels)) {
			t.Fatalf("the objectSelector does not select the pod's labels %v", pod.Labels)
		}
		got, matched := ev.admit(t, pod, params)
		if !matched {
			t.Fatal("the match conditions skipped a pod without the sidecar")
		}
		spec := &got.Spec
		c, native := sidecarOf(t, spec, "authsidecar")
		checkSidecar(t, spec, c, native, 9464, nil)
		checkSameAsChart(t, c)
		diffLists(t, "injected sidecar", describeInjected(c), wantInjected("authsidecar"))
		diffLists(t, "pod volumes", volumeList(spec), []string{"authsidecar-secret: secret authsidecar "})
		if v := spec.Volumes[0].Secret; v.Optional == nil || !*v.Optional {
			t.Errorf("the Secret volume is not optional: %+v", v)
		}
		if !reflect.DeepEqual(spec.Containers, d.Spec.Template.Spec.Containers) {
			t.Errorf("the app's containers changed")
		}
	})
	t.Run("the annotation names the pod's ConfigMap and Secret; other init containers come after", func(t *testing.T) {
		pod := podOf(d)
		pod.Annotations = map[string]string{"authsidecar.io/config": "payments-authsidecar"}
		pod.Spec.InitContainers = []corev1.Container{{Name: "migrate", Image: "migrate:1"}}
		pod.Spec.Volumes = []corev1.Volume{{Name: "cache", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}}
		got, _ := ev.admit(t, pod, params)
		var names []string
		for _, c := range got.Spec.InitContainers {
			names = append(names, c.Name)
		}
		diffLists(t, "init containers", names, []string{"authsidecar", "migrate"})
		c, _ := sidecarOf(t, &got.Spec, "authsidecar")
		diffLists(t, "injected sidecar", describeInjected(c), wantInjected("payments-authsidecar"))
		diffLists(t, "pod volumes", volumeList(&got.Spec), []string{"cache: other", "authsidecar-secret: secret payments-authsidecar "})
	})
	t.Run("the parameters choose the image and the delay", func(t *testing.T) {
		p := params.DeepCopy()
		p.Data = map[string]string{"image": "registry.example.com/authsidecar@sha256:" + fmt.Sprintf("%064d", 0)}
		got, _ := ev.admit(t, podOf(d), p)
		c, _ := sidecarOf(t, &got.Spec, "authsidecar")
		if c.Image != p.Data["image"] || !reflect.DeepEqual(envList(c), []string{"AUTHSIDECAR_SHUTDOWN_DELAY=5s"}) {
			t.Errorf("image %q env %v, want the parameters' image and the default delay", c.Image, envList(c))
		}
	})
	t.Run("a pod that has the sidecar already is left alone", func(t *testing.T) {
		once, _ := ev.admit(t, podOf(d), params)
		twice, matched := ev.admit(t, once, params)
		if matched || !reflect.DeepEqual(twice, once) {
			t.Errorf("a second pass changed the pod (matched %v)", matched)
		}
	})
	t.Run("an unlabelled pod is not selected", func(t *testing.T) {
		pod := podOf(d)
		delete(pod.Labels, "authsidecar.io/inject")
		if selector.Matches(labels.Set(pod.Labels)) {
			t.Errorf("the objectSelector selects %v", pod.Labels)
		}
	})
}

// examplePayments is the payments Deployment of the Kustomize example as
// its user wrote it, before any component.
func examplePayments(t *testing.T) *appsv1.Deployment {
	t.Helper()
	objs, err := decodeManifests(readFile(t, filepath.Join(kustomizeExample, "payments.yaml")))
	if err != nil {
		t.Fatal(err)
	}
	d := find[appsv1.Deployment](t, objs, "Deployment", "payments")
	d.Namespace = "shop"
	return d
}
