#!/usr/bin/env bash
# Everything the GPU machine checks and measures, in one device call (~3 minutes plus ~1.5 for the
# prefill benchmark), so that a session's 30 device-minutes go to few calls:
#   1. scripts/gpu-check.sh (correctness: conformance, tiers, graphs, tensor cores, every golden);
#   2. scripts/gpu-mvsweep.sh (decode matvec settings; bit-identity of every setting);
#   3. scripts/gpu-families.sh (DeepSeek-V3 671B and Kimi-K2 1T synth timing), beside 1–2;
#   4. python3 scripts/goldens/tokenizer_crosscheck.py (the tokenizers against Python's);
#   5. scripts/gpu-bench.sh decode (resident and scaled tiers, K=4 and K=10);
#   6. scripts/gpu-bench.sh prefill (BENCH_PREFILL=1024), while time is left.
# Binaries from scripts/gpu-bins.sh in BIN (default .gpu/bin; .xz or plain). Logs go to $OUT (the
# device tool's folder) or LOGS. ALL_SKIP (words: check, mvsweep, families, tok, prefill) leaves stages out;
# ALL_EXTRA, a command, runs after gpu-check with the binaries in $B; ALL_POST after the decode
# benchmark, with its model in $M (e.g. 'BIN=$B bash scripts/gpu-profile.sh'). GPU stages take a lock so that no two time the GPU at once (the
# families' generate runs wait for it); ALL_BUDGET (default 390 s) bounds the optional stages.
set -u
cd "$(dirname "$0")/.."
T0=$(date +%s)
el() { echo "[t=$(( $(date +%s) - T0 ))s] $*"; }
logs=${OUT:-${LOGS:-/tmp/fmoe-gpu-all}}
mkdir -p "$logs"
src=$(realpath "${BIN:-.gpu/bin}")
B=/tmp/fmoe-gpu-bin
mkdir -p "$B/lock"
for f in "$src"/*; do
  n=$(basename "$f" .xz)
  if [ "$n" != "$(basename "$f")" ]; then xz -dc "$f" > "$B/$n"; else cp "$f" "$B/$n"; fi
  chmod +x "$B/$n"
done
lock=/tmp/fmoe-gpu.lock
L() { flock "$lock" "$@"; }
# gpu-families.sh calls fmoe-run from its BIN: a wrapper there takes the lock
cp "$B/fmoe-pack" "$B/lock/"
printf '#!/bin/sh\nexec flock %s %s/fmoe-run "$@"\n' "$lock" "$B" > "$B/lock/fmoe-run"
chmod +x "$B/lock/fmoe-run"
skip() { case " ${ALL_SKIP:-} " in *" $1 "*) return 0;; esac; return 1; }
fam=
if ! skip families; then
( BIN=$B/lock DIR=/tmp/fmoe-families timeout 270 bash scripts/gpu-families.sh > "$logs/families.log" 2>&1
  echo "rc=$?" >> "$logs/families.log" ) &
fam=$!
fi
skip tok || ( PYTHONUNBUFFERED=1 timeout 120 python3 scripts/goldens/tokenizer_crosscheck.py > "$logs/tok.log" 2>&1
  echo "rc=$?" >> "$logs/tok.log" ) &
if ! skip check; then  # skip only with binaries that an earlier call's gpu-check passed
  el gpu-check
  BIN=$B L timeout 200 bash scripts/gpu-check.sh > "$logs/check.log" 2>&1
  echo "gpu-check rc=$?"
  grep -E -- '--- FAIL|^gpu-check' "$logs/check.log" | head -20
fi
if [ -n "${ALL_EXTRA:-}" ]; then
  el extra
  B=$B L timeout 200 bash -c "$ALL_EXTRA" > "$logs/extra.log" 2>&1
  echo "extra rc=$?"
  tail -30 "$logs/extra.log"
fi
if ! skip mvsweep; then
  el mvsweep
  BIN=$B L timeout 170 bash scripts/gpu-mvsweep.sh > "$logs/sweep.log" 2>&1
  echo "mvsweep rc=$?"
  grep -E -- '^--- |mvsweep (best|overall)' "$logs/sweep.log" | head -16
fi
if [ -n "$fam" ]; then
  el "families"
  wait $fam
  tail -40 "$logs/families.log"
fi
skip tok || { wait; tail -4 "$logs/tok.log"; }
left() { echo $(( ${ALL_BUDGET:-390} - ($(date +%s) - T0) )); }
if [ "$(left)" -gt 90 ]; then
  el decode
  BIN=$B BENCH_KEEP=1 BENCH_TIERS=${ALL_TIERS:-resident,scaled} BENCH_WARM=300 BENCH_TOKENS=100 \
    timeout "$(( $(left) - 10 ))" bash scripts/gpu-bench.sh > "$logs/decode.log" 2>&1
  grep -E '^\| [0-9]|^HBM' "$logs/decode.log"
  if [ -n "${ALL_POST:-}" ] && [ "$(left)" -gt 30 ]; then
    el post
    B=$B M=/tmp/fmoe-gpu-bench/packed L timeout "$(( $(left) - 5 ))" bash -c "$ALL_POST" > "$logs/post.log" 2>&1
    echo "post rc=$?"
    cat "$logs/post.log"
  fi
fi
if ! skip prefill && [ "$(left)" -gt 100 ]; then
  el prefill
  BIN=$B BENCH_PREFILL=1024 BENCH_DECODE=0 timeout "$(( $(left) - 5 ))" bash scripts/gpu-bench.sh > "$logs/prefill.log" 2>&1
  tail -8 "$logs/prefill.log"
fi
el end
