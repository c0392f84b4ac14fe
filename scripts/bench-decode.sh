#!/usr/bin/env bash
# Decode on the CPU over a synthetic Qwen3.5-397B-A17B pack (first BENCH_LAYERS layers):
#  (a) expert read GB/s, K parallel preads of random experts (the runtime's reader, through
#      BenchmarkExpertRead) beside `cat` of one expert layer file, cold and warm, and with direct I/O;
#  (b) decode time per layer and tok/s at K=4 and K=10 from `fmoe-run generate --timing`, cold and
#      warm, extrapolated to 60 layers;
#  (c) peak RSS of each decode run (/usr/bin/time %M).
# Every case runs BENCH_REPEAT times and the medians are printed, with the load average.
# "Cold" drops the page cache (root on Linux), then reads model_weights.bin back, so that only the
# experts are cold, as when a 209 GB model runs in 24 GB; without root the cold rows are skipped.
# The synthetic model's router sends most tokens to the same few experts, so a cold decode run
# soon hits the cache (the report's hit share says how much); "direct" (--direct-io) reads every
# expert from the disk, the all-miss case.
#   BENCH_DIR     scratch directory (default /tmp/fmoe-bench-decode; ~16 GB at 4 layers, ~8 GB at 2)
#   BENCH_LAYERS  layers to synthesise (default 2: both GatedDeltaNet; 4 adds layer 3, full attention)
#   BENCH_MODEL   an existing packed model to use instead (not deleted)
#   BENCH_TOKENS  tokens to generate per decode run (default 16: 15 decode steps)
#   BENCH_REPEAT  repetitions of each case (default 3)
#   BENCH_KEEP    1 keeps the synthesised pack
#   BENCH_MAXLOAD before each case wait (up to 3 minutes) for the 1-minute load average to fall
#                 below this (default: no waiting); other work on the machine skews CPU timings
#   BENCH_BACKEND compute backend for the decode runs (default cpu; cuda on the GPU machine)
#   MODEL_TEST    a prebuilt `go test -c ./runtime/model` binary (machines without Go)
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=${BENCH_DIR:-/tmp/fmoe-bench-decode}
LAYERS=${BENCH_LAYERS:-2}
TOKENS=${BENCH_TOKENS:-16}
REPEAT=${BENCH_REPEAT:-3}
BIN=${BIN:-bin}
GO=${GO:-go}
PROMPT=1,2,3,4
mkdir -p "$DIR"

canDrop=0; [ -w /proc/sys/vm/drop_caches ] && canDrop=1
load() {
  if [ -n "${BENCH_MAXLOAD:-}" ]; then
    for _ in $(seq 36); do
      awk -v l="$(cut -d' ' -f1 /proc/loadavg)" -v m="$BENCH_MAXLOAD" 'BEGIN{exit !(l < m)}' && break
      sleep 5
    done
  fi
  cut -d' ' -f1 /proc/loadavg
}
median() { sort -g | awk '{v[NR]=$1} END{if(NR==0){print "-"} else if(NR%2){print v[(NR+1)/2]} else {print (v[NR/2]+v[NR/2+1])/2}}'; }

MODEL=${BENCH_MODEL:-}
if [ -z "$MODEL" ]; then
  MODEL=$DIR/packed
  echo "# synthesising qwen3.5-397b-a17b, $LAYERS layers, mlx-4bit, packing into $MODEL" >&2
  "$BIN/fmoe-pack" synth --preset qwen3.5-397b-a17b --layers "$LAYERS" --out "$DIR/src" --force -q >/dev/null
  "$BIN/fmoe-pack" convert --in "$DIR/src" --out "$MODEL" --force -q >/dev/null
  rm -rf "$DIR/src"
