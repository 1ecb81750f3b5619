#!/usr/bin/env bash
# Fails if the platform chart's CRDs and admission policies are not
# config/crd's and config/policy's.
set -euo pipefail
cd "$(dirname "$0")/.."
for d in crd:crds policy:policy; do
  src=config/${d%%:*} dst=charts/sublet/files/${d##*:}
  if ! diff -r "$src" "$dst" -x '*.go' >/dev/null; then
    diff -r "$src" "$dst" -x '*.go' | head -20
    echo "$dst differs from $src (run hack/update-chart-crds.sh and commit)"
    exit 1
  fi
done
