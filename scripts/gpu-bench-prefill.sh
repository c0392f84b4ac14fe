#!/usr/bin/env bash
# Prefill part of scripts/gpu-bench.sh (issue 12 §4), run by it when BENCH_PREFILL=N (prompt tokens,
# e.g. 1024) is set; expects from it B (binaries), DIR (work folder), M (the synthetic pack), HBM and
# H2D (GB/s measured in the same run).
#  (d) the matmul crossover: the CUDA-core kernel (matvec.h) against the tensor-core one
#      (mma_cuda.h) at T = 1..1024 tokens on the 397B's expert projections and a mixer-sized weight
#      (cuda BenchmarkMatMulPrefill), device time per op;
#  (e) one N-token prompt through the pack in one chunk (runtime/model BenchmarkPrefillPrompt),
#      routed by the fitted trace, with every expert resident on the GPU and from the page cache,
#      each with the tensor cores ("mma", from BENCH_MMA_MIN rows, default 8) and without ("cores"):
#      measured on the pack's layers,
#      extrapolated to 60 (60 x ms/layer; lm_head runs for the last token only), beside the floor:
#      every distinct expert the prompt routes to read once (over PCIe at the H2D rate when not
#      resident) + weight bytes over HBM + matmul FLOPs at the tensor cores' rate (989 TFLOP/s dense
#      bf16, the H200's datasheet peak, and the rate the mma kernel measured in (d) on the
#      mixer-sized weight at T=1024, which pays three MMAs per product for float32 accuracy).
set -euo pipefail
: "${B:?}" "${DIR:?}" "${M:?}" "${HBM:?}" "${H2D:?}"
N=${BENCH_PREFILL:-1024}
echo "## (d) matmul crossover: device us/op, CUDA cores vs tensor cores (4-bit, group 64)"
FMOE_CUDA_REQUIRE=1 "$B/cuda.test" -test.run '^$' -test.bench 'MatMulPrefill' -test.benchtime 1x 2>&1 |
  grep -E '^Benchmark|FAIL|panic' | tee "$DIR/xover"
awk '
/^BenchmarkMatMulPrefill/ {
  split($1, p, "/"); shape = p[2]; path = p[3]; sub(/-[0-9]+$/, "", path)
  for (i = 2; i <= NF; i++) if ($(i+1) ~ /^us\/op-T/) { t = $(i+1); sub("us/op-T", "", t); us[shape, path, t] = $i; ts[t] = 1 }
  shapes[shape] = 1
}
END {
  n = split("1 2 4 8 16 32 64 128 256 1024", T, " ")
  printf "| shape | path |"; for (i = 1; i <= n; i++) printf " T=%s |", T[i]; printf "\n|---|---|"
  for (i = 1; i <= n; i++) printf "---|"; printf "\n"
  for (s in shapes) for (q = 1; q <= 2; q++) {
    path = q == 1 ? "cores" : "mma"
    printf "| %s | %s |", s, path
    for (i = 1; i <= n; i++) printf " %s |", us[s, path, T[i]]
    printf "\n"
  }
}' "$DIR/xover"
MMA=$(awk '/8192x4096\/mma/{for(i=2;i<=NF;i++) if($(i+1)=="TFLOP/s-T1024") print $i}' "$DIR/xover" | head -1)
MMA=${MMA:-0}
echo "mma kernel on 8192x4096 at T=1024: $MMA TFLOP/s (useful FLOPs)"
echo "## (e) prefill of a $N-token prompt (routing trace ${BENCH_ROUTING:-mix}, one chunk)"
FMOE_BENCH_PREFILL=$N FMOE_BENCH_MMA_MIN=${BENCH_MMA_MIN:-8} FMOE_TEST_BACKEND=cuda FMOE_BENCH_MODEL=$M FMOE_BENCH_ROUTING=${BENCH_ROUTING:-mix} \
  FMOE_BENCH_PREFILL_TIERS=${BENCH_PREFILL_TIERS:-} "$B/model.test" -test.run '^$' -test.bench PrefillPrompt -test.benchtime 1x 2>&1 |
  grep -E '^Benchmark|FAIL|panic' | tee "$DIR/prefill"
printf '| experts | matmuls | distinct experts/layer | GPU hit | ms/layer | measured tok/s (%s layers) | **60 layers: s/prompt, tok/s** | floor/layer ms: H2D, HBM, FLOPs@989T, FLOPs@mma | floor 60 layers tok/s (peak, mma rate) | time / floor (mma rate) |\n|---|---|---|---|---|---|---|---|---|---|\n' \
  "$(awk '/^BenchmarkPrefillPrompt/{for(i=2;i<=NF;i++) if($(i+1)=="layers") print $i}' "$DIR/prefill" | head -1)"
awk -v hbm="$HBM" -v h2d="$H2D" -v mma="$MMA" '
/^BenchmarkPrefillPrompt/ {
  split($1, p, "/"); tier = p[2]; path = p[3]; sub(/-[0-9]+$/, "", path)
  for (i = 2; i <= NF; i++) v[$(i+1)] = $i
  ms = v["ms/layer"]; n = v["tokens"]; e = v["experts/layer"]; eb = v["expert-B"]
  h2dms = (tier == "resident") ? 0 : e * eb / (h2d * 1e9) * 1e3
  hbmms = (e * eb + v["resident-MB/layer"] * 1e6) / (hbm * 1e9) * 1e3
  pk = v["GFLOP/layer"] / 989e3 * 1e3
  mr = mma > 0 ? v["GFLOP/layer"] / (mma * 1e3) * 1e3 : 0
  fp = h2dms > hbmms + pk ? h2dms : hbmms + pk
  fm = h2dms > hbmms + mr ? h2dms : hbmms + mr
  s60 = 60 * ms / 1e3
  printf "| %s | %s | %.0f | %.1f%% | %.2f | %.0f | **%.2f, %.0f** | %.2f, %.3f, %.3f, %.3f | %.0f, %.0f | %.1fx |\n",
    tier, path, e, v["hit-%"], ms, v["tok/s"], s60, n / s60, h2dms, hbmms, pk, mr, n / (60 * fp / 1e3), n / (60 * fm / 1e3), ms / fm
}' "$DIR/prefill"
