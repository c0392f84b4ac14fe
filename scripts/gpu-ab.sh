#!/usr/bin/env bash
# A/B of decode settings in one device call: BenchmarkTieredDecode on the synthetic 397B that
# scripts/gpu-bench.sh left (BENCH_KEEP=1), once per variant, the variants alternating AB_ROUNDS
# times (default 2) so that drift shows. AB_VARIANTS: variants separated by ';', each a list of
# environment assignments ('-' for none), e.g. '-;FMOE_CUDA_BATCH_PLAN=perjob;FMOE_CUDA_MV=bpsm=2'.
# AB_TIERS (default resident-dev), AB_KS (default "4 10"). Binaries in BIN (model.test), model in M;
# a variant's BIN=DIR runs DIR's model.test instead (an A/B of two builds, e.g. '-;BIN=/tmp/new'),
# and its TIERS=T1,T2 runs those tiers instead of AB_TIERS (a baseline tier that no other variant
# changes, e.g. the tier without a prefetch beside prefetch variants, then runs once a round).
# Prints one line per run: variant, K, tier, ms/layer (mean; p50: the median token's), head ms/token, 60-layer tok/s, GPU-tier misses
# and those computed on the CPU per layer, the GPU tier's hit %; with HBM and H2D (GB/s, as
# scripts/gpu-bench.sh measures them) also gpu-bench.sh's floor and the time over it.
set -u
cd "$(dirname "$0")/.."
B=$(realpath "${BIN:-gpu}")
M=${M:-/tmp/fmoe-gpu-bench/packed}
[ -f "$M/model_weights.json" ] || { echo "gpu-ab: no model at $M (run scripts/gpu-bench.sh with BENCH_KEEP=1 first)"; exit 1; }
IFS=';' read -r -a variants <<< "${AB_VARIANTS:--}"
printf '%-40s %3s %-24s %9s %9s %8s %8s %7s %7s %6s\n' variant K tier ms/layer p50-ms/l head-ms tok/s@60 miss/l cpu/l hit-%
for round in $(seq "${AB_ROUNDS:-2}"); do
  for v in "${variants[@]}"; do
    envs=() vb=$B vt=${AB_TIERS:-resident-dev}
    [ "$v" != - ] && read -r -a envs <<< "$v"
    for i in "${!envs[@]}"; do
      case ${envs[$i]} in
        BIN=*) vb=$(realpath "${envs[$i]#BIN=}"); unset 'envs[i]' ;;
        TIERS=*) vt=${envs[$i]#TIERS=} vt=${vt//,/ }; unset 'envs[i]' ;;
      esac
    done
    for k in ${AB_KS:-4 10}; do
      for t in $vt; do
        line=$(cd runtime/model && env "${envs[@]}" FMOE_TEST_BACKEND=cuda FMOE_BENCH_MODEL=$M FMOE_BENCH_TIERS=$t \
          FMOE_BENCH_WARM=${AB_WARM:-200} FMOE_BENCH_TOKENS=${AB_TOKENS:-100} \
          "$vb/model.test" -test.run '^$' -test.bench "TieredDecode/k=$k/$t\$" -test.benchtime 1x 2>&1 | grep -E '^Benchmark|FAIL|panic')
        echo "$line" | grep -qE 'FAIL|panic' && { echo "$v K=$k $t: $line"; continue; }
        echo "$line" | awk -v v="$v" -v k="$k" -v t="$t" -v hbm="${HBM:-0}" -v h2d="${H2D:-0}" '{for (i = 2; i <= NF; i++) m[$(i+1)] = $i}
          END {printf "%-40s %3s %-24s %9.3f %9.3f %8.2f %8.1f %7.2f %7.2f %6.1f", v, k, t, m["ms/layer"], m["p50-ms/layer"], m["head-ms/token"], 1000 / (60 * m["ms/layer"] + m["head-ms/token"]),
            m["misses/layer"], m["cpu-misses/layer"], m["hit-%"]
            # what a prefetch variant copied ahead and how much of it a layer used
            if (m["prefetch/layer"] > 0) printf "  prefetched %.2f/layer, %.0f%% used", m["prefetch/layer"], m["prefetch-used-%"]
            if ("auto-share" in m) printf "  auto share %.2f (CPU %.3f, link %.3f ms an expert)", m["auto-share"], m["auto-cpu-ms/expert"], m["auto-link-ms/expert"]
            # gpu-bench.sh floor (one GPU): misses over the link + the token bytes over HBM
            if (hbm > 0 && h2d > 0) {
              fl = 60 * m["misses/layer"] * m["expert-B"] / (h2d * 1e6) + (60 * (k * m["expert-B"] + m["resident-MB/layer"] * 1e6) + m["head-MB"] * 1e6) / (hbm * 1e6)
              printf "  floor %.2f ms/token: %.2fx (p50 %.2fx)", fl, (60 * m["ms/layer"] + m["head-ms/token"]) / fl, (60 * m["p50-ms/layer"] + m["head-ms/token"]) / fl
            }
            # The layers device stamps: the stack mean layer scaled to 60 layers by kind (the token
            # first layers, which no prefetch reaches, are half of a 4-layer stack and 2 of 60).
            if (m["clock-ms/layer"] > 0) {
              l60 = m["ms/layer"] * m["clock-ms/layer@full"] / m["clock-ms/layer"]
              printf "  @60 by kind %.3f ms/layer (clock %.3f -> %.3f), %.1f tok/s", l60, m["clock-ms/layer"], m["clock-ms/layer@full"], 1000 / (60 * l60 + m["head-ms/token"])
              if (fl > 0) printf ", %.2fx floor", (60 * l60 + m["head-ms/token"]) / fl
              printf " (layers"
              for (l = 0; ("clock-ms/L" l) in m; l++) printf " %.3f", m["clock-ms/L" l]
              printf ")"
            }
            if ("fit-cpu-ms/layer" in m) printf "  fits: CPU %.3f + %.3f n, link %.3f + %.3f n ms", m["fit-cpu-ms/layer"], m["fit-cpu-ms/expert"], m["fit-link-ms/layer"], m["fit-link-ms/expert"]
            printf "\n"}'
      done
    done
  done
done
