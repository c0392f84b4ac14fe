#!/usr/bin/env bash
# GPU acceptance in one device run: the backend conformance suite on the GPU and every tiny
# golden case (Qwen3.5, then the other families of testdata/arch) through
# `fmoe-verify golden --backend cuda`. Expects binaries built on the dev
# machine: bin/ (make build) and gpu/cuda.test (go test -c -o gpu/cuda.test ./runtime/backend/cuda).
set -euo pipefail
cd "$(dirname "$0")/.."
B=${BIN:-bin}
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
echo "== conformance suite on the GPU"
FMOE_CUDA_REQUIRE=1 gpu/cuda.test -test.run 'Conformance|MatMulShapes|BindPaths' 2>&1 | tail -3
echo "== golden cases, --backend cuda"
$B/fmoe-pack convert -q --in testdata/tiny/hf --out "$T/hf" --bits 16 >/dev/null
$B/fmoe-pack convert -q --in testdata/tiny/hf-vl --out "$T/hf-vl" --bits 16 >/dev/null
$B/fmoe-pack convert -q --in testdata/tiny/mlx-4bit --out "$T/mlx" >/dev/null
fail=0
check() { # model golden [k]
  local k=()
  [ -n "${3:-}" ] && k=(--k "$3")
  echo "-- $1 vs $2 ${k[*]}"
  $B/fmoe-verify golden --backend cuda --model "$T/$1" --golden "testdata/tiny/golden/$2.safetensors" "${k[@]}" || fail=1
}
for m in hf hf-vl; do
  check "$m" bf16
  check "$m" bf16-long
  check "$m" bf16-k2 2
done
check mlx mlx4
echo "== other families (testdata/arch), --backend cuda"
for f in qwen3_moe glm4_moe; do
  $B/fmoe-pack convert -q --in "testdata/arch/$f/hf" --out "$T/$f" --bits 16 >/dev/null 2>&1
  for g in bf16 bf16-long bf16-k2; do
    k=()
    [ "$g" = bf16-k2 ] && k=(--k 2)
    echo "-- $f vs $g ${k[*]}"
    $B/fmoe-verify golden --backend cuda --model "$T/$f" --golden "testdata/arch/$f/golden/$g.safetensors" "${k[@]}" || fail=1
  done
done
exit $fail
