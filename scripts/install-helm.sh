#!/usr/bin/env bash
# Installs helm for the chart tests, idempotently.
#
# If a helm is already on PATH (or in $(go env GOPATH)/bin) it is used as is.
# Otherwise helm is built from source with `go install`: the only thing this
# needs is a Go toolchain and the Go module proxy, so it works on a fresh
# machine where binary downloads are not possible. The build takes a few
# minutes on two cores.
#
# Usage: bash scripts/install-helm.sh
# Env:   HELM_VERSION (default v3.22.0)
# Prints the absolute path of helm on its last line of stdout.
set -euo pipefail

HELM_VERSION="${HELM_VERSION:-v3.22.0}"

if ! command -v go >/dev/null 2>&1; then
	echo "install-helm: go is not on PATH; install Go first" >&2
	exit 1
fi

gobin="$(go env GOBIN)"
if [ -z "$gobin" ]; then
	gobin="$(go env GOPATH)/bin"
fi

helm_path=""
if command -v helm >/dev/null 2>&1; then
	helm_path="$(command -v helm)"
elif [ -x "$gobin/helm" ]; then
	helm_path="$gobin/helm"
fi

if [ -n "$helm_path" ]; then
	echo "install-helm: using existing helm ($("$helm_path" version --short 2>/dev/null || echo unknown version))" >&2
else
	echo "install-helm: building helm $HELM_VERSION with go install (a few minutes)..." >&2
	start=$(date +%s)
	# Helm's release builds stamp its version and the Kubernetes version that
	# `helm template` and `helm lint` assume (.Capabilities.KubeVersion) with
	# -ldflags; a bare `go install` would leave them at v3.x and v1.20.0.
	# Take the Kubernetes minor version from helm's own client-go, as its
	# Makefile does.
	gomod="$(cd / && GOFLAGS= go mod download -json "helm.sh/helm/v3@${HELM_VERSION}" |
		sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')"
	k8s_minor="$(sed -n 's/^[[:space:]]*k8s.io\/client-go v0\.\([0-9]*\)\..*/\1/p' "$gomod")"
	if [ -z "$k8s_minor" ]; then
		echo "install-helm: cannot read the client-go version from $gomod" >&2
		exit 1
	fi
	ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=${HELM_VERSION}"
	for pkg in pkg/chartutil pkg/lint/rules; do
		ldflags="$ldflags -X helm.sh/helm/v3/$pkg.k8sVersionMajor=1 -X helm.sh/helm/v3/$pkg.k8sVersionMinor=$k8s_minor"
	done
	# CGO off: a static binary, no C toolchain needed.
	(cd / && CGO_ENABLED=0 GOFLAGS= GOBIN="$gobin" go install -trimpath -ldflags "$ldflags" \
		"helm.sh/helm/v3/cmd/helm@${HELM_VERSION}")
	helm_path="$gobin/helm"
	echo "install-helm: built in $(($(date +%s) - start))s: $("$helm_path" version --short 2>/dev/null || echo unknown version)" >&2
	case ":$PATH:" in
	*":$gobin:"*) ;;
	*) echo "install-helm: note: $gobin is not on PATH; add it, or set HELM=$helm_path" >&2 ;;
	esac
fi

echo "$helm_path"
