#!/usr/bin/env bash
# The CPU share beside the link in one device call (issue 13 row 2, docs/benchmarks.md run 26):
# fmoe-run generate on a 1-layer synthetic Qwen3.5-397B pack (mlx-4bit, made in ~10 s unless
# SHARE_MODEL names one), every expert in the host tier and none in the GPU tier, for each variant
# and share, the variants alternating SHARE_ROUNDS times (default 3) so that drift shows. Prints a
# line a run: variant, share, tok/s, median step with p10 and p90 (ms), then one --timing run a
# variant at the first share above 0 (cpu_share_wait: how long the GPU waited for the CPU's part).
#   BIN            binaries (fmoe-pack, fmoe-run; plain or .xz), default gpu/
#   SHARE_VARIANTS variants separated by ';', each environment assignments ('-' for none) and
#                  BIN=DIR for another build's fmoe-run, e.g. '-;FMOE_CPU_POLL=2ms;BIN=/tmp/old'
#   SHARE_SHARES   --cpu-experts values (default "0 0.3 0.4 0.5"; auto too gives its --timing), SHARE_K (default 10),
#                  SHARE_THREADS --threads (default: every core), SHARE_TOKENS (default 256)
set -u
cd "$(dirname "$0")/.."
unpack() { # DIR: its .xz binaries unpacked to a temporary directory, printed; else DIR itself
  local d=$1 out
  ls "$d"/*.xz > /dev/null 2>&1 || { realpath "$d"; return; }
  out=$(mktemp -d); for f in "$d"/*.xz; do xz -dc "$f" > "$out/$(basename "$f" .xz)"; done
  chmod +x "$out"/*; echo "$out"
}
B=$(unpack "${BIN:-gpu}")
M=${SHARE_MODEL:-}
if [ -z "$M" ]; then
  M=$(mktemp -d)/p
  "$B/fmoe-pack" synth --preset qwen3.5-397b-a17b --layers 1 --out "$M.src" --force -q > /dev/null &&
    "$B/fmoe-pack" convert --in "$M.src" --out "$M" --force -q > /dev/null || { echo "gpu-cpushare: packing failed"; exit 1; }
  rm -rf "$M.src"
fi
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
ids=$(seq -s, 1 64)
IFS=';' read -r -a variants <<< "${SHARE_VARIANTS:--}"
run() { # VARIANT SHARE [flags]: one fmoe-run generate under the variant's environment
  local v=$1 share=$2 envs=() fb=$B; shift 2
  [ "$v" != - ] && read -r -a envs <<< "$v"
  for i in "${!envs[@]}"; do
    case ${envs[$i]} in BIN=*) fb=$(unpack "${envs[$i]#BIN=}"); unset 'envs[i]' ;; esac
  done
  local cx=(); [ "$share" != 0 ] && cx=(--cpu-experts "$share")
  env "${envs[@]}" "$fb/fmoe-run" generate --model "$M" --backend cuda --ids "$ids" --tokens "${SHARE_TOKENS:-256}" \
    -k "${SHARE_K:-10}" --gpu-cache 0 --host-cache 8G "${cx[@]}" ${SHARE_THREADS:+--threads "$SHARE_THREADS"} "$@" 2>&1
}
printf '%-32s %5s %9s %9s %7s %7s\n' variant share tok/s median p10 p90
for round in $(seq "${SHARE_ROUNDS:-3}"); do
  for v in "${variants[@]}"; do
    for share in ${SHARE_SHARES:-0 0.3 0.4 0.5}; do
      run "$v" "$share" | sed -n 's/.*generated in [^(]*(\([0-9.]*\) tok\/s; median step \([0-9.]*\) ms; p10 \([0-9.]*\), p90 \([0-9.]*\) ms.*/\1 \2 \3 \4/p' |
        awk -v v="$v" -v s="$share" '{printf "%-32s %5s %9s %9s %7s %7s\n", v, s, $1, $2, $3, $4}'
    done
  done
done
first=$(for s in ${SHARE_SHARES:-0 0.3 0.4 0.5}; do [ "$s" != 0 ] && { echo "$s"; break; }; done)
[ -n "$first" ] && for v in "${variants[@]}"; do
  echo "## --timing, $v, share $first"
  run "$v" "$first" --timing | grep -E 'expert_compute|cpu_share_wait|layer_total'
done
case " ${SHARE_SHARES:-} " in *" auto "*)
  echo "## --timing, -, share auto"
  run - auto --timing | grep -E 'expert_compute|cpu_share_wait|layer_total|computed on the CPU|cpu share' ;;
esac
