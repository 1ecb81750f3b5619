#!/usr/bin/env bash
# Regenerates the API's deepcopy functions and CRD manifests from the types
# in api/ with controller-gen. Run after changing api/; CI runs
# hack/verify-codegen.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
CONTROLLER_GEN_VERSION=v0.23.0
controller_gen() { go run "sigs.k8s.io/controller-tools/cmd/controller-gen@${CONTROLLER_GEN_VERSION}" "$@"; }
controller_gen object paths=./api/...
rm -f config/crd/*.yaml
controller_gen crd paths=./api/... output:crd:artifacts:config=config/crd
