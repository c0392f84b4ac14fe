#!/usr/bin/env bash
# The seed's question on the built-in model's bf16 weights: does 2-bit break JSON and tool calls,
# and does a better 2-bit rule fix it? Packs a bf16 checkpoint of fmoe-tiny-chat at 16, 8, 4 and 2
# bits, requantises the 4-bit pack to 2 bits with the seed's rule and with least squares, and
# runs the 60-prompt eval on each with the 16-bit pack as the reference for top-1 agreement and KL.
#   usage: scripts/quant-study.sh BF16_CHECKPOINT_DIR [SCRATCH_DIR]   (after make build)
# The bf16 checkpoint is not in the repository (34 MB). Make one where torch and transformers are
# (the project's GPU machine, ~5 minutes):
#   python3 scripts/goldens/train_tiny_chat.py --out DIR   # then BF16_CHECKPOINT_DIR=DIR/fmoe-tiny-chat/hf
# A retrained checkpoint is another draw of the same recipe (GPU training is not bit-exact), so
# pass its own eval file, whose reference answers are its own:
#   EVAL=DIR/fmoe-tiny-chat/eval/eval.json scripts/quant-study.sh DIR/fmoe-tiny-chat/hf
# SCRATCH_DIR (default /tmp/fmoe-quant-study) is deleted and rewritten.
set -euo pipefail
cd "$(dirname "$0")/.."
usage="usage: [EVAL=eval.json] scripts/quant-study.sh BF16_CHECKPOINT_DIR [SCRATCH_DIR]"
SRC=${1:?$usage}
T=${2:-/tmp/fmoe-quant-study}
B=bin
EVAL=${EVAL:-models/fmoe-tiny-chat/eval/eval.json}
if [ ! -f "$SRC/config.json" ]; then
  echo "quant-study: $SRC/config.json not found: BF16_CHECKPOINT_DIR must be a bf16 checkpoint of fmoe-tiny-chat (make one with scripts/goldens/train_tiny_chat.py)" >&2
  exit 2
fi
rm -rf "$T"; mkdir -p "$T"
for bits in 16 8 4 2; do
  $B/fmoe-pack convert -q --in "$SRC" --out "$T/b$bits" --bits "$bits" >/dev/null
done
for rule in seed minmax lsq; do
  cp -r "$T/b4" "$T/r4-$rule"
  $B/fmoe-pack requant -q --model "$T/r4-$rule" --bits 2 --rule "$rule" >/dev/null
done
run() { # label dir [flags]
  local label=$1 dir=$2; shift 2
  echo "== $label"
  $B/fmoe-run eval --model "$dir" --eval "$EVAL" --reference "$T/b16" "$@" | grep -E "^(exact|structurally|reproduces|[0-9]+ tokens|against)" || true
}
run "bf16 (16-bit pack)" "$T/b16"
run "8-bit experts, 8-bit dense" "$T/b8"
run "4-bit experts, 4-bit dense (minmax)" "$T/b4"
run "2-bit experts from bf16 (minmax), 4-bit dense" "$T/b2"
for rule in seed minmax lsq; do
  run "4-bit pack, experts requantised to 2-bit ($rule)" "$T/r4-$rule" --2bit
done
