package chart

import (
	"reflect"
	"testing"

	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// TestRollouts checks what keeps a rollout from dropping requests: the
// sidecar's shutdown delay, a termination grace period that covers the
// delay and the drain, and the lifecycle hooks the values pass through.
func TestRollouts(t *testing.T) {
	cases := []struct {
		name      string
		set       []string
		wantDelay string // "" for not set
		wantGrace int64
	}{
		{"by default the sidecar waits 5s and the pod keeps Kubernetes' 30s", nil, "5s", 30},
		{"an empty delay leaves the variable unset", []string{"sidecar.shutdownDelay="}, "", 30},
		{"a long drain lengthens the grace period to delay + grace + 5s, rounded up",
			[]string{"sidecar.shutdownDelay=500ms", "sidecar.shutdownGrace=1m30s"}, "500ms", 96},
		{"hours and minutes add up", []string{"sidecar.shutdownDelay=1m", "sidecar.shutdownGrace=1h0m5s"}, "1m", 3670},
		{"a grace period of the user's is kept", []string{"terminationGracePeriodSeconds=45"}, "5s", 45},
		{"a grace period exactly covering delay and grace is kept", []string{"terminationGracePeriodSeconds=20"}, "5s", 20},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			objs := render(t, chartDir, valuesArgs("", tc.set)...)
			spec := &deployment(t, objs).Spec.Template.Spec
			c, _ := sidecarOf(t, spec, "authsidecar")
			got, ok := envValue(c, "AUTHSIDECAR_SHUTDOWN_DELAY")
			if got != tc.wantDelay || ok != (tc.wantDelay != "") {
				t.Errorf("AUTHSIDECAR_SHUTDOWN_DELAY = %q (set %v), want %q", got, ok, tc.wantDelay)
			}
			if spec.TerminationGracePeriodSeconds == nil || *spec.TerminationGracePeriodSeconds != tc.wantGrace {
				t.Errorf("terminationGracePeriodSeconds = %v, want %d", spec.TerminationGracePeriodSeconds, tc.wantGrace)
			}
		})
	}

	t.Run("a grace period shorter than delay plus grace is refused", func(t *testing.T) {
		_, err := helmTemplate(t, chartDir, "--set", "terminationGracePeriodSeconds=19")
		wantErr(t, err, "authsidecar: terminationGracePeriodSeconds 19 is shorter than sidecar.shutdownDelay + sidecar.shutdownGrace (20s): the sidecar would be killed before it drains; raise it, or leave it null to have it computed")
	})

	t.Run("lifecycle hooks reach the sidecar and the app", func(t *testing.T) {
		objs := render(t, chartDir,
			"--set", "sidecar.lifecycle.preStop.sleep.seconds=2",
			"--set", "app.lifecycle.preStop.sleep.seconds=5")
		spec := &deployment(t, objs).Spec.Template.Spec
		c, _ := sidecarOf(t, spec, "authsidecar")
		if want := sleepHook(2); !reflect.DeepEqual(c.Lifecycle, want) {
			t.Errorf("sidecar lifecycle = %+v, want %+v", c.Lifecycle, want)
		}
		if want := sleepHook(5); !reflect.DeepEqual(spec.Containers[0].Lifecycle, want) {
			t.Errorf("app lifecycle = %+v, want %+v", spec.Containers[0].Lifecycle, want)
		}
	})
	t.Run("no lifecycle by default", func(t *testing.T) {
		spec := &deployment(t, render(t, chartDir)).Spec.Template.Spec
		c, _ := sidecarOf(t, spec, "authsidecar")
		if c.Lifecycle != nil || spec.Containers[0].Lifecycle != nil {
			t.Errorf("lifecycle: sidecar %+v, app %+v; want none", c.Lifecycle, spec.Containers[0].Lifecycle)
		}
	})
}

func sleepHook(seconds int64) *corev1.Lifecycle {
	return &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{Sleep: &corev1.SleepAction{Seconds: seconds}}}
}

func TestPodDisruptionBudget(t *testing.T) {
	one, two, half := intstr.FromInt32(1), intstr.FromInt32(2), intstr.FromString("50%")
	alwaysAllow := policyv1.AlwaysAllow
	cases := []struct {
		name string
		set  []string
		want policyv1.PodDisruptionBudgetSpec // without the selector
	}{
		{"with neither bound, one pod at a time", nil, policyv1.PodDisruptionBudgetSpec{MaxUnavailable: &one}},
		{"minAvailable as a percentage", []string{"podDisruptionBudget.minAvailable=50%"}, policyv1.PodDisruptionBudgetSpec{MinAvailable: &half}},
		{"maxUnavailable and the eviction policy for unhealthy pods",
			[]string{"podDisruptionBudget.maxUnavailable=2", "podDisruptionBudget.unhealthyPodEvictionPolicy=AlwaysAllow"},
			policyv1.PodDisruptionBudgetSpec{MaxUnavailable: &two, UnhealthyPodEvictionPolicy: &alwaysAllow}},
		{"minAvailable zero is kept, not taken for unset", []string{"podDisruptionBudget.minAvailable=0"},
			policyv1.PodDisruptionBudgetSpec{MinAvailable: ptr(intstr.FromInt32(0))}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			objs := render(t, chartDir, valuesArgs("", append([]string{"podDisruptionBudget.enabled=true"}, tc.set...))...)
			pdb := find[policyv1.PodDisruptionBudget](t, objs, "PodDisruptionBudget", "demo-authsidecar")
			d := deployment(t, objs)
			if pdb.Spec.Selector == nil || !reflect.DeepEqual(pdb.Spec.Selector.MatchLabels, d.Spec.Selector.MatchLabels) {
				t.Errorf("selector = %v, want the Deployment's %v", pdb.Spec.Selector, d.Spec.Selector.MatchLabels)
			}
			got := pdb.Spec
			got.Selector = nil
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("spec = %+v, want %+v", got, tc.want)
			}
		})
	}
	t.Run("off by default and without the chart's Deployment", func(t *testing.T) {
		for _, set := range [][]string{nil, {"podDisruptionBudget.enabled=true", "deployment.enabled=false"}} {
			for _, o := range render(t, chartDir, valuesArgs("", set)...) {
				if o.Kind == "PodDisruptionBudget" {
					t.Errorf("with %v: rendered %s", set, o.key())
				}
			}
		}
	})
	for _, tc := range []struct {
		name string
		set  []string
		want string
	}{
		{"both bounds are refused", []string{"podDisruptionBudget.minAvailable=1", "podDisruptionBudget.maxUnavailable=1"},
			"authsidecar: set podDisruptionBudget.minAvailable or podDisruptionBudget.maxUnavailable, not both"},
		{"a bound that is neither a number nor a percentage is refused", []string{"podDisruptionBudget.minAvailable=half"},
			"- at '/podDisruptionBudget/minAvailable': 'half' does not match pattern '^[0-9]+%$'"},
		{"a negative bound is refused", []string{"podDisruptionBudget.minAvailable=-1"},
			"- at '/podDisruptionBudget/minAvailable': minimum: got -1, want 0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := helmTemplate(t, chartDir, valuesArgs("", append([]string{"podDisruptionBudget.enabled=true"}, tc.set...))...)
			wantErr(t, err, tc.want)
		})
	}
}
