#!/usr/bin/env bash
# Copies the generated CRDs (config/crd, from hack/update-codegen.sh) and the
# admission policies (config/policy) into the platform chart, which installs
# them. Run after make codegen or an edit of config/policy.
set -euo pipefail
cd "$(dirname "$0")/.."
rm -f charts/sublet/files/crds/*.yaml charts/sublet/files/policy/*.yaml
mkdir -p charts/sublet/files/policy
cp config/crd/*.yaml charts/sublet/files/crds/
cp config/policy/*.yaml charts/sublet/files/policy/
