#!/usr/bin/env bash
# The device measurements left after session 35 (run 30 ran A, G, R; none since), in one call,
# each stage begun only while the call is younger than its limit within CAP seconds (default 420),
# so that a short call still brings back the first ones. STAGES picks them (default "A L D2 G R", the
# most wanted; they run in the order "A L D2 R E G B D C"):
#   A  CUDA checks: the conformance suite (also with the mapped uploads), TestBindPaths,
#      TestReadPaths, TestUploadRing, and on the model
#      TestForwardGreedy, TestGenerateStops, TestCPUMissesOnDevice, TestGoldenDevicePartial,
#      TestCPUMissesPrefetched, those also with FMOE_CUDA_UPLOAD=mapped and FMOE_CUDA_EVICT=layer;
#      the cache's tests (TestExpertCache*, TestPrefetchExpert, TestEvictLayer), TestTimeline
#   L  issue 13's row 2 at K=10 (host tier, --cpu-experts auto) under FMOE_CUDA_TRACE: whether the
#      link idles between a layer's copies beside the share (gpu-timeline.py; the dump comes back)
#   R  the tiered layer at R_KS (default 10; K=4 in a second call: an 8-layer bench run takes ~60 s),
#      R_ROUNDS rounds (default 1), with each of R_VARIANTS, by default: the tier without a prefetch
#      (run once a round: TIERS=), the prefetch two ahead as it is, paced (FMOE_BENCH_PF_PACE=N:
#      the copies queued on the host, N issued at a layer's tail, the rest one at a time whenever the
#      link is idle, session 39) with N 1 and 2, paced (1) on a
#      copy stream of their own (FMOE_CUDA_PF_STREAM=1: a miss then shares the link with the one
#      prefetch in flight instead of waiting for it), and one layer ahead (no layer's misses queue
#      behind copies for a later layer); the per-layer clocks of an 8-layer stack (WIDE=8) part the
#      steady state from the edges
#   E  the tiered K=4 timeline (FMOE_CUDA_TRACE), tokens cut at the greedy pick, as it is and paced
#      (E_VARIANTS; gpu-timeline.py counts the copies that start behind the copy before them on
#      their stream, and how many the compute waited for: misses, or not: prefetches)
#   G  Go execution traces (FMOE_GO_TRACE, brought back in $OUT) of the CPU share at K=4 and K=10:
#      the default (one task of the pool, futex wake, since run 30), the old three ops on the
#      channel wake, a 1 ms poll on two threads fewer, for scripts/go-trace-share.py on the dev
#      box; BenchmarkExpertsAfterIdle (ops and task, 1, 2, 4 experts); then the share's rounds
#      (gpu-cpushare.sh) at K=4 and K=10: the default, it primed 300 µs (FMOE_CPU_PRIME), the
#      task on the channel wake, the ops on it, G_ROUNDS (default 3)
#   D2 issue 12's tiered K=10 layer (two layers ahead) against its -cpumiss with the automatic share
#      as fmoe-run now runs it (one task, futex wake; since session 36 a share at a bound explores;
#      since session 37 the link's rate read from its misses alone), and with the CPUs' experts
#      admitted to the GPU tier in the background (FMOE_BENCH_MISS_ADMIT=1), and with that and the
#      misses split by fits of a cost a layer plus one an expert (FMOE_BENCH_MISS_TUNE=affine; the
#      fits shown beside the share), two rounds: run 31
#      found the share 18-23% slower than none on an H100 (the link misread, the tier's hits down
#      from 75.5% to 71.2%); third in the order, so a short call has it
#   B  issue 13's row 2 share (gpu-cpushare.sh, auto) plain and with a 300 µs prime, at K=4 and
#      K=10; then auto on two cores fewer (plain and on the channel wake)
#   D, C (run 27 measured them; kept to rerun; C's BenchmarkExpertsAfterIdle also with the futex
#      wake): the head, the CPUs beside the link
# Binaries from scripts/gpu-bins.sh in BIN (default .gpu/bin, .xz); packs made here (~1 min).
set -u
cd "$(dirname "$0")/.."
exec > >(tee "${OUT:-/tmp}/gpu-next.log") 2>&1
t0=$(date +%s)
el() { echo "### $1 at $(($(date +%s) - t0)) s"; }
upto() { [ $(($(date +%s) - t0)) -lt "$1" ]; }
CAP=${CAP:-420}
STAGES=" ${STAGES:-A L D2 G R} "
on() { [[ $STAGES == *" $1 "* ]]; }
B=$(mktemp -d)
for f in "${BIN:-.gpu/bin}"/*.xz; do xz -dc "$f" > "$B/$(basename "$f" .xz)"; done
chmod +x "$B"/*
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
lscpu | grep -E 'Model name|^CPU\(s\)'
cat /sys/kernel/mm/transparent_hugepage/enabled
M1=/tmp/gpu-next-p1
# WIDE=N (or auto): the tiered stages' stack has N layers instead of 4 (issue 12 asks for as many as
# the disk holds). A prefetch two layers ahead reaches no token's first two layers, so a 4-layer
# stack prefetches for half its layers where the 60-layer model does for 58 of 60: its mean layer,
# times 60, overstates a token. The source is written to /dev/shm when it has room (the disk then
# holds only the pack, ~3.7 GB a layer); auto takes 8, 6 or 4, the most that fit.
N4=${WIDE:-4}
if [ "$N4" = auto ]; then
  disk=$(df -k --output=avail /tmp | tail -1) shm=$(df -k --output=avail /dev/shm 2>/dev/null | tail -1)
  for N4 in 8 6 4; do
    need=$(( (N4 * 37 / 10 + 2) * 1024 * 1024 )) room=$((disk - 12 * 1024 * 1024))
    # the source in /dev/shm and the pack on disk, or both on disk
    { [ $room -gt $need ] && [ "${shm:-0}" -gt $need ]; } || [ $room -gt $((2 * need)) ] && break
  done
  echo "WIDE=auto: $N4 layers (disk $((disk / 1048576)) GB free, /dev/shm $((${shm:-0} / 1048576)) GB)"
fi
M4=/tmp/gpu-next-p$N4
[ "$N4" = 4 ] || rm -rf /tmp/gpu-next-p4 # its room is the wide pack's
# A warm machine may still hold scripts/peer-bench.sh's scratch (~52 GB of the 64 GB disk): run 31's
# first try packed nothing for it ("no space left on device").
if [ -d /tmp/fmoe-peer ]; then echo "removing peer-bench's scratch /tmp/fmoe-peer for the packs"; rm -rf /tmp/fmoe-peer; fi
mk() {
  [ -f "$1/model_weights.json" ] && return
  local src=$1.src
  [ "$2" -gt 4 ] && [ "$(df -k --output=avail /dev/shm 2>/dev/null | tail -1)" -gt $(( (${2} * 37 / 10 + 2) * 1048576 )) ] &&
    src=/dev/shm/$(basename "$1").src
  "$B/fmoe-pack" synth --preset qwen3.5-397b-a17b --layers "$2" --out "$src" --force -q > /dev/null &&
    "$B/fmoe-pack" convert --in "$src" --out "$1" --force -q > /dev/null
  rm -rf "$src"
}
p1=
on L && { mk $M1 1 & p1=$!; }
mk $M4 "$N4" & p4=$!
el "A: correctness on CUDA"
on A && FMOE_CUDA_REQUIRE=1 timeout 120 "$B/cuda.test" -test.run 'Conformance|BindPaths|ReadPaths|UploadRing|EvictLayer|ExpertCache|PrefetchExpert|Timeline|Stamps|LinkPacer' 2>&1 | grep -E -- '--- FAIL|^(FAIL|ok|PASS)|_test.go:[0-9]+:' | tail -15
for v in ${A_VARIANTS:-FMOE_CUDA_UPLOAD= FMOE_CUDA_UPLOAD=mapped FMOE_CUDA_EVICT=layer}; do
  on A && (cd runtime/model && env "$v" FMOE_TEST_BACKEND=cuda timeout 120 "$B/model.test" -test.short -test.v \
    -test.run 'ForwardGreedy|GenerateStops|GenerateGreedy|CPUMissesOnDevice|GoldenDevicePartial|CPUMissesPrefetched|DevicePartialOwnPrediction|DeviceTablePrefetch|PrefetchGolden' 2>&1 |
    grep -E -- '^--- (PASS|FAIL|SKIP)|^(FAIL|ok|PASS)|_test.go' | tail -20 | sed "s/^/$v /")
done
# The packs' jobs by pid: a bare wait would also wait for the tee above, which ends only with the script.
wait $p4 ${p1:-}
# The ceilings of this machine, as scripts/gpu-bench.sh measures them: gpu-ab.sh then prints each
# tiered line's floor and the time over it (issue 12's 1.5x), the floor no longer borrowed from another run.
if on D2 || on R; then
  FMOE_CUDA_REQUIRE=1 timeout 60 "$B/cuda.test" -test.run '^$' -test.bench 'CopyDtoD|H2D/raw-pinned' -test.benchtime 50x 2>&1 | grep -E '^Benchmark' > /tmp/gpu-next-ceil
  export HBM=$(awk '/CopyDtoD/{for(i=1;i<=NF;i++) if($i=="GB/s-rw-gpu") print $(i-1)}' /tmp/gpu-next-ceil | head -1)
  export H2D=$(awk '/raw-pinned/{for(i=1;i<=NF;i++) if($i=="MB/s") print $(i-1)/1000}' /tmp/gpu-next-ceil | head -1)
  echo "ceilings: HBM (device copy, read+write) $HBM GB/s; pinned host-to-device $H2D GB/s"
fi
el "L: row 2's link beside the share, K=10 timeline"
# Issue 13's row 2 at K=10 (every expert from the host tier, none in a GPU tier, --cpu-experts auto):
# the automatic share puts an expert over the link at 0.159-0.179 ms (runs 14, 16, 27) where its
# 7.08 MB take ~0.13 at the link's measured rate; the timeline says whether the link idles between
# a layer's copies (the host late to queue them) or the copies themselves are slow.
# --timing syncs after each phase, so it runs apart from the traced run (its share line: where auto settled).
if on L && upto $((CAP - 60)); then
  lrun() { timeout 60 "$B/fmoe-run" generate --model $M1 --backend cuda --ids "$(seq -s, 1 64)" --tokens 160 -k 10 \
    --gpu-cache 0 --host-cache 8G --cpu-experts auto "$@" 2>&1; }
  lrun --timing | grep -E 'cpu share|cpu_share_wait|rror'
  FMOE_CUDA_TRACE=/tmp/gpu-next-l.tsv lrun | grep -E 'generated in|rror'
  python3 scripts/gpu-timeline.py /tmp/gpu-next-l.tsv | head -30
  python3 scripts/gpu-timeline.py /tmp/gpu-next-l.tsv --dump > "${OUT:-/tmp}/timeline-row2-k10.txt" 2>&1
fi
el "D2: tiered K=10, the CPUs' share of the misses"
on D2 && upto $((CAP - 60)) && BIN=$B M=$M4 AB_WARM=200 AB_TOKENS=100 AB_KS=10 AB_ROUNDS=2 \
  AB_VARIANTS='FMOE_BENCH_MISS_SHARE=auto;FMOE_BENCH_MISS_SHARE=auto FMOE_BENCH_MISS_ADMIT=1;FMOE_BENCH_MISS_SHARE=auto FMOE_BENCH_MISS_ADMIT=1 FMOE_BENCH_MISS_TUNE=affine' \
  AB_TIERS="tiered-preload-prefetch-table tiered-preload-prefetch-table-cpumiss" timeout 200 bash scripts/gpu-ab.sh
el "R: the tiered layer, R_VARIANTS"
RV='TIERS=tiered-preload-table;-;FMOE_BENCH_PF_PACE=1;FMOE_BENCH_PF_PACE=2;FMOE_BENCH_PF_PACE=1 FMOE_CUDA_PF_STREAM=1;FMOE_BENCH_PREFETCH_AHEAD=1'
on R && upto $((CAP - 60)) && BIN=$B M=$M4 AB_WARM=200 AB_TOKENS=100 AB_KS="${R_KS:-10}" AB_ROUNDS=${R_ROUNDS:-1} \
  AB_VARIANTS="${R_VARIANTS:-$RV}" AB_TIERS="${R_TIERS:-tiered-preload-prefetch-table}" timeout $((CAP + t0 - $(date +%s) - 5)) bash scripts/gpu-ab.sh
el "E: the tiered K=4 timeline"
# E_VARIANTS (default: as it is, and paced): one environment assignment each; E_K (default 4).
T=tiered-preload-prefetch-table
for v in ${E_VARIANTS:-FMOE_CUDA_EVICT= FMOE_BENCH_PF_PACE=1}; do
  if on E && upto $((CAP - 60)); then
    echo "$v K=${E_K:-4}"
    (cd runtime/model && env "$v" FMOE_CUDA_TRACE=/tmp/gpu-next-tl.tsv FMOE_TEST_BACKEND=cuda FMOE_BENCH_MODEL=$M4 \
      FMOE_BENCH_TIERS=$T FMOE_BENCH_WARM=300 FMOE_BENCH_TOKENS=60 timeout 40 "$B/model.test" -test.run '^$' \
      -test.bench "TieredDecode/k=${E_K:-4}/$T\$" -test.benchtime 1x 2>&1 | grep -E '^Benchmark|FAIL|panic')
    python3 scripts/gpu-timeline.py /tmp/gpu-next-tl.tsv | head -30
    python3 scripts/gpu-timeline.py /tmp/gpu-next-tl.tsv --dump > "${OUT:-/tmp}/timeline-dump-${v%%=*}-${v#*=}.txt" 2>&1
  fi
done
el "G: the share's stages in Go traces"
# FMOE_GO_TRACE: the share's stages (runtime/model's share.* regions) and the pool's wakes, read on
# the dev box by scripts/go-trace-share.py. Run 29: a K=4 share's workers sit runnable up to 160 µs
# waiting for a P (Go's chain of thread wakes), 60 with the futex wake, alike on two threads fewer.
# Each variant is "threads environment": the default (since run 30 the share as one task of the
# pool, woken by a futex), the old three ops on the channel wake, and a 1 ms poll on two threads
# fewer (FMOE_CPU_POLL; fmoe-run then raises GOMAXPROCS by the threads). Then the share's rounds at
# K=4 and K=10, G_ROUNDS (default 3), every core: the default, it primed 300 µs from each layer's
# routing (the task's first part starts ~85 µs after the share's start in run 30's K=10 traces, its
# workers woken from idle vCPUs; primed, BenchmarkExpertsAfterIdle's two experts took 253 µs
# against 391), the task on the channel wake, the three ops on it (run 30: 0.825, 0.888, 0.954 ms
# a K=4 token).
th2=$(($(nproc) - 2))
for k in 4 10; do
  for v in "$(nproc) -" "$(nproc) FMOE_CPU_SHARE=ops FMOE_CPU_WAKE=channel" "$th2 FMOE_CPU_POLL=1ms"; do
    read -r th envs <<< "$v"
    tag=$(echo "$envs" | tr -c 'A-Za-z0-9\n' '-')
    [ "$envs" = - ] && envs=
    on G && upto $((CAP - 60)) && env $envs FMOE_GO_TRACE="${OUT:-/tmp}/share-k$k-t$th-$tag.trace" timeout 60 \
      "$B/fmoe-run" generate --model $M1 --backend cuda --ids "$(seq -s, 1 64)" --tokens 128 -k $k --gpu-cache 0 \
      --host-cache 8G --cpu-experts auto --threads "$th" 2>&1 | grep -E 'generated in|rror' |
      sed "s/^/K=$k threads=$th ${envs:--} /"
  done
done
# The share alone, after 1 ms idle and back to back, as three ops and as one task (1, 2, 4 experts),
# woken by the futex (fmoe-run's default since run 30) and through the channels (run 30's figures).
for wk in futex ""; do
  on G && upto $((CAP - 60)) && (cd runtime/backend/cpu && FMOE_BENCH_WAKE=$wk FMOE_BENCH_THREADS=$(nproc) timeout 40 "$B/cpu.test" \
    -test.run '^$' -test.bench ExpertsAfterIdle -test.benchtime 200x 2>&1 | grep -E '^Benchmark|FAIL|panic' | sed "s/^/wake=${wk:-channel} /")
done
for k in 4 10; do
  on G && upto $((CAP - 60)) && BIN=$B SHARE_MODEL=$M1 SHARE_K=$k SHARE_SHARES="auto" SHARE_ROUNDS=${G_ROUNDS:-3} \
    SHARE_VARIANTS="-;FMOE_CPU_PRIME=300us;FMOE_CPU_WAKE=channel;FMOE_CPU_SHARE=ops FMOE_CPU_WAKE=channel" timeout 150 bash scripts/gpu-cpushare.sh |
    sed "s/^/K=$k /"
done
el "B: the share in place, K=4 and K=10"
for k in 4 10; do
  on B && upto $((CAP - 60)) && BIN=$B SHARE_MODEL=$M1 SHARE_K=$k SHARE_SHARES="0 auto" SHARE_ROUNDS=2 \
    SHARE_VARIANTS="-;FMOE_CPU_PRIME=300us" timeout 100 bash scripts/gpu-cpushare.sh | sed "s/^/K=$k /"
done
# Two cores fewer for the share: whether its threads, one per P, make the GPU's host work (the
# link's copies, the combine) wait for a P, a candidate for the share's fixed cost that a check on
# the dev box made unlikely (peer run 14: 0.330 ms an expert for one or two against 0.162 for five).
for k in 4 10; do
  on B && upto $((CAP - 60)) && BIN=$B SHARE_MODEL=$M1 SHARE_K=$k SHARE_SHARES="auto" SHARE_ROUNDS=2 \
    SHARE_THREADS=$(($(nproc) - 2)) SHARE_VARIANTS="-;FMOE_CPU_WAKE=channel" timeout 60 bash scripts/gpu-cpushare.sh |
    sed "s/^/K=$k threads=$(($(nproc) - 2)) /"
done
el "D: the head"
on D && upto $((CAP - 60)) && BIN=$B M=$M4 AB_VARIANTS='-;FMOE_BENCH_LOGITS=1' AB_TIERS="resident-dev tiered-preload-prefetch-table" \
  AB_KS=4 AB_ROUNDS=2 timeout 90 bash scripts/gpu-ab.sh
el "C: the CPUs beside the link"
th=$(nproc)
for hg in 0 1; do
  on C && upto $((CAP - 40)) && (cd runtime/model && FMOE_CUDA_HOST_HUGE=$hg FMOE_TEST_BACKEND=cuda FMOE_BENCH_MODEL=$M1 FMOE_BENCH_THREADS=$th \
    timeout 30 "$B/model.test" -test.run '^$' -test.bench CPUBesideLink -test.benchtime 10x 2>&1 | grep -E '^Benchmark|FAIL|panic' | sed "s/^/huge=$hg /")
done
for pg in 4k huge; do
  on C && upto $((CAP - 30)) && (cd runtime/backend/cpu && FMOE_BENCH_PAGES=$pg FMOE_BENCH_THREADS=$th timeout 20 "$B/cpu.test" -test.run '^$' \
    -test.bench 'Experts$/threads=[0-9]+/K=10/(batch|read)' 2>&1 | grep -E '^Benchmark|FAIL|panic' | sed "s/^/pages=$pg /")
done
for wk in "" futex; do
  on C && upto $((CAP - 20)) && (cd runtime/backend/cpu && FMOE_BENCH_WAKE=$wk FMOE_BENCH_THREADS=$th timeout 40 "$B/cpu.test" -test.run '^$' -test.bench ExpertsAfterIdle -test.benchtime 200x 2>&1 |
    grep -E '^Benchmark|FAIL|panic' | sed "s/^/wake=${wk:-channel} /")
done
el done
