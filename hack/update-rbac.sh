#!/usr/bin/env bash
# Regenerates the vcluster chart's RBAC template from the syncer's kinds
# table (internal/syncer/kinds). Run after changing the table; CI runs
# hack/verify-rbac.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
out=charts/vcluster/templates/rbac.yaml
tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT
go run ./hack/rbacgen >"$tmp"
mv "$tmp" "$out"
trap - EXIT
