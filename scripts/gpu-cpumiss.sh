#!/usr/bin/env bash
# The host's CPUs beside the PCIe link (issue 13 row 2, issue 12 §2): with every expert in the pinned
# host tier and no GPU tier (BenchmarkTieredDecode's "host"), the link copies some of a layer's experts
# while a CPU backend (Options.MissBackend) computes the others from RAM. First the CPU alone
# (runtime/backend/cpu BenchmarkExperts: a layer's experts batched and one matvec at a time, beside a
# read of the same bytes, at MISS_BENCH_THREADS threads; when cpu.test is in $B), then for each
# MISS_CONFIGS entry share/threads "host" (the link alone), "host-cpumiss-interleaved" (the miss rank
# interleaved with the link's experts, session 22's schedule) and "host-cpumiss" (its share on a goroutine
# of its own beside the link, the default since session 24: fmoe-run --cpu-experts) side by side at K=4
# and K=10 (MISS_TIERS to choose). Model in $M (scripts/gpu-bench.sh with BENCH_KEEP=1, or any pack of
# 397B-shaped experts), binaries in $B.
set -uo pipefail
B=${B:?binaries}; M=${M:?model}
[ -x "$B/cpu.test" ] && FMOE_BENCH_THREADS=${MISS_BENCH_THREADS:-8,12,16} "$B/cpu.test" -test.run '^$' -test.bench Experts -test.benchtime 100x 2>&1 | grep -E '^Benchmark'
for cfg in ${MISS_CONFIGS:-0.5/16 0.3/16 0.5/10 0.7/16}; do
  share=${cfg%/*} th=${cfg#*/}
  echo "## CPU share $share, $th threads"
  FMOE_BENCH_TIERS=${MISS_TIERS:-host,host-cpumiss-interleaved,host-cpumiss} FMOE_BENCH_MISS_SHARE=$share FMOE_BENCH_MISS_THREADS=$th FMOE_TEST_BACKEND=cuda \
    FMOE_BENCH_MODEL=$M FMOE_BENCH_WARM=${MISS_WARM:-200} FMOE_BENCH_TOKENS=${MISS_TOKENS:-100} \
    "$B/model.test" -test.run '^$' -test.bench TieredDecode -test.benchtime 1x 2>&1 | grep -E '^Benchmark|FAIL|panic'
done
