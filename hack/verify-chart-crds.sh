#!/usr/bin/env bash
# Fails if the platform chart's CRDs are not config/crd's.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! diff -r config/crd charts/sublet/files/crds -x '*.go' >/dev/null; then
  diff -r config/crd charts/sublet/files/crds -x '*.go' | head -20
  echo 'charts/sublet/files/crds differs from config/crd (run hack/update-chart-crds.sh and commit)'
  exit 1
fi
