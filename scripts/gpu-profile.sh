#!/usr/bin/env bash
# Where a decode step's GPU time goes: BenchmarkTieredDecode with FMOE_CUDA_PROFILE=1 (the CUDA
# backend times every launch and upload between two events, graphs off, and prints the device time
# per kernel over the timed tokens beside the wall time) on the synthetic 397B that
# scripts/gpu-bench.sh left (BENCH_KEEP=1). Binaries in BIN (model.test); the model in M.
# PROFILE_TIERS (default "resident-dev tiered-preload") and PROFILE_KS (default "4 10") pick the rows;
# PROFILE_TOKENS the timed tokens (default 100). Device time summed over kernels below the wall
# time means the host or the syncs hold the GPU back; kernels that are a large share name what to speed up.
set -u
cd "$(dirname "$0")/.."
B=$(realpath "${BIN:-gpu}")
M=${M:-/tmp/fmoe-gpu-bench/packed}
[ -f "$M/model_weights.json" ] || { echo "gpu-profile: no model at $M (run scripts/gpu-bench.sh with BENCH_KEEP=1 first)"; exit 1; }
for k in ${PROFILE_KS:-4 10}; do
  for t in ${PROFILE_TIERS:-resident-dev tiered-preload}; do
    (cd runtime/model && FMOE_CUDA_PROFILE=1 FMOE_TEST_BACKEND=cuda FMOE_BENCH_MODEL=$M FMOE_BENCH_TIERS=$t \
      FMOE_BENCH_WARM=${PROFILE_WARM:-100} FMOE_BENCH_TOKENS=${PROFILE_TOKENS:-100} \
      "$B/model.test" -test.run '^$' -test.bench "TieredDecode/k=$k/$t\$" -test.benchtime 1x 2>&1 |
      grep -vE '^(goos|goarch|pkg|cpu|PASS|ok)' | cut -c1-200 | head -40)
  done
done
