#!/usr/bin/env bash
# The CUDA backend's benchmark, one device run (issue 6): on a synthetic Qwen3.5-397B-A17B pack of
# BENCH_LAYERS layers (default 4: three GatedDeltaNet layers and one full-attention layer),
#  (a) the 4-bit matvec's bandwidth beside a device-to-device copy, and host-to-device bandwidth
#      (pinned and pageable), from the CUDA package's benchmarks;
#  (b) decode per layer at K=4 and K=10, cold / warm / direct, with --backend cuda, beside the
#      floor for this run: K x expert bytes per layer over the measured pread and host-to-device
#      bandwidths (scripts/bench-decode.sh does the decode part);
#  (c) tok/s extrapolated to 60 layers, with the seed's 4.28 ms/layer beside it;
#  (d) GPU memory held (nvidia-smi, sampled during the decode runs) and host peak RSS.
# Binaries come prebuilt from the dev machine in $BIN (fmoe-pack, fmoe-run, cuda.test, model.test).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-gpu}
export BENCH_DIR=${BENCH_DIR:-/tmp/fmoe-gpu-bench} BENCH_LAYERS=${BENCH_LAYERS:-4} BENCH_REPEAT=${BENCH_REPEAT:-2}
mkdir -p "$BENCH_DIR"
nvidia-smi --query-gpu=name,memory.total,driver_version,pcie.link.gen.current,pcie.link.width.current --format=csv,noheader
echo "## (a) kernels and transfers (go test -bench in runtime/backend/cuda)"
FMOE_CUDA_REQUIRE=1 "$BIN/cuda.test" -test.run '^$' -test.bench 'MatVecQ4|CopyDtoD|H2D|ExpertPipeline' -test.benchtime 200x 2>&1 | grep -E '^Benchmark|GB/s' || true
nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 200 > "$BENCH_DIR/gpumem" &
smi=$!
BIN=$BIN MODEL_TEST=$BIN/model.test BENCH_BACKEND=cuda scripts/bench-decode.sh
kill $smi 2>/dev/null || true
echo
echo "GPU memory used during the decode runs: peak $(sort -n "$BENCH_DIR/gpumem" | tail -1) MiB (whole card, sampled every 200 ms; idle $(sort -n "$BENCH_DIR/gpumem" | head -1) MiB)"
echo "Floor per layer = K x 7,077,888 B / pread GB/s (section a of the decode table) + K x 7,077,888 B / pinned H2D GB/s."
