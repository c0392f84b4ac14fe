#!/usr/bin/env bash
# GPU decode benchmark (issue 12 §4), one device run. On a synthetic Qwen3.5-397B-A17B pack of
# BENCH_LAYERS layers (default 4: three GatedDeltaNet and one full-attention layer, the full model's
# 3:1 mix), with routing replayed from a trace fitted to the 397B's measured routing
# (runtime/routetrace, model BENCH_ROUTING, default mix):
#  (a) the ceilings of this run: device copy (HBM, read+write) and pinned host-to-device (PCIe)
#      bandwidth, from the CUDA package's benchmarks;
#  (b) decode at K=4 and K=10 (runtime/model BenchmarkTieredDecode): BENCH_WARM tokens of warm-up,
#      then BENCH_TOKENS timed tokens, with the GPU tier scaled to what the whole model would get
#      per layer on this card ((free memory - 5.5 GB of resident weights - 2 GiB) / 60 per layer),
#      with that and the host tier scaled the same way ((memory available - 8 GiB) / 60 per layer,
#      pinned), with no tier, and with every expert resident (BENCH_TIERS picks among scaled,
#      tiered, off, resident, resident-unbatched, scaled-1pread, scaled-sync; on request also
#      scaled-eager, resident-eager, scaled-verified, scaled-cpumiss and any TIER-sync;
#      scaled-cpumiss: a CPU rank on every core computes the GPU tier's repeat misses, issue 12 §2,
#      docs/benchmarks.md "CPU misses beside the GPU's hits"). scaled-sync checksums each
#      first read before its bind (the order before issue 12's change), scaled beside its compute:
#      BENCH_TIERS=scaled,scaled-sync,scaled-verified measures what the change saves and what is
#      left of the check (scaled-verified: every expert checked before decoding). Every expert file is in the page
#      cache (at 60 layers the GPU and host tiers together hold all 512 experts of a layer, so after
#      warm-up nothing comes from the disk);
#  (c) tok/s extrapolated to 60 layers (60 x measured ms/layer + lm_head), beside the per-token
#      floor from the same run: misses x expert bytes / H2D GB/s + bytes the token reads from GPU
#      memory (K experts and the resident weights per layer, lm_head) / HBM GB/s; on CUDA also the
#      same scaled by the layer clock (each layer's device time from stamps) to 60 layers by kind:
#      a token's first layers, which no prefetch reaches, and its last are 3 of 60 in the model but
#      3 of a 4-layer stack (runtime/model layersAt). BENCH_LAYERS=8 makes the stack's middle larger
#      (the source goes to /dev/shm where it has room, so 8 layers fit a 64 GB disk).
# BENCH_GPUS=N (default 1) splits the routed experts over CUDA devices 0…N-1 (NCCL) and first times
# one layer's exchange (runtime/parallel BenchmarkExchange, parallel.test): the floor then counts
# each device's share of the experts and that exchange x 60 layers.
# BENCH_PREFILL=N adds the prefill of an N-token prompt (scripts/gpu-bench-prefill.sh: the tensor-core
# crossover, then the prompt with and without tensor cores beside its floor); BENCH_DECODE=0 skips (b)-(c).
# Binaries come prebuilt from the dev machine in $BIN (fmoe-pack, cuda.test, model.test; parallel.test
# for BENCH_GPUS > 1).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
cd "$(dirname "$0")/.."
B=$(realpath "${BIN:-gpu}")
DIR=${BENCH_DIR:-/tmp/fmoe-gpu-bench}
LAYERS=${BENCH_LAYERS:-4}
GPUS=${BENCH_GPUS:-1}
mkdir -p "$DIR"
echo "# machine: $(nvidia-smi --query-gpu=name,memory.total,memory.free,driver_version,pcie.link.gen.current,pcie.link.width.current --format=csv,noheader);" \
  "$(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GB RAM, disk free $(df -h "$DIR" | awk 'NR==2{print $4}')"
echo "## (a) ceilings"
FMOE_CUDA_REQUIRE=1 "$B/cuda.test" -test.run '^$' -test.bench 'CopyDtoD|H2D/raw-pinned' -test.benchtime 50x 2>&1 | grep -E '^Benchmark' | tee "$DIR/ceil"
HBM=$(awk '/CopyDtoD/{for(i=1;i<=NF;i++) if($i=="GB/s-rw-gpu") print $(i-1)}' "$DIR/ceil" | head -1)
H2D=$(awk '/raw-pinned/{for(i=1;i<=NF;i++) if($i=="MB/s") print $(i-1)/1000}' "$DIR/ceil" | head -1)
echo "HBM (device copy, read+write) $HBM GB/s; pinned host-to-device $H2D GB/s"
EXCH=0
if [ "$GPUS" -gt 1 ]; then
  echo "## exchange per MoE layer, $GPUS GPUs (NCCL: broadcast + all-reduce of 4096 float32)"
  FMOE_BENCH_GPUS=$GPUS "$B/parallel.test" -test.run '^$' -test.bench Exchange -test.benchtime 2000x 2>&1 | grep -E '^Benchmark|FAIL|panic|needs' | tee "$DIR/exch"
  EXCH=$(awk '/^BenchmarkExchange/{for(i=1;i<=NF;i++) if($i=="us/layer") print $(i-1)}' "$DIR/exch" | head -1)
  [ -n "$EXCH" ] || { echo "no exchange figure: see above" >&2; exit 1; }