fi
EXP=$(ls "$MODEL"/packed_experts/*.bin | head -1)
NL=$(ls "$MODEL"/packed_experts/*.bin | wc -l)
if [ -n "${MODEL_TEST:-}" ]; then cp "$MODEL_TEST" "$DIR/model.test"; else $GO test -c -o "$DIR/model.test" ./runtime/model/; fi
BACKEND=${BENCH_BACKEND:-cpu}

# cold: evict everything, then bring the dense weights back (they are 5.5 GB of a 209 GB model
# and stay resident in practice); only the expert files are then cold.
cold() { sync; echo 3 > /proc/sys/vm/drop_caches; cat "$MODEL/model_weights.bin" > /dev/null; }

echo "# machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(free -g | awk '/Mem:/{print $2}') GB RAM, kernel $(uname -r)"
echo "# model: $MODEL ($NL layers, $(du -sh "$MODEL" | cut -f1)); $REPEAT runs per case, medians; load average at the start of each case"
echo
echo "## (a) expert reads"
echo
printf '| case | cache | GB/s | ms per K reads | load |\n|---|---|---|---|---|\n'
seq_read() { # prints GB/s of cat of one layer file
  local b s
  b=$(stat -c %s "$EXP")
  s=$( { /usr/bin/time -f %e cat "$EXP" > /dev/null; } 2>&1 | tail -1)
  awk -v b="$b" -v s="$s" 'BEGIN{printf "%.3f\n", b/1e9/s}'
}
pread_bench() { # K MODE -> "GB/s ms/layer"
  FMOE_BENCH_MODEL=$MODEL "$DIR/model.test" -test.run '^$' -test.bench "ExpertRead/k=$1/$2\$" -test.benchtime 30x |
    awk '/^BenchmarkExpertRead/{for(i=1;i<=NF;i++){if($i=="MB/s")g=$(i-1)/1000; if($i=="ms/layer")m=$(i-1)} printf "%.3f %.2f\n", g, m}'
}
for c in cold warm; do
  [ $c = cold ] && [ $canDrop = 0 ] && continue
  l=$(load); v=()
  for i in $(seq "$REPEAT"); do [ $c = cold ] && cold; [ $c = warm ] && cat "$EXP" > /dev/null; v+=("$(seq_read)"); done
  printf '| `cat` one layer file (sequential, %s MB) | %s | %s | | %s |\n' "$(( $(stat -c %s "$EXP") / 1000000 ))" $c "$(printf '%s\n' "${v[@]}" | median)" "$l"
  for k in 4 10; do
    l=$(load); g=(); t=()
    for i in $(seq "$REPEAT"); do
      # warm reruns the same seeded sequence right after the first (cold or warm) pass
      [ $c = cold ] && cold
      [ $c = warm ] && pread_bench $k buffered > /dev/null
      read -r a b < <(pread_bench $k buffered); g+=("$a"); t+=("$b")
    done
    printf '| %d parallel preads of random experts | %s | %s | %s | %s |\n' $k $c "$(printf '%s\n' "${g[@]}" | median)" "$(printf '%s\n' "${t[@]}" | median)" "$l"
  done
done
for k in 4 10; do
  l=$(load); g=(); t=()
  for i in $(seq "$REPEAT"); do read -r a b < <(pread_bench $k direct); g+=("$a"); t+=("$b"); done
  printf '| %d parallel preads, direct I/O (O_DIRECT) | disk | %s | %s | %s |\n' $k "$(printf '%s\n' "${g[@]}" | median)" "$(printf '%s\n' "${t[@]}" | median)" "$l"
done

echo
echo "## (b, c) decode: fmoe-run generate --backend $BACKEND --ids $PROMPT --tokens $TOKENS --timing"
echo
# field NAME COLUMN: value of a row of the timing report (column 1 prefill, 2 decode)
field() { awk -v n="$1" -v c="$2" '{k=$1; for(i=2;i<=NF && $i !~ /^[-0-9.]+%?$/;i++) k=k" "$i; if(k==n){v=$(i+c-1); sub("%","",v); print v; exit}}' "$DIR/.timing"; }
gen() { # K [FLAGS] -> writes $DIR/.timing, prints peak RSS KB
  [ -x /usr/bin/time ] || { echo 0 > "$DIR/.rss"; TIMECMD=; }
  ${TIMECMD-/usr/bin/time -f %M -o "$DIR/.rss"} "$BIN/fmoe-run" generate --backend "$BACKEND" --model "$MODEL" --ids $PROMPT --tokens "$TOKENS" --k "$1" --timing ${2:-} \
    > /dev/null 2> "$DIR/.timing"
  tail -1 "$DIR/.rss"
}
printf '| K | cache | decode steps | ms/layer | io wait ms/layer | expert compute ms/layer | deltanet ms | attention ms | embed+lm_head ms/token | tok/s (%d layers) | cache hits | MB/token | peak RSS MB | extrapolated 60 layers: ms/token, tok/s | load |\n' "$NL"
printf '|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n'
for k in 4 10; do
  for c in cold warm direct; do
    [ $c = cold ] && [ $canDrop = 0 ] && continue
    l=$(load); declare -A acc=()
    flags=; [ $c = direct ] && flags=--direct-io
    for i in $(seq "$REPEAT"); do
      [ $c = cold ] && cold
      [ $c = warm ] && gen $k > /dev/null   # identical ids: the same experts as the measured run
      rss=$(gen $k $flags)
      steps=$(awk '/\[timing\] decode:/{print $3}' "$DIR/.timing")
      tps=$(awk '/\[timing\] decode:/{for(i=1;i<=NF;i++) if($i=="tok/s") print $(i-1)}' "$DIR/.timing")
      full=$(awk '/\[timing\] [0-9]+ layers/{gsub(/\(/,""); print $4}' "$DIR/.timing")
      lt=$(field layer_total 2); dn=$(field deltanet 2); at=$(field attention 2)
      io=$(field expert_io_wait 2); ec=$(field expert_compute 2)
      eh=$(awk -v a="$(field embed 2)" -v b="$(field lm_head 2)" 'BEGIN{print a+b}')
      hit=$(field "page-cache hit, reads" 2); mb=$(field "MB read per token" 2)
      # 60 layers = 45 GatedDeltaNet + 15 full attention: the measured per-layer time without its
      # mixer, times 60, plus each mixer's measured time per layer of its kind, plus embed+lm_head.
      # With no full-attention layer measured (2 layers), the attention mixer is costed as deltanet.
      ex=$(awk -v lt="$lt" -v dn="$dn" -v at="$at" -v L="$NL" -v F="$full" -v eh="$eh" 'BEGIN{
        if (at == "-") at = dn
        moe = lt - (dn*(L-F) + at*F)/L
        printf "%.1f", 60*moe + 45*dn + 15*at + eh }')
      for kv in steps=$steps tps=$tps lt=$lt io=$io ec=$ec dn=$dn at=$at eh=$eh hit=$hit mb=$mb rss=$((rss/1024)) ex=$ex; do
        acc[${kv%%=*}]+="${kv#*=} "
      done
    done
    med() { printf '%s\n' ${acc[$1]} | median; }
    exm=$(med ex)
    hits=$(med hit); [ "$hits" = - ] && hits="bypassed" || hits="$hits%"
    printf '| %d | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s, %s | %s |\n' $k $c "$(med steps)" "$(med lt)" "$(med io)" "$(med ec)" \
      "$(med dn)" "$(med at)" "$(med eh)" "$(med tps)" "$hits" "$(med mb)" "$(med rss)" "$exm" "$(awk -v e="$exm" 'BEGIN{printf "%.2f", 1000/e}')" "$l"
    unset acc
  done
done
echo
echo "Seed (flash-moe, M3 Max GPU, K=4, 4-bit, 71% page-cache hits): 4.28 ms/layer, 257 ms/token, 3.90 tok/s."
echo "Last timing report:"; sed 's/^/    /' "$DIR/.timing"
[ -z "${BENCH_MODEL:-}" ] && [ "${BENCH_KEEP:-0}" != 1 ] && rm -rf "$MODEL"
rm -f "$DIR/model.test" "$DIR/.timing" "$DIR/.rss"
