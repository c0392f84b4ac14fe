#!/usr/bin/env bash
# fmoe beside llama.cpp on the same machine and the same weights (issue 13). Runs on the GPU
# machine, which has nvcc, cmake and python3 with torch but no Go and no network:
#   PEER_BIN    prebuilt fmoe-pack and fmoe-run (default .llama/bin)
#   LLAMA_TAR   llama.cpp source tarball (default .llama/llama.cpp.tar.xz; its FMOE-SOURCE.txt
#               names the release it was cut from)
#   PEER_DIR    scratch (default /tmp/fmoe-peer; needs ~55 GB at 2 layers)
#   PEER_PHASE  build | bench | all (default all). build: compile llama.cpp, synthesise the model,
#               pack it for fmoe, convert it for llama.cpp. bench: the comparison. Each phase fits
#               one 10-minute command on the H200 machine; run bench right after build, while the
#               machine is still warm (its /tmp survives only then).
#   PEER_TOKENS decode tokens per run (default 32); PEER_PP prefill length (default 512)
#   PEER_KS     expert counts to compare (default "10 4")
#
# The model: fmoe-pack synth --preset qwen3.5-397b-a17b --layers 2 --layout hf (bf16, random
# weights, the real shapes and vocabulary). fmoe packs the bf16 source at 4 bits (minmax, group
# 64); llama.cpp converts it with its own convert_hf_to_gguf.py to Q8_0 and llama-quantize takes
# that to Q4_0 (4.5 bits per weight like fmoe's 4-bit group-64 affine format). The detour through
# Q8_0 is for the 64 GB disk: a bf16 GGUF beside the bf16 source and fmoe's pack would not fit.
# llama.cpp is also timed on a 1-layer copy of the same GGUF (scripts/peer/gguf_layers.py): the
# difference is its cost per layer, from which both engines are extrapolated to 60 layers alike
# (fmoe's per-layer figure comes from its own --timing report).
#
# Rows (each at K=10, the model's, and K=4, set in both engines' model metadata):
#   1 resident:  llama.cpp -ngl 99 (all on the GPU)   | fmoe --gpu-cache holding every expert
#   2 host RAM:  llama.cpp -ngl 99 -ot exps=CPU        | fmoe experts from the page cache, GPU compute
#   3 disk:      both in a cgroup v2 with memory.max below the model's size (PEER_MEMMAX, default
#                3G: the 2-layer pack is 8.5 GB, its dense part 1.3 GB), so neither keeps the
#                experts in the page cache; if the cgroup can't be made, row 3 is skipped
# and a cross-check that both compute the same function: the repo's tiny Qwen3.5-MoE test checkpoint
# (testdata/tiny/hf, bf16, random weights) converted to an F32 GGUF; llama.cpp's greedy ids for the
# golden prompt beside transformers' (testdata/tiny/golden), which fmoe matches (fmoe-verify golden).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BIN=${PEER_BIN:-$ROOT/.llama/bin}
TAR=${LLAMA_TAR:-$ROOT/.llama/llama.cpp.tar.xz}
DIR=${PEER_DIR:-/tmp/fmoe-peer}
PHASE=${PEER_PHASE:-all}
TOKENS=${PEER_TOKENS:-32}
PP=${PEER_PP:-512}
LL=$DIR/llama.cpp
LB=$LL/build/bin
mkdir -p "$DIR"
if ls "$BIN"/*.xz > /dev/null 2>&1; then  # binaries sent compressed (the GPU machine takes 64 MiB of tree)
  mkdir -p "$DIR/bin"; for f in "$BIN"/*.xz; do xz -dc "$f" > "$DIR/bin/$(basename "$f" .xz)"; done
  chmod +x "$DIR"/bin/*; BIN=$DIR/bin
fi
log() { echo "# $(date +%T) $*" >&2; }

build() {
  log "llama.cpp: unpacking and building (CUDA, sm_90)"
  rm -rf "$LL"; tar xJf "$TAR" -C "$DIR"
  ( cd "$LL" && cmake -B build -G Ninja -DGGML_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 -DGGML_NATIVE=ON \
      -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
      -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_APP=OFF > "$DIR/cmake.log" 2>&1 &&
    cmake --build build -j "$(nproc)" --target llama-bench llama-completion llama-quantize > "$DIR/build.log" 2>&1 ) &
  local bpid=$!
  log "synthesising qwen3.5-397b-a17b, 2 layers, hf bf16"
  "$BIN/fmoe-pack" synth --preset qwen3.5-397b-a17b --layers 2 --layout hf --out "$DIR/src" --force -q
  log "fmoe-pack convert --bits 4 (background) and convert_hf_to_gguf --outtype q8_0"
  "$BIN/fmoe-pack" convert --in "$DIR/src" --out "$DIR/fmoe" --bits 4 --force -q &
  local ppid=$!
  LLAMA=$LL python3 scripts/peer/convert.py "$DIR/src" --no-mtp --outtype q8_0 --outfile "$DIR/m-q8_0.gguf" > "$DIR/convert.log" 2>&1 ||
    { tail -30 "$DIR/convert.log"; exit 1; }
  wait $ppid
  wait $bpid || { tail -40 "$DIR/build.log" "$DIR/cmake.log"; exit 1; }
  rm -rf "$DIR/src"
  log "llama-quantize Q8_0 -> Q4_0"
  "$LB/llama-quantize" --allow-requantize "$DIR/m-q8_0.gguf" "$DIR/m-q4_0.gguf" Q4_0 > "$DIR/quantize.log" 2>&1 ||
    { tail -20 "$DIR/quantize.log"; exit 1; }
  rm -f "$DIR/m-q8_0.gguf"
  PYTHONPATH=$LL/gguf-py python3 scripts/peer/gguf_layers.py "$DIR/m-q4_0.gguf" "$DIR/m1-q4_0.gguf" 1
  log "tiny cross-check model: testdata/tiny/hf -> F32 GGUF"
  LLAMA=$LL python3 scripts/peer/convert.py testdata/tiny/hf --no-mtp --outtype f32 --outfile "$DIR/tiny-f32.gguf" > "$DIR/convert-tiny.log" 2>&1 ||
    { tail -30 "$DIR/convert-tiny.log"; echo "tiny conversion failed (cross-check skipped)"; }
  du -sh "$DIR"/* >&2
}

# --- the comparison ---
setk() { # K: the expert count both engines use (GGUF metadata; fmoe-run -k)
  for g in "$DIR/m-q4_0.gguf" "$DIR/m1-q4_0.gguf"; do
    PYTHONPATH=$LL/gguf-py python3 "$LL/gguf-py/gguf/scripts/gguf_set_metadata.py" --force "$g" qwen35moe.expert_used_count "$1" > /dev/null
  done
}
# llama-bench tg/pp in t/s for one model file and flags (markdown output, column "t/s")
lbench() { # FILE PP FLAGS... -> prints "pp_tps tg_tps" (pp "-" when PP is 0)
  local f=$1 pp=$2; shift 2
  "$LB/llama-bench" -m "$f" -p "$pp" -n "$TOKENS" -r 2 -o jsonl "$@" 2> "$DIR/lb.err" > "$DIR/lb.out" ||
    { tail -5 "$DIR/lb.err" >&2; echo "- -"; return; }
  python3 -c '
import json, sys
pp = tg = "-"
for line in open(sys.argv[1]):
    r = json.loads(line)
    if r.get("n_prompt", 0) > 0: pp = "%.1f" % r["avg_ts"]
    elif r.get("n_gen", 0) > 0: tg = "%.2f" % r["avg_ts"]
print(pp, tg)' "$DIR/lb.out"
}
ids() { seq -s, 1 "$1"; }
# fmoe: generate with --timing after a PROMPT_LEN-token prompt (whose prefill also fills the GPU
# tier, as llama.cpp's weights are all in place before it starts); prints
# "prefill_tps decode_ms_per_token layer_ms fixed_ms"
fgen() { # K PROMPT_LEN TOKENS FLAGS...
  local k=$1 n=$2 t=$3; shift 3
  "$BIN/fmoe-run" generate --backend cuda --model "$DIR/fmoe" --ids "$(ids "$n")" --tokens "$t" -k "$k" --timing "$@" > /dev/null 2> "$DIR/.timing" ||
    { cat "$DIR/.timing" >&2; echo "- - - - -"; return; }
  awk '/\[timing\] prefill:/{for(i=1;i<=NF;i++) if($i=="tok/s") p=$(i-1)}
       /\[timing\] decode:/{for(i=1;i<=NF;i++){if($i=="tok/s") d=1000/$(i-1)}}
       {k=$1; for(i=2;i<=NF && $i !~ /^[-0-9.]+%?$/;i++) k=k" "$i; v=$(i+1)}
       k=="layer_total"{lt=v} k=="embed"{e=v} k=="lm_head"{h=v}
       END{printf "%s %s %s %s\n", p, d, lt, e+h}' "$DIR/.timing"
}
extrap() { awk -v l="$1" -v f="$2" 'BEGIN{ if (l=="-"||f=="-") print "-"; else printf "%.2f", 1000/(60*l+f) }'; }
# llama.cpp per layer and fixed cost from the 2- and 1-layer models' decode rates
lsplit() { awk -v a="$1" -v b="$2" 'BEGIN{ if(a=="-"||b=="-"){print "- -"; exit}; t2=1000/a; t1=1000/b; printf "%.3f %.3f\n", t2-t1, 2*t1-t2 }'; }

memcg() { # creates /sys/fs/cgroup/fmoe-peer with memory.max=$1; prints its path or nothing
  local cg=/sys/fs/cgroup/fmoe-peer
  grep -qw memory /sys/fs/cgroup/cgroup.controllers 2>/dev/null || return 0
  echo +memory > /sys/fs/cgroup/cgroup.subtree_control 2>/dev/null || true
  mkdir -p $cg 2>/dev/null && echo "$1" > $cg/memory.max 2>/dev/null && echo 0 > $cg/memory.swap.max 2>/dev/null; [ -w $cg/cgroup.procs ] && echo $cg
}
incg() { local cg=$1; shift; bash -c 'echo $$ > '"$cg"'/cgroup.procs; exec "$@"' _ "$@"; }

bench() {
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  echo "llama.cpp: $(cat "$LL/FMOE-SOURCE.txt"); build flags: GGML_CUDA=ON, sm_90, GGML_NATIVE"
  echo "model: synthetic qwen3.5-397b-a17b, 2 layers (both GatedDeltaNet), fmoe 4-bit g64 $(du -sh "$DIR/fmoe" | cut -f1), llama.cpp Q4_0 $(du -sh "$DIR/m-q4_0.gguf" | cut -f1)"
  echo "decode: llama-bench tg$TOKENS (from an empty context) and pp$PP, -r 2; fmoe generate --ids 1..$PP --tokens $TOKENS --timing (decode after the prompt)"
  echo
  local cg; cg=$(memcg "${PEER_MEMMAX:-3G}")
  echo "| row | K | fmoe ms/layer | fmoe fixed ms | fmoe tok/s (60 layers) | llama.cpp ms/layer | llama.cpp fixed ms | llama.cpp tok/s (60 layers) | fmoe / llama.cpp | fmoe pp$PP tok/s | llama.cpp pp$PP tok/s |"
  echo "|---|---|---|---|---|---|---|---|---|---|---|"
  for k in ${PEER_KS:-10 4}; do
    setk $k
    for row in resident host disk; do
      local lflags=() fflags=() pre=()
      case $row in
        resident) lflags=(-ngl 99); fflags=(--gpu-cache 100G) ;;
        host) lflags=(-ngl 99 -ot 'exps=CPU'); fflags=(--gpu-cache 0) ;;
        disk) [ -n "$cg" ] || { echo "| disk | $k | (no memory cgroup on this machine: skipped) |"; continue; }
              lflags=(-ngl 99 -ot 'exps=CPU'); fflags=(--gpu-cache 0); pre=(incg "$cg") ;;
      esac
      [ $row = host ] && cat "$DIR"/fmoe/packed_experts/*.bin "$DIR"/m-q4_0.gguf > /dev/null  # warm the page cache
      read -r lpp2 ltg2 < <("${pre[@]}" lbench "$DIR/m-q4_0.gguf" "$PP" "${lflags[@]}")
      read -r _ ltg1 < <("${pre[@]}" lbench "$DIR/m1-q4_0.gguf" 0 "${lflags[@]}")
      read -r lper lfix < <(lsplit "$ltg2" "$ltg1")
      read -r fpp _ flt ffix < <("${pre[@]}" fgen $k "$PP" "$TOKENS" "${fflags[@]}")
      local ft lt; ft=$(extrap "$flt" "$ffix"); lt=$(extrap "$lper" "$lfix")
      printf '| %s | %d | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' $row $k "$flt" "$ffix" "$ft" "$lper" "$lfix" "$lt" \
        "$(awk -v a="$ft" -v b="$lt" 'BEGIN{ if(a=="-"||b=="-"||b==0) print "-"; else printf "%.2fx", a/b }')" "$fpp" "$lpp2"
    done
  done
  setk 10
  echo
  echo "llama.cpp command lines: $LB/llama-bench -m MODEL.gguf -p $PP -n $TOKENS -r 2 -o csv, with -ngl 99 (resident) or -ngl 99 -ot exps=CPU (host, disk)"
  [ -n "$cg" ] && echo "disk row: both engines in cgroup $cg with memory.max=$(cat "$cg"/memory.max) (page cache included), swap 0"
  echo
  echo "## cross-check on testdata/tiny/hf (F32 GGUF) against transformers' greedy ids"
  if [ -f "$DIR/tiny-f32.gguf" ]; then
    python3 - "$DIR" "$LB" <<'PY' || echo "cross-check failed to run"
import re, subprocess, sys
from safetensors.numpy import load_file
from tokenizers import Tokenizer
d, lb = sys.argv[1], sys.argv[2]
g = load_file("testdata/tiny/golden/bf16.safetensors")
prompt = [int(x) for x in g["input_ids"].reshape(-1)]
want = [int(x) for x in g["generated_ids"].reshape(-1)]
tok = Tokenizer.from_file("testdata/tiny/hf/tokenizer.json")
text = tok.decode(prompt, skip_special_tokens=False)
out = subprocess.run([f"{lb}/llama-completion", "-m", f"{d}/tiny-f32.gguf", "-p", text, "-n", str(len(want)),
                      "--temp", "0", "-no-cnv", "--no-warmup", "-ngl", "99", "--verbose-prompt"],
                     capture_output=True, text=True)
seen = [int(m.group(1)) for m in re.finditer(r"^\s*(\d+) -> '", out.stderr, re.M)]
gen = out.stdout[len(text):] if out.stdout.startswith(text) else out.stdout
got = tok.encode(gen, add_special_tokens=False).ids[:len(want)]
print(f"prompt ids (transformers) {prompt}")
print(f"prompt ids (llama.cpp)    {seen[:len(prompt)]}  {'same' if seen[:len(prompt)] == prompt else 'DIFFERENT'}")
print(f"greedy, transformers      {want}")
print(f"greedy, llama.cpp         {got}  (its text re-encoded)")
agree = 0
for a, b in zip(want, got):
    if a != b:
        break
    agree += 1
print(f"first {agree} of {len(want)} generated tokens agree")
if out.returncode:
    print(out.stderr[-2000:])
PY
  else
    echo "(no tiny GGUF: see $DIR/convert-tiny.log)"
  fi
}

case $PHASE in
  build) build ;;
  bench) bench ;;
  all) build; bench ;;
  *) echo "PEER_PHASE must be build, bench or all" >&2; exit 2 ;;
esac
