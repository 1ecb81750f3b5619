#!/usr/bin/env bash
# Fails if the vcluster chart's RBAC template is not what
# hack/update-rbac.sh makes from the syncer's kinds table. Changes nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
out=charts/vcluster/templates/rbac.yaml
tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT
go run ./hack/rbacgen >"$tmp"
if ! cmp -s "$tmp" "$out"; then
  echo "generated file out of date: $out (run hack/update-rbac.sh and commit)"
  diff -u "$out" "$tmp" || true
  exit 1
fi
