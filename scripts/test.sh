#!/usr/bin/env bash
# Runs every test of authsidecar. It installs what the tests need by itself
# (the identity provider's npm packages, helm), so it passes on a fresh
# machine with only Go, Node.js and npm.
set -euo pipefail
cd "$(dirname "$0")/.."
export GOFLAGS="${GOFLAGS:-} -mod=readonly"

step() { printf '\n== %s\n' "$*"; }

step "gofmt"
unformatted=$(gofmt -l $(git ls-files '*.go'))
if [ -n "$unformatted" ]; then
  echo "gofmt would change:"; echo "$unformatted"; exit 1
fi

step "go vet"
go vet ./...

step "identity provider and Express app for end-to-end tests (npm ci)"
if ! command -v node >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  apt-get update -qq && apt-get install -y -qq nodejs npm >/dev/null
fi
(cd e2e/idp && npm ci --no-audit --no-fund --loglevel=error)
(cd e2e/express && npm ci --no-audit --no-fund --loglevel=error)

step "go test -race ./..."
go test -race -count=1 -timeout 10m ./...

step "helm chart"
helm=$(bash scripts/install-helm.sh | tail -n 1)
(cd test/chart && HELM="$helm" go test -count=1 -timeout 10m ./...)

printf '\nAll tests passed.\n'
