// Package chart tests the Helm chart in charts/authsidecar: it renders the
// chart with helm for the default values and every example values file,
// decodes each manifest strictly into its Kubernetes API type, and checks
// what the sidecar gets (environment, files, probes, ports, security
// context, shutdown delay and grace period), the PodDisruptionBudget, the
// monitors and PrometheusRule (every alert expression parsed with
// Prometheus' PromQL parser and checked against the metrics SPEC lists), and
// a consumer chart that includes the named templates. It also checks that
// the Grafana dashboard queries only metric families the sidecar exports.
//
// The other ways to deploy the sidecar are tested here too: the plain
// manifests of examples/kubernetes, the Kustomize component in
// deploy/kustomize (built with the kustomize library, krusty), and the
// MutatingAdmissionPolicy in deploy/admission, whose CEL mutations run
// through the API server's own admission code (k8s.io/apiserver) against
// the Kustomize example's pods.
//
// It is a module of its own so that the main module does not depend on the
// Kubernetes, kustomize and Prometheus packages. Run it with:
//
//	bash scripts/install-helm.sh   # once
//	cd test/chart && go test ./...
//
// helm is found through $HELM, then PATH, then $(go env GOPATH)/bin. Without
// helm the chart tests skip (the kustomize and admission ones too: they
// compare their sidecar with the chart's), except under CI=true, where they
// fail.
package chart
