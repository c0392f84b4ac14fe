#!/usr/bin/env bash
# The decode matvec sweep in one device run (docs/benchmarks.md, "Decode matvec settings"):
# TestMatVecConfigsBitIdentical (every setting of the grid gives the default's bits on Q4/Q2/Q8/BF16
# weights with row and chunk tails), then BenchmarkMatVecSweep (device time and GB/s per setting and
# shape, the best per shape, the best overall). Both run in one process, so the grid's modules are
# compiled once, in parallel. Expects cuda.test built on the dev machine in $BIN (default gpu/):
# go test -c -o gpu/cuda.test ./runtime/backend/cuda. About a minute on an H200 with an empty kernel
# cache (~/.cache/fmoe/cuda), most of it NVRTC.
set -euo pipefail
cd "$(dirname "$0")/.."
B=$(realpath "${BIN:-gpu}")
unset FMOE_CUDA_MV # the sweep sets every configuration itself
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
FMOE_CUDA_REQUIRE=1 "$B/cuda.test" -test.run '^TestMatVecConfigsBitIdentical$' -test.bench '^BenchmarkMatVecSweep$' \
  -test.benchtime 1x -test.timeout 9m -test.v 2>&1 | grep -vE '^=== (RUN|PAUSE|CONT)'
