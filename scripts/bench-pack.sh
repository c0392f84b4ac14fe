#!/usr/bin/env bash
# Packing throughput on a synthetic Qwen3.5-397B-A17B checkpoint (first BENCH_LAYERS layers),
# beside `cp` of the same bytes in the same run (followed by sync: the packer fsyncs what it
# writes, so both are timed to the disk), with peak RSS. Cold runs drop the page cache
# first when the machine allows it (root on Linux).
#   BENCH_DIR      scratch directory (default /tmp/fmoe-bench; needs ~40 GB with the bf16 case)
#   BENCH_LAYERS   layers for the mlx-4bit source (default 2)
#   BENCH_HF_LAYERS layers for the bf16 source (default 1; 0 skips it)
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=${BENCH_DIR:-/tmp/fmoe-bench}
LAYERS=${BENCH_LAYERS:-2}
HF_LAYERS=${BENCH_HF_LAYERS:-1}
BIN=bin
mkdir -p "$DIR"

drop() { sync; if [ -w /proc/sys/vm/drop_caches ]; then echo 3 > /proc/sys/vm/drop_caches; echo cold; else echo warm; fi; }
size() { du -sb "$1" | cut -f1; }
# run LABEL CMD...: prints seconds and peak RSS (KB) of CMD
run() {
  local label=$1; shift
  if ! /usr/bin/time -f '%e %M' -o "$DIR/.time" "$@" >/dev/null 2>"$DIR/.err"; then
    echo "$label failed: $(cat "$DIR/.err")" >&2; exit 1
  fi
  echo "$label $(tail -1 "$DIR/.time")"
}

echo "# machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(free -g | awk '/Mem:/{print $2}') GB RAM"
echo "# synthesising qwen3.5-397b-a17b, $LAYERS layers, mlx-4bit layout in $DIR"
$BIN/fmoe-pack synth --preset qwen3.5-397b-a17b --layers "$LAYERS" --out "$DIR/src-mlx" --force -q >/dev/null
bytes=$(size "$DIR/src-mlx")

printf '| case | cache | bytes | seconds | GB/s | peak RSS MB |\n|---|---|---|---|---|---|\n'
row() { # label cache bytes secs rsskb
  awk -v l="$1" -v c="$2" -v b="$3" -v s="$4" -v r="$5" 'BEGIN{printf "| %s | %s | %.2f GB | %.1f | %.2f | %.0f |\n", l, c, b/1e9, s, b/1e9/s, r/1024}'
}
for mode in cold warm; do
  rm -rf "$DIR/cp" "$DIR/packed-mlx"
  c=$( [ $mode = cold ] && drop || echo warm )
  read -r _ s r < <(run cp sh -c "cp -r '$DIR/src-mlx' '$DIR/cp' && sync")
  row "cp -r + sync (same bytes)" "$c" "$bytes" "$s" "$r"
  rm -rf "$DIR/cp"
  c=$( [ $mode = cold ] && drop || echo warm )
  read -r _ s r < <(run pack $BIN/fmoe-pack convert --in "$DIR/src-mlx" --out "$DIR/packed-mlx" --force -q)
  row "fmoe-pack convert mlx-4bit → packed" "$c" "$bytes" "$s" "$r"
done
rm -rf "$DIR/packed-mlx" "$DIR/src-mlx"

if [ "$HF_LAYERS" -gt 0 ]; then
  $BIN/fmoe-pack synth --preset qwen3.5-397b-a17b --layers "$HF_LAYERS" --layout hf --out "$DIR/src-hf" --force -q >/dev/null
  bytes=$(size "$DIR/src-hf")
  c=$(drop)
  read -r _ s r < <(run cp sh -c "cp -r '$DIR/src-hf' '$DIR/cp' && sync")
  row "cp -r + sync (same bytes, $HF_LAYERS layer bf16)" "$c" "$bytes" "$s" "$r"
  rm -rf "$DIR/cp"
  c=$(drop)
  read -r _ s r < <(run pack $BIN/fmoe-pack convert --in "$DIR/src-hf" --out "$DIR/packed-hf" --force -q)
  row "fmoe-pack convert bf16 → 4-bit" "$c" "$bytes" "$s" "$r"
  rm -rf "$DIR/packed-hf" "$DIR/src-hf"
fi
