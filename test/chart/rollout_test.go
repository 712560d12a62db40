package chart

import (
	"reflect"
	"testing"

	corev1 "k8s.io/api/core/v1"
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
