// Package chart tests the Helm chart in charts/authsidecar: it renders the
// chart with helm for the default values and every example values file,
// decodes each manifest strictly into its Kubernetes API type, and checks
// what the sidecar gets (environment, files, probes, ports, security
// context). It also checks that the Grafana dashboard queries only metric
// families the sidecar exports.
//
// It is a module of its own so that the main module does not depend on the
// Kubernetes API packages. Run it with:
//
//	bash scripts/install-helm.sh   # once
//	cd test/chart && go test ./...
//
// helm is found through $HELM, then PATH, then $(go env GOPATH)/bin. Without
// helm the chart tests skip, except under CI=true, where they fail.
package chart
