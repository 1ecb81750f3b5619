#!/usr/bin/env bash
# Copies the generated CRDs (config/crd, from hack/update-codegen.sh) into
# the platform chart, which installs them. Run after make codegen.
set -euo pipefail
cd "$(dirname "$0")/.."
rm -f charts/sublet/files/crds/*.yaml
cp config/crd/*.yaml charts/sublet/files/crds/
