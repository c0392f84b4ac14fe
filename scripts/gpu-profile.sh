#!/usr/bin/env bash
# Where a decode step's GPU time goes: Nsight Systems over BenchmarkTieredDecode (one tier, default
# resident-dev, K=10) on the synthetic 397B that scripts/gpu-bench.sh left (BENCH_KEEP=1), printing
# the kernels' summed times and the CUDA API's. Binaries in BIN (model.test); the model in M.
# PROFILE_TIER and PROFILE_K pick the row; PROFILE_TOKENS the timed tokens (default 100).
set -u
cd "$(dirname "$0")/.."
B=$(realpath "${BIN:-gpu}")
M=${M:-/tmp/fmoe-gpu-bench/packed}
command -v nsys >/dev/null || { echo "gpu-profile: no nsys on this machine"; exit 0; }
[ -f "$M/model_weights.json" ] || { echo "gpu-profile: no model at $M (run scripts/gpu-bench.sh with BENCH_KEEP=1 first)"; exit 1; }
out=${OUT:-/tmp}/profile
(cd runtime/model && FMOE_TEST_BACKEND=cuda FMOE_BENCH_MODEL=$M FMOE_BENCH_TIERS=${PROFILE_TIER:-resident-dev} \
  FMOE_BENCH_WARM=50 FMOE_BENCH_TOKENS=${PROFILE_TOKENS:-100} \
  nsys profile -t cuda -o "$out" --force-overwrite true "$B/model.test" -test.run '^$' \
  -test.bench "TieredDecode/k=${PROFILE_K:-10}/" -test.benchtime 1x 2>&1 | grep -E '^Benchmark|FAIL|Error' )
for r in cuda_gpu_kern_sum cuda_api_sum; do
  echo "## $r (time %, total ns, calls, avg ns, name)"
  nsys stats -q -r $r -f csv "$out.nsys-rep" 2>/dev/null | cut -d, -f1-4,9 | cut -c1-160 | head -28
done
