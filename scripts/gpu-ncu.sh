#!/usr/bin/env bash
# Each kernel of a decode step timed alone by Nsight Compute (docs/benchmarks.md run 14):
# BenchmarkTieredDecode on the synthetic 397B that scripts/gpu-bench.sh left (BENCH_KEEP=1), under
# `ncu --clock-control none` (the clocks left alone, as the device notes ask), the layers' CUDA
# graphs on and every node profiled by itself: no launch gaps, ~2 µs of floor a kernel. Prints, per
# kernel and launch shape, the calls, µs a call, DRAM GB/s, share of the summed time, registers a
# thread and achieved occupancy. Binaries in BIN (model.test), the model in M. NCU_TIERS (default
# resident-dev), NCU_KS (default "10"), NCU_SKIP launches to skip first (default 600: past the
# warm-up's first tokens), NCU_COUNT launches to profile (default 220: two tokens of 4 layers and
# the head). NCU_MMV=1 adds the integer matvec's stall reasons on BenchmarkMMV's batched gate/up;
# NCU_MMAS=N the stall reasons, issue and tensor-pipe use and shared-memory conflicts, over an N-token
# prompt at K=10, of each kernel named in NCU_MMAS_KERNELS (default: mmas_q4, the prefill's grouped
# experts; delta_step, the recurrence; mma_q4, the mixer's matmuls), two launches each.
set -u
cd "$(dirname "$0")/.."
B=$(realpath "${BIN:-gpu}")
M=${M:-/tmp/fmoe-gpu-bench/packed}
NCU=$(command -v ncu || echo /usr/local/cuda/bin/ncu)
[ -x "$NCU" ] || { echo "gpu-ncu: no ncu"; exit 1; }
[ -f "$M/model_weights.json" ] || { echo "gpu-ncu: no model at $M (run scripts/gpu-bench.sh with BENCH_KEEP=1 first)"; exit 1; }
csv=$(mktemp)
trap 'rm -f "$csv"' EXIT
summarize() {
  python3 - "$csv" <<'PY'
import collections, csv, sys
rows = [r for r in csv.reader(open(sys.argv[1])) if len(r) > 10]
if not rows:
    sys.exit("gpu-ncu: ncu wrote no metrics")
ix = {n: i for i, n in enumerate(rows[0])}
t = collections.defaultdict(lambda: collections.defaultdict(float))
n = collections.Counter()
for r in rows[1:]:
    try:
        v = float(r[ix['Metric Value']].replace(',', ''))
    except ValueError:
        continue
    key = (r[ix['Kernel Name']][:34], r[ix['Block Size']], r[ix['Grid Size']])
    t[key][r[ix['Metric Name']]] += v
    if r[ix['Metric Name']] == 'gpu__time_duration.sum':
        n[key] += 1
tot = sum(x['gpu__time_duration.sum'] for x in t.values())
for key, x in sorted(t.items(), key=lambda z: -z[1]['gpu__time_duration.sum']):
    c, d = max(n[key], 1), x['gpu__time_duration.sum']
    print("%-34s %-12s %-14s n=%4d %8.2f us %7.1f GB/s %5.1f%% regs=%3.0f occ=%4.1f%%" % (key + (n[key], d / c / 1e3,
          x['dram__bytes_read.sum'] / max(d, 1), 100 * d / tot, x['launch__registers_per_thread'] / c,
          x['sm__warps_active.avg.pct_of_peak_sustained_active'] / c)))
print("summed kernel time %.1f us over %d launches" % (tot / 1e3, sum(n.values())))
PY

}
metrics=gpu__time_duration.sum,dram__bytes_read.sum,launch__registers_per_thread,sm__warps_active.avg.pct_of_peak_sustained_active
for k in ${NCU_KS:-10}; do
  if [ -n "${NCU_PREFILL:-}" ]; then
    echo "== ncu prefill of ${NCU_PREFILL} tokens, K=$k, every expert in the GPU tier"
    ids=$(seq -s, 1 "$NCU_PREFILL")
    timeout 240 "$NCU" --clock-control none --csv --print-units base --metrics "$metrics" --launch-count "${NCU_COUNT:-600}" \
      "$B/fmoe-run" generate --model "$M" --backend cuda --preload --k "$k" --ids "$ids" --tokens 1 > "$csv" 2> /dev/null
    summarize
    continue
  fi
  for t in ${NCU_TIERS:-resident-dev}; do
    echo "== ncu K=$k $t"
    (cd runtime/model && FMOE_TEST_BACKEND=cuda FMOE_BENCH_MODEL=$M FMOE_BENCH_TIERS=$t FMOE_BENCH_WARM=3 FMOE_BENCH_TOKENS=3 \
      timeout 150 "$NCU" --clock-control none --csv --print-units base --metrics "$metrics" \
        --launch-skip "${NCU_SKIP:-600}" --launch-count "${NCU_COUNT:-220}" \
        "$B/model.test" -test.run '^$' -test.bench "TieredDecode/k=$k/$t\$" -test.benchtime 1x > "$csv" 2> /dev/null)
    summarize
  done
done
if [ "${NCU_MMV:-0}" = 1 ]; then
  echo "== ncu stall reasons, BenchmarkMMV batch 20x gate/up (cycles a warp waits per issued instruction)"
  (cd runtime/backend/cuda && FMOE_BENCH_MMV_SHAPE="batch 20x" FMOE_BENCH_MMV_WPSM=32 timeout 90 "$NCU" --clock-control none \
    --metrics 'regex:smsp__average_warps_issue_stalled_.*_per_issue_active\.ratio,gpu__time_duration.sum,launch__registers_per_thread,dram__throughput.avg.pct_of_peak_sustained_elapsed' \
    -k 'regex:^mmvs?_batch_q4$' --launch-skip 20 --launch-count 1 \
    "$B/cuda.test" -test.run '^$' -test.bench 'BenchmarkMMV$' -test.benchtime 1x 2>&1 |
    grep -E 'stalled|duration|registers|dram__' | sed 's/smsp__average_warps_issue_stalled_//; s/_per_issue_active.ratio//')
fi
if [ -n "${NCU_MMAS:-}" ]; then
  ids=$(seq -s, 1 "$NCU_MMAS")
  for kn in ${NCU_MMAS_KERNELS:-mmas_q4 delta_step mma_q4}; do
    echo "== ncu prefill of ${NCU_MMAS} tokens, K=10: $kn (stalls: cycles a warp waits per issued instruction)"
    timeout 120 "$NCU" --clock-control none -k "regex:^$kn\$" --launch-count 2 \
      --metrics 'regex:smsp__average_warps_issue_stalled_.*_per_issue_active\.ratio,gpu__time_duration.sum,launch__registers_per_thread,dram__throughput.avg.pct_of_peak_sustained_elapsed,smsp__issue_active.avg.pct_of_peak_sustained_active,sm__pipe_tensor_op_hmma_cycles_active.avg.pct_of_peak_sustained_active,l1tex__data_bank_conflicts_pipe_lsu_mem_shared.sum,smsp__inst_executed.sum,sm__warps_active.avg.pct_of_peak_sustained_active,launch__grid_size' \
      "$B/fmoe-run" generate --model "$M" --backend cuda --preload --k 10 --ids "$ids" --tokens 1 2>&1 |
      grep -E "^  $kn|stalled|duration|registers|dram__|issue_active|hmma|bank_conflicts|inst_executed|warps_active|grid_size" |
      awk '$NF+0 != 0 || /^  [a-z]/' | sed 's/smsp__average_warps_issue_stalled_//; s/_per_issue_active.ratio//'
  done
fi
