#!/usr/bin/env bash
# GPU acceptance in one device run: the backend conformance suite and the CUDA package's own tests
# (expert cache eviction, batched matvecs, the tensor-core matmul, memory pressure, bind paths, layer
# graphs, the fused combine, device routing and the indexed experts), runtime/model's golden tests
# on CUDA with the GPU tier on (prefill with per-layer checks, generate, decode = prefill, each golden
# case twice in one process with the default tier, a forty-expert tier and a host tier, a long context
# growing the KV cache nine times with the collector off, every golden case with a CPU share of the
# misses beside the link as fmoe-run --cpu-experts runs it), and every tiny golden case (Qwen3.5, then
# the other families of testdata/arch) through `fmoe-verify golden --backend cuda`. Expects binaries
# built on the dev machine in $BIN (default gpu/): fmoe-pack, fmoe-verify (go build -o gpu/ ./cmd/...),
# cuda.test and model.test (go test -c -o gpu/cuda.test ./runtime/backend/cuda;
# go test -c -o gpu/model.test ./runtime/model).
set -euo pipefail
cd "$(dirname "$0")/.."
B=$(realpath "${BIN:-gpu}")
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
fail=0
# cuda_tests REGEX: the CUDA package's tests matching REGEX, in a process of their own. set -e
# would end the script at a failing pipeline (pipefail), before the model's goldens: the failure is
# counted instead, and every stage still runs.
cuda_tests() {
  set +e
  FMOE_CUDA_REQUIRE=1 "$B/cuda.test" -test.run "$1" 2>&1 | grep -E -- '--- FAIL|^(FAIL|ok|PASS)|_test.go:[0-9]+:' | tail -30
  local rc=${PIPESTATUS[0]}
  set -e
  [ "$rc" = 0 ] || fail=1
}
echo "== CUDA package: conformance, cache eviction, memory pressure, bind paths"
cuda_tests 'Conformance|TensorCores|MatMulShapes|BindPaths|ReadStaged|ExpertCache|MatVecBatch|MemoryPressure|Policy|Simulate|GraphReplay|CombineToken|Indexed|KernelProfile|Timeline|ExpertSpan|RegisterRows|Prefetch|MatMulMMV|NormStage$'
echo "== weights read by the kernels straight from pinned host memory (zero-copy), in a process of its own"
# A kernel fault there would leave the context unusable for every later test of its process.
cuda_tests 'MatMulFromHost'
echo "== runtime/model on CUDA (GPU tier on)"
# The whole log goes to a file; shown: each test's verdict, the tier lines, and every failure's messages.
(cd runtime/model && FMOE_TEST_BACKEND=cuda "$B/model.test" -test.run 'Golden|DecodeEqualsPrefill|LongContext|HostTier|GraphDecode|MLA|Split|SetPlacement|DeviceRouted|DevicePartial|DeviceTable|ExclusiveTiers|FusedRows|Preload|GroupedExperts|AsyncCheckGolden|CPUMissesOnDevice|ForwardGreedy|GenerateStops' -test.v > "$T/model.log" 2>&1) || fail=1
grep -E '^ *--- (PASS|FAIL|SKIP)|tier.*(hit|served)' "$T/model.log" | tail -80 || true
# With -test.v a failure's messages come before its verdict: the failed tests run again, quietly,
# where Go prints each verdict with its messages.
failed=$(grep -oE '^--- FAIL: [A-Za-z0-9_]+' "$T/model.log" | awk '{print $3}' | sort -u | paste -sd'|' || true)
if [ -n "$failed" ]; then
  (cd runtime/model && FMOE_TEST_BACKEND=cuda "$B/model.test" -test.run "^($failed)\$" 2>&1 | head -80)
fi
grep -E 'DeviceRouted|DevicePartial|ExclusiveTiers|host path' "$T/model.log" | head -20 || true
[ -n "${OUT:-}" ] && cp "$T/model.log" "$OUT/model.log"
tail -1 "$T/model.log"
echo "== runtime/model's prefetches on CUDA on a copy stream of their own (FMOE_CUDA_PF_STREAM=1)"
(cd runtime/model && FMOE_CUDA_PF_STREAM=1 FMOE_TEST_BACKEND=cuda "$B/model.test" -test.run 'DeviceTable|Prefetch|DevicePartial' 2>&1 | tail -3) || fail=1
echo "== runtime/model golden prefill on CUDA with every matmul on the tensor cores (FMOE_CUDA_MMA_MIN=1)"
(cd runtime/model && FMOE_CUDA_MMA_MIN=1 FMOE_TEST_BACKEND=cuda "$B/model.test" -test.run 'GoldenPrefill|DecodeEqualsPrefill' 2>&1 | tail -3) || fail=1
echo "== runtime/model's prompt experts on CUDA with MatMulBatch's K split at 32 columns (FMOE_CUDA_MMA_GCOLS=32: the tiny model's experts split 2-4 ways)"
(cd runtime/model && FMOE_CUDA_MMA_GCOLS=32 FMOE_TEST_BACKEND=cuda "$B/model.test" -test.run 'GroupedExperts|GoldenWarmCache|GoldenPrefill' 2>&1 | tail -3) || fail=1
echo "== golden cases, fmoe-verify --backend cuda"
"$B/fmoe-pack" convert -q --in testdata/tiny/hf --out "$T/hf" --bits 16 >/dev/null
"$B/fmoe-pack" convert -q --in testdata/tiny/hf-vl --out "$T/hf-vl" --bits 16 >/dev/null
"$B/fmoe-pack" convert -q --in testdata/tiny/mlx-4bit --out "$T/mlx" >/dev/null
check() { # model golden [k]
  local k=()
  [ -n "${3:-}" ] && k=(--k "$3")
  echo "-- $1 vs $2 ${k[*]}"
  "$B/fmoe-verify" golden --backend cuda --model "$T/$1" --golden "testdata/tiny/golden/$2.safetensors" "${k[@]}" | tail -1 || fail=1
}
for m in hf hf-vl; do
  check "$m" bf16
  check "$m" bf16-long
  check "$m" bf16-k2 2
done
check mlx mlx4
echo "== other families (testdata/arch), --backend cuda"
for f in qwen3_moe glm4_moe deepseek_v3; do
  "$B/fmoe-pack" convert -q --in "testdata/arch/$f/hf" --out "$T/$f" --bits 16 >/dev/null 2>&1
  for g in bf16 bf16-long bf16-k2; do
    k=()
    [ "$g" = bf16-k2 ] && k=(--k 2)
    echo "-- $f vs $g ${k[*]}"
    "$B/fmoe-verify" golden --backend cuda --model "$T/$f" --golden "testdata/arch/$f/golden/$g.safetensors" "${k[@]}" || fail=1
  done
done
echo "gpu-check: $([ $fail = 0 ] && echo PASS || echo FAIL)"
exit $fail
