#!/usr/bin/env bash
# The measurements sessions 28 and 29 built and could not run (no device was lent), in one device
# call, the most wanted first, each stage begun only while the call is younger than its limit
# within CAP seconds (default 420), so that a short call still brings back the first ones:
#   A  CUDA correctness of what those sessions added: the conformance suite (ArgMax), TestBindPaths
#      (pinned memory on huge pages too), and on the model TestForwardGreedy, TestGenerateStops,
#      TestCPUMissesOnDevice (a third of the experts in the GPU tier: partly held layers routed on
#      the device with the CPUs' share, devshare.go), TestGoldenDevicePartial, TestCPUMissesPrefetched
#   D2 issue 12's tiered K=10 layer with the CPUs' share of its misses (tiered-preload-prefetch-table
#      against its -cpumiss, shares 0.4 and auto one layer ahead, and 0.4 two layers ahead, the
#      benchmark's default since run 27)
#   B  issue 13's row 2 share (gpu-cpushare.sh, 0.4 and auto): the default against FMOE_CPU_PRIME,
#      FMOE_CUDA_HOST_HUGE and FMOE_CPU_POLL
#   D  the head with the greedy pick on the device against the logits read back (FMOE_BENCH_LOGITS=1)
#   C  the CPUs beside the link with the host tier on 4 KiB and huge pages, BenchmarkExperts on
#      FMOE_BENCH_PAGES=4k|huge, BenchmarkExpertsAfterIdle
#   E  the tiered K=4 layer's timeline (gpu-timeline.py, with --dump into $OUT)
# Binaries from scripts/gpu-bins.sh in BIN (default .gpu/bin, .xz); packs made here (~1 min).
set -u
cd "$(dirname "$0")/.."
exec > >(tee "${OUT:-/tmp}/gpu-next.log") 2>&1
t0=$(date +%s)
el() { echo "### $1 at $(($(date +%s) - t0)) s"; }
upto() { [ $(($(date +%s) - t0)) -lt "$1" ]; }
CAP=${CAP:-420}
B=$(mktemp -d)
for f in "${BIN:-.gpu/bin}"/*.xz; do xz -dc "$f" > "$B/$(basename "$f" .xz)"; done
chmod +x "$B"/*
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
lscpu | grep -E 'Model name|^CPU\(s\)'
cat /sys/kernel/mm/transparent_hugepage/enabled
M1=/tmp/gpu-next-p1 M4=/tmp/gpu-next-p4
mk() {
  [ -f "$1/model_weights.json" ] && return
  "$B/fmoe-pack" synth --preset qwen3.5-397b-a17b --layers "$2" --out "$1.src" --force -q > /dev/null &&
    "$B/fmoe-pack" convert --in "$1.src" --out "$1" --force -q > /dev/null
  rm -rf "$1.src"
}
mk $M1 1 & p1=$!
mk $M4 4 & p4=$!
el "A: correctness on CUDA"
[ -z "${SKIP_A:-}" ] && FMOE_CUDA_REQUIRE=1 timeout 60 "$B/cuda.test" -test.run 'Conformance|BindPaths' 2>&1 | grep -E -- '--- FAIL|^(FAIL|ok|PASS)|_test.go:[0-9]+:' | tail -15
[ -z "${SKIP_A:-}" ] && (cd runtime/model && FMOE_TEST_BACKEND=cuda timeout 120 "$B/model.test" -test.short -test.v \
  -test.run 'ForwardGreedy|GenerateStops|GenerateGreedy|CPUMissesOnDevice|GoldenDevicePartial|CPUMissesPrefetched' 2>&1 |
  grep -E -- '^--- (PASS|FAIL|SKIP)|^(FAIL|ok|PASS)|_test.go' | tail -20)
# The packs' jobs by pid: a bare wait would also wait for the tee above, which ends only with the script.
wait $p1 $p4
el "D2: tiered K=10, the CPUs' share of the misses"
upto $((CAP - 60)) && BIN=$B M=$M4 AB_WARM=200 AB_TOKENS=100 AB_KS=10 AB_ROUNDS=1 \
  AB_VARIANTS='FMOE_BENCH_PREFETCH_AHEAD=1 FMOE_BENCH_MISS_SHARE=0.4;FMOE_BENCH_PREFETCH_AHEAD=1 FMOE_BENCH_MISS_SHARE=auto;FMOE_BENCH_MISS_SHARE=0.4' \
  AB_TIERS="tiered-preload-prefetch-table tiered-preload-prefetch-table-cpumiss" timeout 150 bash scripts/gpu-ab.sh
el "B: the share in place"
upto $((CAP - 60)) && BIN=$B SHARE_MODEL=$M1 SHARE_SHARES="0 0.4 auto" SHARE_ROUNDS=2 \
  SHARE_VARIANTS="-;FMOE_CPU_PRIME=2ms;FMOE_CUDA_HOST_HUGE=1;FMOE_CPU_POLL=2ms" timeout 100 bash scripts/gpu-cpushare.sh
el "D: the head"
upto $((CAP - 60)) && BIN=$B M=$M4 AB_VARIANTS='-;FMOE_BENCH_LOGITS=1' AB_TIERS="resident-dev tiered-preload-prefetch-table" \
  AB_KS=4 AB_ROUNDS=2 timeout 90 bash scripts/gpu-ab.sh
el "C: the CPUs beside the link"
th=$(nproc)
for hg in 0 1; do
  upto $((CAP - 40)) && (cd runtime/model && FMOE_CUDA_HOST_HUGE=$hg FMOE_TEST_BACKEND=cuda FMOE_BENCH_MODEL=$M1 FMOE_BENCH_THREADS=$th \
    timeout 30 "$B/model.test" -test.run '^$' -test.bench CPUBesideLink -test.benchtime 10x 2>&1 | grep -E '^Benchmark|FAIL|panic' | sed "s/^/huge=$hg /")
done
for pg in 4k huge; do
  upto $((CAP - 30)) && (cd runtime/backend/cpu && FMOE_BENCH_PAGES=$pg FMOE_BENCH_THREADS=$th timeout 20 "$B/cpu.test" -test.run '^$' \
    -test.bench 'Experts$/threads=[0-9]+/K=10/(batch|read)' 2>&1 | grep -E '^Benchmark|FAIL|panic' | sed "s/^/pages=$pg /")
done
upto $((CAP - 20)) && (cd runtime/backend/cpu && FMOE_BENCH_THREADS=$th timeout 20 "$B/cpu.test" -test.run '^$' -test.bench ExpertsAfterIdle 2>&1 |
  grep -E '^Benchmark|FAIL|panic')
el "E: the tiered K=4 timeline"
T=tiered-preload-prefetch-table
if upto $((CAP - 30)); then
  (cd runtime/model && FMOE_CUDA_TRACE=/tmp/gpu-next-tl.tsv FMOE_TEST_BACKEND=cuda FMOE_BENCH_MODEL=$M4 FMOE_BENCH_TIERS=$T \
    FMOE_BENCH_WARM=300 FMOE_BENCH_TOKENS=60 timeout 40 "$B/model.test" -test.run '^$' -test.bench "TieredDecode/k=4/$T\$" \
    -test.benchtime 1x 2>&1 | grep -E '^Benchmark|FAIL|panic')
  python3 scripts/gpu-timeline.py /tmp/gpu-next-tl.tsv | head -30
  python3 scripts/gpu-timeline.py /tmp/gpu-next-tl.tsv --dump > "${OUT:-/tmp}/timeline-dump.txt" 2>&1
fi
el done
