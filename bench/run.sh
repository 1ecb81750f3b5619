#!/usr/bin/env bash
# Measures build time, binary size, start times and idle memory.
# Usage: make bench   (BENCH_COLD=1 also times a cold build in an empty cache)
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== binary"
ls -l bin/sublet | awk '{printf "size: %.1f MiB (%d bytes, stripped)\n", $5/1048576, $5}'

echo "== warm rebuild (one package changed)"
trap 'rm -f internal/cli/zz_bench_change.go' EXIT
echo "package cli; const benchChange = \"$(date +%s%N)\"" > internal/cli/zz_bench_change.go
start=$(date +%s.%N); make -s build; echo "warm build: $(echo "$(date +%s.%N) - $start" | bc) s"

if [ "${BENCH_COLD:-0}" = 1 ]; then
  echo "== cold build (empty GOCACHE)"
  cache=$(mktemp -d)
  start=$(date +%s.%N); GOCACHE=$cache make -s build BIN="$cache/sublet"; echo "cold build: $(echo "$(date +%s.%N) - $start" | bc) s"
  rm -rf "$cache"
fi

echo "== start times and memory"
{
  go test -run '^$' -bench 'Start' -benchtime "${BENCH_TIME:-5x}" -timeout 30m ./bench/
  go test -run '^$' -bench 'Memory|PodSync|VirtualClusterCreate|Wake' -benchtime 1x -timeout 30m ./bench/
} | tee bench/last-run.txt