fi
M=$DIR/packed
if [ ! -f "$M/model_weights.json" ]; then
  echo "# synthesising qwen3.5-397b-a17b, $LAYERS layers, mlx-4bit" >&2
  t0=$(date +%s)
  # The source in /dev/shm where it has room (~3.7 GB a layer): the disk then holds the pack alone.
  SRC=$DIR/src
  [ "$(df -k --output=avail /dev/shm 2>/dev/null | tail -1)" -gt $(( (LAYERS * 37 / 10 + 2) * 1048576 )) ] 2>/dev/null &&
    SRC=/dev/shm/fmoe-gpu-bench-src
  "$B/fmoe-pack" synth --preset qwen3.5-397b-a17b --layers "$LAYERS" --out "$SRC" --force -q >/dev/null
  "$B/fmoe-pack" convert --in "$SRC" --out "$M" --force -q >/dev/null
  rm -rf "$SRC"
  echo "# packed in $(( $(date +%s) - t0 )) s: $(du -sh "$M" | cut -f1)" >&2
fi
cat "$M"/packed_experts/*.bin > /dev/null
if [ -n "${BENCH_PREFILL:-}" ]; then
  B=$B DIR=$DIR M=$M HBM=$HBM H2D=$H2D bash "$HERE/gpu-bench-prefill.sh"
fi
if [ "${BENCH_DECODE:-1}" = 0 ]; then
  [ "${BENCH_KEEP:-0}" = 1 ] || rm -rf "$M"
  exit 0
fi
echo "## (b) decode, routing trace ${BENCH_ROUTING:-mix}, ${BENCH_WARM:-1000} warm-up + ${BENCH_TOKENS:-500} timed tokens"
FMOE_BENCH_GPUS=$GPUS FMOE_BENCH_TIERS=${BENCH_TIERS:-} FMOE_TEST_BACKEND=cuda FMOE_BENCH_MODEL=$M FMOE_BENCH_WARM=${BENCH_WARM:-1000} FMOE_BENCH_TOKENS=${BENCH_TOKENS:-500} \
  FMOE_BENCH_ROUTING=${BENCH_ROUTING:-mix} "$B/model.test" -test.run '^$' -test.bench TieredDecode -test.benchtime 1x 2>&1 |
  grep -E '^Benchmark|FAIL|panic' | tee "$DIR/tier"
echo "## (c) 60 layers, $GPUS GPU(s)"
printf '| K | tiers | GPU tier experts/layer | GPU hit | misses/layer | of which host-tier hits | H2D MB/token | ms/layer | lm_head ms | **60 layers: ms/token, tok/s** | floor ms/token (H2D + HBM + exchange) | time / floor | by kind: ms/token, tok/s; time / floor |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|\n'
awk -v hbm="$HBM" -v h2d="$H2D" -v gpus="$GPUS" -v exch="$EXCH" '
/^BenchmarkTieredDecode/ {
  split($1, p, "/"); k = p[2]; sub("k=", "", k); tier = p[3]; sub(/-[0-9]+$/, "", tier)
  for (i = 2; i <= NF; i++) v[$(i+1)] = $i
  L = 60; ms = v["ms/layer"]; head = v["head-ms/token"]; eb = v["expert-B"]
  tok = L * ms + head
  h2dms = v["misses/layer"] * L * eb / (h2d * 1e9) * 1e3
  # The devices read their shares of the K experts at once (an even split); rank 0 reads the rest.
  hbmms = (L * (k * eb / gpus + v["resident-MB/layer"] * 1e6) + v["head-MB"] * 1e6) / (hbm * 1e9) * 1e3
  exms = L * exch / 1000
  fl = h2dms + hbmms + exms
  # misses/layer counts the ones a prefetch brought in (their bytes crossed the link)
  if (v["prefetch/layer"] > 0) tier = sprintf("%s (%.2f prefetched/layer, %.0f%% used)", tier, v["prefetch/layer"], v["prefetch-used-%"])
  # The layer clock (CUDA stamps): the mean layer scaled to 60 by kind (a token first and last
  # layers against a stack whose edges are most of it; runtime/model layersAt).
  bykind = "–"
  if (v["clock-ms/layer"] > 0) {
    tk = L * ms * v["clock-ms/layer@full"] / v["clock-ms/layer"] + head
    bykind = sprintf("%.1f, %.1f; %.2fx", tk, 1000 / tk, tk / fl)
  }
  printf "| %d | %s | %.0f | %.1f%% | %.2f | %.1f%% | %.1f | %.3f | %.2f | **%.1f, %.1f** | %.2f + %.2f + %.2f = %.2f (%.0f tok/s) | %.2fx | %s |\n",
    k, tier, v["tier-experts/layer"], v["hit-%"], v["misses/layer"], v["host-hit-%"], v["h2d-MB/token"], ms, head, tok, 1000 / tok, h2dms, hbmms, exms, fl, 1000 / fl, tok / fl, bykind
}' "$DIR/tier"
echo
echo "flash-moe (the seed), M3 Max, K=4: 4.36 tok/s."
[ "${BENCH_KEEP:-0}" = 1 ] || rm -rf "$M"
