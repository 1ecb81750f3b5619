#!/usr/bin/env bash
# Fails if the generated API files are not what hack/update-codegen.sh makes
# from the current types. Leaves the tree as it found it, also when
# interrupted.
set -euo pipefail
cd "$(dirname "$0")/.."
generated=$(ls api/storage/v1/zz_generated.deepcopy.go config/crd/*.yaml)
snapshot=$(mktemp -d)
tar -cf "$snapshot/before.tar" $generated
restore() {
  rm -f config/crd/*.yaml
  tar -xf "$snapshot/before.tar"
  rm -rf "$snapshot"
}
trap restore EXIT
hack/update-codegen.sh
status=0
for f in $(ls api/storage/v1/zz_generated.deepcopy.go config/crd/*.yaml); do
  if ! tar -xOf "$snapshot/before.tar" "$f" 2>/dev/null | cmp -s - "$f"; then
    echo "generated file out of date: $f (run hack/update-codegen.sh and commit)"; status=1
  fi
done
for f in $generated; do
  [ -e "$f" ] || { echo "generated file should not exist: $f (run hack/update-codegen.sh)"; status=1; }
done
exit $status
