#!/usr/bin/env bash
# Decode timing of DeepSeek-V3-671B and Kimi-K2-1T on the GPU (issue 14): for each model, a
# synthetic checkpoint of its first layers with the published sizes (fmoe-pack synth, mlx-4bit
# layout, random weights) is packed, its source deleted, and `fmoe-run generate --timing
# --backend cuda` decodes TOKENS tokens; the [timing] report gives ms per token per layer and the
# KV cache bytes per token (MLA: the latent and the rotary key, float32).
#
# DeepSeek-V3 begins with 3 dense layers and Kimi-K2 with 1, so the default runs synthesise 5 and 3
# layers: two layers with experts each. Disk, measured by the size table (fmoe-pack synth --list):
# a layer's experts at 4 bits are 256 x 24.8 MB = 6.3 GB (DeepSeek-V3) and 384 x 24.8 MB = 9.5 GB
# (Kimi-K2); the mlx-4bit source and the pack are each about that per MoE layer plus ~1 GB of
# embeddings and dense layers, one model at a time (source deleted after packing, pack after
# timing unless KEEP=1): ~40 GB free needed for Kimi-K2. The script checks before writing.
#
# Binaries come prebuilt in $BIN (default gpu/): fmoe-pack and fmoe-run
# (go build -o gpu/ ./cmd/fmoe-pack ./cmd/fmoe-run).
#
# Dry run on any machine (CPU, tiny shape, hf layout):
#   RUNS="deepseek-v3-tiny:4:hf" BACKEND=cpu scripts/gpu-families.sh
set -euo pipefail
cd "$(dirname "$0")/.."
B=$(realpath "${BIN:-gpu}")
DIR=${DIR:-/tmp/fmoe-families}
RUNS=${RUNS:-"deepseek-v3-671b:5:mlx-4bit kimi-k2-1t:3:mlx-4bit"}
BACKEND=${BACKEND:-cuda}
TOKENS=${TOKENS:-16}
mkdir -p "$DIR"
if command -v nvidia-smi >/dev/null; then
  nvidia-smi --query-gpu=name,memory.total,memory.free,driver_version --format=csv,noheader
fi
echo "# $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GB RAM, disk free $(df -h "$DIR" | awk 'NR==2{print $4}')"
"$B/fmoe-pack" synth --list > "$DIR/sizes.md"
fail=0
for run in $RUNS; do
  IFS=: read -r preset layers layout <<< "$run"
  row=$(grep "^| $preset |" "$DIR/sizes.md") || { echo "no preset $preset (fmoe-pack synth --list)"; fail=1; continue; }
  # columns: preset H I moe-layers experts K expert4 ...
  experts=$(awk -F'|' '{gsub(/ /,"",$6); print $6}' <<< "$row")
  expert4=$(awk -F'|' '{gsub(/[ ,B]/,"",$8); print $8}' <<< "$row")
  # Two layers with experts, source and pack, plus 8 GB for embeddings, dense layers and slack.
  need=$(( 2 * 2 * experts * expert4 / 1000000000 + 8 ))
  free=$(df -BG --output=avail "$DIR" | tail -1 | tr -dc 0-9)
  echo "== $preset, $layers layers ($layout): needs ~$need GB, $free GB free"
  if [ "$free" -lt "$need" ]; then
    echo "not enough disk for $preset (set DIR to a larger disk)"; fail=1; continue
  fi
  src=$DIR/$preset-src M=$DIR/$preset
  t0=$(date +%s)
  "$B/fmoe-pack" synth --preset "$preset" --layers "$layers" --layout "$layout" --out "$src" --force -q
  "$B/fmoe-pack" convert --in "$src" --out "$M" --force -q >/dev/null
  rm -rf "$src"
  echo "packed in $(( $(date +%s) - t0 )) s: $(du -sh "$M" | cut -f1)"
  cat "$M"/packed_experts/*.bin > /dev/null # page cache: the timing is the compute's
  "$B/fmoe-run" generate --model "$M" --backend "$BACKEND" --timing --ids 1,2,3,4,5,6,7,8 --tokens "$TOKENS" \
    > "$DIR/$preset.out" 2> "$DIR/$preset.err" || { cat "$DIR/$preset.err"; fail=1; }
  grep -E '^\[timing\]|^  |backend' "$DIR/$preset.err" || true
  [ "${KEEP:-0}" = 1 ] || rm -rf "$M"
done
echo "MLA KV cache per token for the full models (fmoe-pack synth --list): $(grep -E '^\| (deepseek-v3-671b|kimi-k2-1t) ' "$DIR/sizes.md" | awk -F'|' '{print $2 ":" $13 "(f32),  without MLA" $14 "(bf16);"}' | tr -s ' ')"
echo "gpu-families: $([ $fail = 0 ] && echo PASS || echo FAIL)"
exit $fail
