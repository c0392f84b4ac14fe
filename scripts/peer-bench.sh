#!/usr/bin/env bash
# fmoe beside llama.cpp on the same machine and the same weights (issue 13). One run on the GPU
# machine, which has nvcc, cmake, ninja and python3 with torch but no Go and no network:
#   PEER_BIN    prebuilt fmoe-pack and fmoe-run, plain or .xz (scripts/gpu-bins.sh builds them;
#               default .gpu/peer/bin, else .llama/bin)
#   LLAMA_TAR   llama.cpp source tarball (default .llama/llama.cpp.tar.xz, cut by
#               scripts/peer/llama-source.sh; its FMOE-SOURCE.txt names the release)
#   LLAMA_PREBUILT  llama-bin.tar.xz (or its split parts llama-bin.tar.xz.aa, ...) from an earlier
#               run's PEER_BINOUT: the llama.cpp binaries, used instead of building (default
#               .llama/llama-bin.tar.xz*)
#   PEER_DIR    scratch (default /tmp/fmoe-peer; ~52 GB at the end, ~57 GB at its peak while the GGUF
#               stacks are written: the machine has 64 GiB)
#   PEER_OUT    where build.txt and bench.txt (the logs) and runs.log (every llama-bench line and
#               fmoe --timing report) go (default $OUT when set, so they come back from the device)
#   PEER_BINOUT where the built llama.cpp binaries go (llama-bin.tar.xz.*, 15 MiB parts; default
#               PEER_DIR/out: ~30 MB of them in $OUT made the device return nothing at all, logs
#               included, in session 20; a later call on the warm machine finds the build in PEER_DIR)
#   PEER_PHASE  build | bench | all (default all)
#   PEER_DURING_BUILD  a command (bash -c, BIN set to the unpacked fmoe binaries) run beside the build
#               phase, whose ~270 s leave the GPU idle: e.g. 'bash scripts/gpu-check.sh'. Its output
#               goes to PEER_OUT/during.log; the bench waits for it, so keep it shorter than the build
#   PEER_DEADLINE  seconds after the start past which no new benchmark row starts (default 0: none)
#   PEER_HOST_PLAIN  0: the host row begins with its first --cpu-experts share, skipping the plain
#               host tier's line (default 1: that line first)
#   PEER_REPS   llama-bench repetitions in the resident and host rows (default 5)
#   PEER_FREPS  fmoe's untimed runs a pack in those rows, the 1-layer pack and the stack alternating,
#               each pack's median rate taken (default 3; the disk row 1)
#   PEER_FSTACK layers of fmoe's stack (default 4: its layer is the difference over 3 layers; at 2
#               the difference of one, ~0.1 ms resident, was inside the runs' spread, peer run 12)
#   PEER_TOKENS decode tokens (default 256: at 64 a 2 − 1 layer difference was noise, run 5's K=4
#               resident split; the disk row 32); PEER_PP prefill length (default 512)
#   PEER_KS     expert counts to compare (default "10 4"); PEER_ROWS the rows (default "resident host
#               disk"); PEER_PLAN instead an explicit comma-separated list of "ROW K", "check" and
#               "cpu" (e.g. "cpu,resident 4,host 4,disk 10,disk 4"; cpu: this host's CPU backend
#               computing experts back to back, after 1 ms idle and beside the link, what row 2's
#               CPU share and llama.cpp's CPU experts depend on); PEER_MEMMAX the disk row's
#               memory.max (3G)
#
# The model: fmoe-pack synth --preset qwen3.5-397b-a17b --layers 1 --layout hf (bf16, random
# weights, the real shapes and vocabulary; 17 GB). fmoe packs it at 4 bits (minmax, group 64);
# llama.cpp converts the same files with its own convert_hf_to_gguf.py (bf16 GGUF) and llama-quantize
# takes that to Q4_0 (4.5 bits per weight, like fmoe's 4-bit group-64 affine format; llama-quantize
# keeps output.weight at Q6_K). llama.cpp v0.5.0 aborts on a Qwen3.5 model with no attention layer,
# so scripts/peer/gguf_layers.py stacks that GGUF's GatedDeltaNet block (L) with a full-attention
# block (A: block 0's experts, random Q4_0 attention weights) three ways, each block with its own
# copy of the data: LA, LLA and LAA. llama.cpp's GatedDeltaNet layer costs LLA - LA, its attention
# layer LAA - LA, its per-token fixed cost the rest of LA. fmoe's per-layer and fixed costs come
# from its own --timing report on the 1-layer pack. Both are extrapolated to 60 GatedDeltaNet
# layers alike: 1000 / (60 x ms per layer + fixed ms) (the 397B has 45 of them and 15 attention
# layers; fmoe's attention layer is not measured here).
#
# Rows (each at K=10, the model's, and K=4, set in both engines' model metadata / -k):
#   resident  llama.cpp -ngl 99 (all on the GPU)   | fmoe --gpu-cache 16G --preload (every expert in
#             the GPU tier before the prompt, as llama.cpp has loaded its weights before it times;
#             fmoe's "preload:" line in runs.log gives the load's time, outside prefill)
#   host      llama.cpp -ngl 99 -ot exps=CPU (its CPU computes the experts, from mmap'd page cache)
#             | fmoe --gpu-cache 0 --host-cache PEER_HOSTCACHE (16G): experts in its pinned host
#             tier, one DMA each, GPU computes; at each K of PEER_CPU_KS (default 10) the same with
#             --cpu-experts for each share of PEER_CPU_SHARE (default auto: the share follows the
#             CPUs' and the link's measured rates, 8-10% faster than 0.4 at K=10 in run 27; a list
#             such as "0.4 auto" gives a line each: the best fixed share is the host's, run 13's H100
#             host, whose CPUs ran llama.cpp's experts faster than PCIe carried fmoe's, wanted more
#             than 0.4); then
#             (deadline permitting) fmoe --gpu-cache 0: experts pread from the page cache each token
#   disk      both in a cgroup v2 with memory.max=PEER_MEMMAX (page cache included), after
#             drop_caches, so experts come from the disk: llama.cpp's mmap vs fmoe's preads
# fmoe's measured decode tok/s is "timed/untimed": timed from the --timing run (which gives the
# per-stage split, and so the per-layer and fixed costs and the 60-layer figures, but turns off the
# CUDA layer graphs and syncs once per phase, so its rate understates), untimed from a second run
# of the same command without --timing (its "generated in" line's median step as a rate: the steps
# without the sampling and printing between them, which llama-bench does not time either).
# and a cross-check that both compute the same function: the repo's tiny Qwen3.5-MoE test checkpoint
# (testdata/tiny/hf, bf16, random weights) converted to an F32 GGUF; llama.cpp's greedy ids for the
# golden prompt beside transformers' (testdata/tiny/golden), which fmoe matches (fmoe-verify golden).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=peer/parse.sh
. "$HERE/peer/parse.sh"
ROOT=${PEER_REPO:-$(git -C "$HERE" rev-parse --show-toplevel 2>/dev/null || (cd "$HERE/.." && pwd))}
cd "$ROOT"
T0=$(date +%s)
BIN=${PEER_BIN:-}
[ -n "$BIN" ] || { [ -d .gpu/peer/bin ] && BIN=$ROOT/.gpu/peer/bin || BIN=$ROOT/.llama/bin; }
TAR=${LLAMA_TAR:-$ROOT/.llama/llama.cpp.tar.xz}
PRE=${LLAMA_PREBUILT:-$ROOT/.llama/llama-bin.tar.xz}
DIR=${PEER_DIR:-/tmp/fmoe-peer}
POUT=${PEER_OUT:-${OUT:-$DIR/out}}
BOUT=${PEER_BINOUT:-$DIR/out}
PHASE=${PEER_PHASE:-all}
TOKENS=${PEER_TOKENS:-256}
PP=${PEER_PP:-512}
# the resident row's GPU tier: every expert of the stack (4 x 512 x 7.08 MB = 14.5 GB) with room
# to spare; a size past the card's memory is refused (session 20's 100G on an H100)
RESCACHE=${PEER_RESCACHE:-16G}
# the host row's host tier: likewise every expert of the stack
HOSTCACHE=${PEER_HOSTCACHE:-16G}
FSTACK=${PEER_FSTACK:-4}
# llama-bench's repetitions a row (the disk row 1): at 2, session 20's K=10 host row measured LLA and
# LAA faster than LA, its added layer (~1.2 ms of ~7) inside the spread; a rep there is ~2 s
REPS=${PEER_REPS:-5}
# fmoe's untimed runs a pack (the disk row 1), alternating the 1-layer pack and the stack; the median of each
FREPS=${PEER_FREPS:-3}
DEADLINE=${PEER_DEADLINE:-0}
# the host row's extra fmoe lines: --cpu-experts at each of these shares (0: none), at each K of
# PEER_CPU_KS; session 24's scripts/gpu-cpumiss.sh had 0.4 on 16 cores 13% ahead of the link alone
# at K=10, behind at K=4
read -r -a CPUSHARES <<< "${PEER_CPU_SHARE:-auto}"
CPUKS=" ${PEER_CPU_KS:-10} "
# and its --threads (default: every core; BenchmarkCPUBesideLink had 12 of 16 faster beside the link)
CPUTHREADS=${PEER_CPU_THREADS:-}
LL=$DIR/llama.cpp
LB=$LL/build/bin
export LD_LIBRARY_PATH=$LB${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
mkdir -p "$DIR" "$POUT" "$BOUT"
if ls "$BIN"/*.xz > /dev/null 2>&1; then  # binaries sent compressed (the GPU machine takes 64 MiB of tree)
  mkdir -p "$DIR/bin"; for f in "$BIN"/*.xz; do xz -dc "$f" > "$DIR/bin/$(basename "$f" .xz)"; done
  chmod +x "$DIR"/bin/*; BIN=$DIR/bin
fi
log() { echo "# $(date +%T) +$(( $(date +%s) - T0 ))s $*" >&2; }
late() { [ "$DEADLINE" -gt 0 ] && [ $(( $(date +%s) - T0 )) -ge "$DEADLINE" ]; }

llama_build() {
  if ls "$PRE"* > /dev/null 2>&1; then
    log "llama.cpp: prebuilt binaries from $PRE"
    mkdir -p "$LB"; cat "$PRE"* | tar xJf - -C "$LB"; return
  fi
  log "llama.cpp: building (CUDA sm_90, FlashAttention kernels off: no attention layer is measured)"
  ( cd "$LL" && cmake -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DGGML_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 \
      -DGGML_NATIVE=ON -DGGML_CUDA_FA=OFF -DGGML_CUDA_NCCL=OFF -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF \
      -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_APP=OFF \
      > "$DIR/cmake.log" 2>&1 &&
    cmake --build build -j "$(nproc)" --target llama-bench llama-completion llama-quantize > "$DIR/build.log" 2>&1 ) ||
    { tail -40 "$DIR/cmake.log" "$DIR/build.log" >&2; return 1; }
  log "llama.cpp built; binaries to $BOUT/llama-bin.tar.xz.*"
  ( cd "$LB" && tar cf - llama-bench llama-completion llama-quantize ./*.so* | xz -T0 -3 |
      split -b 15M - "$BOUT/llama-bin.tar.xz." ) || true
}

build() {
  rm -rf "$LL"; tar xJf "$TAR" -C "$DIR"  # the converter runs from this tree while it builds
  llama_build > "$DIR/llama-build.out" 2>&1 &
  local bpid=$! dpid=
  if [ -n "${PEER_DURING_BUILD:-}" ]; then
    log "during the build: $PEER_DURING_BUILD (its output: $POUT/during.log)"
    ( set +e; BIN=$BIN bash -c "$PEER_DURING_BUILD" > "$POUT/during.log" 2>&1; echo "rc=$?" >> "$POUT/during.log" ) &
    dpid=$!
  fi
  log "synthesising qwen3.5-397b-a17b, 1 layer, hf bf16"
  nice -n 5 "$BIN/fmoe-pack" synth --preset qwen3.5-397b-a17b --layers 1 --layout hf --out "$DIR/src" --force -q
  log "fmoe-pack convert --bits 4 (background) and convert_hf_to_gguf --outtype bf16"
  nice -n 5 "$BIN/fmoe-pack" convert --in "$DIR/src" --out "$DIR/fmoe" --bits 4 --force -q > "$DIR/pack.log" 2>&1 &
  local ppid=$!
  local ok=1
  LLAMA=$LL PYTHONUNBUFFERED=1 python3 "$HERE/peer/convert.py" "$DIR/src" --no-mtp --outtype bf16 --outfile "$DIR/m1-bf16.gguf" > "$DIR/convert.log" 2>&1 ||
    { ok=0; tail -40 "$DIR/convert.log" >&2; }
  wait $ppid || { tail -20 "$DIR/pack.log" >&2; exit 1; }
  log "fmoe pack done ($(du -sh "$DIR/fmoe" | cut -f1)); tiny cross-check model: testdata/tiny/hf -> F32 GGUF"
  rm -rf "$DIR/src"
  # fmoe's stack for its untimed per-layer cost, as llama.cpp's comes from its stacks: the 1-layer
  # pack's layer FSTACK times (fmoe-pack stack: each copy with expert files of its own). Until
  # session 22 this was a second synthesis (MLX layout, random words) whose router sent its tokens
  # elsewhere: in run 9 its 2 layers ran as fast as the 1-layer pack's one, and the resident and
  # disk rows' splits were noise
  ( nice -n 5 "$BIN/fmoe-pack" stack --model "$DIR/fmoe" --out "$DIR/fmoe-stack" --layer 0 --layers "$FSTACK" --force -q ) \
    > "$DIR/pack2.log" 2>&1 &
  local p2pid=$!
  LLAMA=$LL python3 "$HERE/peer/convert.py" testdata/tiny/hf --no-mtp --outtype f32 --outfile "$DIR/tiny-f32.gguf" > "$DIR/convert-tiny.log" 2>&1 ||
    { tail -20 "$DIR/convert-tiny.log" >&2; echo "tiny conversion failed (cross-check skipped)" >&2; }
  wait $p2pid || { tail -5 "$DIR/pack2.log" >&2; echo "fmoe's $FSTACK-layer stack failed (no untimed split)" >&2; rm -rf "$DIR/fmoe-stack"; }
  wait $bpid || { cat "$DIR/llama-build.out" >&2; exit 1; }
  cat "$DIR/llama-build.out" >&2
  [ $ok = 1 ] || exit 1
  log "llama-quantize bf16 -> Q4_0"
  "$LB/llama-quantize" "$DIR/m1-bf16.gguf" "$DIR/l-q4_0.gguf" Q4_0 "$(nproc)" > "$DIR/quantize.log" 2>&1 ||
    { tail -20 "$DIR/quantize.log" >&2; exit 1; }
  rm -f "$DIR/m1-bf16.gguf"
  log "stacks LA, LLA, LAA (L: the GatedDeltaNet block, A: a full-attention block)"
  local st pids=()
  for st in LA LLA LAA; do PYTHONPATH=$LL/gguf-py python3 "$HERE/peer/gguf_layers.py" "$DIR/l-q4_0.gguf" "$DIR/$st.gguf" $st & pids+=($!); done
  # waits for these three only: a bare wait would also wait for the tee that PEER_PHASE=all pipes
  # this function's stderr through, which ends only when the function does
  wait "${pids[@]}" || true
  for st in LA LLA LAA; do [ -f "$DIR/$st.gguf" ] || { echo "gguf_layers.py $st failed" >&2; exit 1; }; done
  rm -f "$DIR/l-q4_0.gguf"
  du -sh "$DIR"/* >&2
  if [ -n "$dpid" ]; then
    log "waiting for the command run during the build"
    wait "$dpid" || true
    tail -3 "$POUT/during.log" >&2
  fi
  log "build phase done"
}

# --- the comparison ---
setk() { # K: the expert count llama.cpp uses (GGUF metadata); fmoe takes -k
  for g in "$DIR"/LA.gguf "$DIR"/LLA.gguf "$DIR"/LAA.gguf; do
    PYTHONPATH=$LL/gguf-py python3 "$LL/gguf-py/gguf/scripts/gguf_set_metadata.py" --force "$g" qwen35moe.expert_used_count "$1" > /dev/null 2>&1
  done
}
# llama-bench tg (and pp when PP > 0) in tok/s for one model file and flags
lbench() { # FILE PP TOKENS REPS FLAGS... -> prints "pp_tps tg_tps"
  local f=$1 pp=$2 n=$3 r=$4; shift 4
  echo "llama-bench -m $(basename "$f") -p $pp -n $n -r $r $*" >> "$POUT/runs.log"
  "$LB/llama-bench" -m "$f" -p "$pp" -n "$n" -r "$r" -o jsonl "$@" 2> "$DIR/lb.err" > "$DIR/lb.out" ||
    { tail -15 "$DIR/lb.err" | tee -a "$POUT/runs.log" >&2; echo "- -"; return; }
  cat "$DIR/lb.out" >> "$POUT/runs.log"
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
# fmoe: generate with --timing after a PROMPT_LEN-token prompt, then the same without --timing on
# the 1-layer pack and on the stack (fmoe-stack: its layer FSTACK times, when the build made it); prints
# "untimed_decode_tps untimed2_decode_tps decode_tps layer_ms fixed_ms prefill_tps prefill_layer_ms
# prefill_fixed_ms" (ms per token; fixed = total - layers; untimed: the median step as a rate). FDROP=1
# drops the page cache before each untimed run too (the disk row; the row drops it before the timed one).
fgen() { # TAG K PROMPT_LEN TOKENS FLAGS...
  local tag=$1 k=$2 n=$3 t=$4 timed; shift 4
  echo "### $tag: fmoe-run generate -k $k --ids 1..$n --tokens $t --timing $*" >> "$POUT/runs.log"
  if "$BIN/fmoe-run" generate --backend cuda --model "$DIR/fmoe" --ids "$(ids "$n")" --tokens "$t" -k "$k" --timing "$@" > /dev/null 2> "$DIR/.timing"; then
    cat "$DIR/.timing" >> "$POUT/runs.log"
    timed=$(timed_split "$DIR/.timing")
  else
    cat "$DIR/.timing" | tee -a "$POUT/runs.log" | tail -5 >&2; timed="- - - - - -"
  fi
  echo "### $tag, untimed: fmoe-run generate -k $k --ids 1..$n --tokens $t $*" >> "$POUT/runs.log"
  local u m r rates1=() rates2=()
  # FREPS rounds, the 1-layer pack and the stack alternating, each pack's median rate; a run's rate is
  # its median step's (untimed_median): the per-layer split is the difference of two ~0.6 ms
  # tokens, and the runs' summed forward time moved by +-6% between runs of one pack (peer run 11:
  # 1,505-1,687 tok/s for one layer, 1,355-1,656 for two), more than a layer costs
  for r in $(seq "$FREPS"); do
    for m in fmoe fmoe-stack; do
      [ -d "$DIR/$m" ] || continue
      [ "${FDROP:-0}" = 1 ] && { sync; echo 3 > /proc/sys/vm/drop_caches; }
      echo "### $tag, untimed ($m, round $r): fmoe-run generate -k $k --ids 1..$n --tokens $t $*" >> "$POUT/runs.log"
      u=
      if "$BIN/fmoe-run" generate --backend cuda --model "$DIR/$m" --ids "$(ids "$n")" --tokens "$t" -k "$k" "$@" > /dev/null 2> "$DIR/.untimed"; then
        cat "$DIR/.untimed" >> "$POUT/runs.log"
        u=$(untimed_median "$DIR/.untimed")
        echo "### rate from the median step $u tok/s, from the sum $(untimed_rate "$DIR/.untimed") tok/s" >> "$POUT/runs.log"
      else
        cat "$DIR/.untimed" | tee -a "$POUT/runs.log" | tail -5 >&2
      fi
      [ -n "$u" ] || continue
      if [ $m = fmoe ]; then rates1+=("$u"); else rates2+=("$u"); fi
    done
  done
  echo "### $tag, untimed rates: 1 layer ${rates1[*]:-none}; $FSTACK layers ${rates2[*]:-none}" >> "$POUT/runs.log"
  local untimed untimed2
  untimed=$(median "${rates1[@]}") untimed2=$(median "${rates2[@]}")
  echo "${untimed:--} ${untimed2:--} $timed"
}
memcg() { # creates /sys/fs/cgroup/fmoe-peer with memory.max=$1; prints its path or nothing
  local cg=/sys/fs/cgroup/fmoe-peer
  grep -qw memory /sys/fs/cgroup/cgroup.controllers 2>/dev/null || return 0
  echo +memory > /sys/fs/cgroup/cgroup.subtree_control 2>/dev/null || true
  mkdir -p $cg 2>/dev/null && echo "$1" > $cg/memory.max 2>/dev/null && { echo 0 > $cg/memory.swap.max 2>/dev/null || true; }
  [ -w $cg/cgroup.procs ] && echo $cg || true
}
# runs a command or one of the functions above in cgroup $1 (its children stay there too)
incg() { local cg=$1; shift; bash -c 'echo $$ > '"$cg"'/cgroup.procs; "$@"' _ "$@"; }
export -f lbench fgen ids median timed_split untimed_rate untimed_median
export LB DIR POUT BIN FREPS FSTACK

row() { # ROW K
  local row=$1 k=$2 lflags=() fflags=() pre=() n=$TOKENS r=$REPS fr=$FREPS pp=$PP drop=0 si=0
  case $row in
    resident) lflags=(-ngl 99); fflags=(--gpu-cache "$RESCACHE" --preload) ;;
    host) lflags=(-ngl 99 -ot 'exps=CPU'); fflags=(--gpu-cache 0 --host-cache "$HOSTCACHE")
          cat "$DIR"/fmoe*/packed_experts/*.bin "$DIR"/L*.gguf > /dev/null ;;  # warm the page cache
    disk) [ -n "$CG" ] || { echo "| disk | $k | (no memory cgroup on this machine: skipped) |"; return; }
          lflags=(-ngl 99 -ot 'exps=CPU'); fflags=(--gpu-cache 0); pre=(incg "$CG"); n=32; r=1; fr=1; drop=1
          sync; echo 3 > /proc/sys/vm/drop_caches ;;
  esac
  local st pp_ tg_ ppa tga ppb tgb ppc tgc lper latt lfix lpper lpatt lpfix fpp ftg flt ffix fplt fpfix fut fut2 fult fufix fu ft lt fpt lpt
  for st in LA LLA LAA; do
    [ $row = disk ] && { sync; echo 3 > /proc/sys/vm/drop_caches; }
    read -r pp_ tg_ < <("${pre[@]}" lbench "$DIR/$st.gguf" "$pp" "$n" $r "${lflags[@]}")
    case $st in LA) ppa=$pp_ tga=$tg_ ;; LLA) ppb=$pp_ tgb=$tg_ ;; LAA) ppc=$pp_ tgc=$tg_ ;; esac
  done
  read -r lper latt lfix < <(lsplit "$tga" "$tgb" "$tgc")
  read -r lpper lpatt lpfix < <(lsplit "$ppa" "$ppb" "$ppc")
  lt=$(extrap "$lper" "$lfix"); lpt=$(extrap "$lpper" "$lpfix")
  local name=$row
  [ $row = host ] && name="host, fmoe host tier"
  # PEER_HOST_PLAIN=0: the host row starts at its first share (a short call's deadline then cuts
  # the plain host tier's line rather than the share's; run 15's cut the share)
  if [ $row = host ] && [ "${PEER_HOST_PLAIN:-1}" = 0 ] && [[ $CPUKS == *" $k "* ]] && [ "${CPUSHARES[0]:-0}" != 0 ]; then
    name="host, fmoe host tier + CPU ${CPUSHARES[0]}${CPUTHREADS:+ on $CPUTHREADS threads}"
    fflags+=(--cpu-experts "${CPUSHARES[0]}" ${CPUTHREADS:+--threads "$CPUTHREADS"})
    si=1
  fi
  while :; do
    [ $row = disk ] && { sync; echo 3 > /proc/sys/vm/drop_caches; }
    read -r fut fut2 ftg flt ffix fpp fplt fpfix < <(FDROP=$drop FREPS=$fr "${pre[@]}" fgen "$name K=$k" "$k" "$pp" "$n" "${fflags[@]}")
    ft=$(extrap "$flt" "$ffix"); fpt=$(extrap "$fplt" "$fpfix")
    # untimed, split like llama.cpp's (--timing turns the layer graphs off and syncs each phase, so
    # its split overstates what a user's run costs): the stack's rate against the 1-layer pack's
    read -r fult fufix < <(fsplit "$fut" "$fut2" "$FSTACK")
    fu=$(extrap "$fult" "$fufix")
    printf '| %s | %d | %s/%s, %s / %s, %s, %s | %s, untimed %s / %s (%s) | %s, untimed %s / %s | **%s / %s** | %s | **%s** | %s | %s | %s / %s, %s, %s | %s / %s |\n' "$name" "$k" \
      "$ftg" "$fut" "$fut2" "$tga" "$tgb" "$tgc" "$flt" "$fult" "$lper" "$latt" "$ffix" "$fufix" "$lfix" "$ft" "$lt" "$(ratio "$ft" "$lt")" \
      "$fu" "$(ratio "$fu" "$lt")" "$(onelayer "$fut" "$tga" "$latt")" "$fpp" "$ppa" "$ppb" "$ppc" "$fpt" "$lpt"
    # experts in RAM: fmoe's pinned host tier (one DMA per expert, no read) first, as fmoe runs
    # them; then (at each K of PEER_CPU_KS, each share of PEER_CPU_SHARE up to a 0) the same with its
    # CPUs computing that share of the experts beside the link (--cpu-experts); then its page-cache
    # reads, while the deadline leaves time
    [ $row = host ] && ! late || break
    case $name in
      "host, fmoe host tier"*)
        # the next share of the list, then the page cache
        local sh=${CPUSHARES[$si]:-0}
        si=$((si + 1))
        if [[ $CPUKS == *" $k "* ]] && [ "$sh" != 0 ]; then
          name="host, fmoe host tier + CPU $sh${CPUTHREADS:+ on $CPUTHREADS threads}"
          fflags=(--gpu-cache 0 --host-cache "$HOSTCACHE" --cpu-experts "$sh" ${CPUTHREADS:+--threads "$CPUTHREADS"})
        else
          name="host, fmoe page cache"; fflags=(--gpu-cache 0)
        fi ;;
      *) break ;;
    esac
  done
}

ceilings() { # the bandwidths that bound these rows, measured now (torch)
  python3 "$HERE/peer/ceilings.py" || echo "(ceilings: torch failed)"
}

bench() {
  echo "machine: $(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader); $(nproc) cores ($(lscpu | sed -n 's/^Model name: *//p')), $(free -g | awk '/Mem:/{print $2}') GB RAM"
  echo "llama.cpp: $(tr '\n' ' ' < "$LL/FMOE-SOURCE.txt"); built with GGML_CUDA=ON, sm_90, GGML_NATIVE, FlashAttention kernels off"
  echo "model: synthetic qwen3.5-397b-a17b, fmoe 1 GatedDeltaNet layer 4-bit g64 ($(du -sh "$DIR/fmoe" | cut -f1)); llama.cpp Q4_0 stacks $(cd "$DIR" && du -sh LA.gguf LLA.gguf LAA.gguf | awk '{printf "%s %s, ", $2, $1}')"
  echo "llama.cpp: llama-bench -m M.gguf -p $PP -n $TOKENS -r $REPS -o jsonl (tg from an empty context; disk row -n 32 -r 1) with -ngl 99 (resident) or -ngl 99 -ot exps=CPU (host, disk)"
  echo "fmoe: fmoe-run generate --backend cuda --ids 1..$PP --tokens $TOKENS -k K --timing (decode after the prompt), --gpu-cache $RESCACHE --preload (resident) or 0 with --host-cache $HOSTCACHE (host) or without (disk); the same on a $FSTACK-layer stack of the layer; then the same without --timing for the untimed decode tok/s"
  ceilings
  echo
  CG=; [[ " ${PEER_ROWS:-disk} ${PEER_PLAN:-} " == *"disk "* ]] && CG=$(memcg "${PEER_MEMMAX:-3G}")
  [ -n "$CG" ] && echo "disk row: each engine alone in cgroup $CG with memory.max=$(cat "$CG"/memory.max) (page cache included), after drop_caches"
  { echo
    echo "| row | K | decode tok/s measured: fmoe timed/untimed (L), untimed ($FSTACK L) / llama.cpp (LA, LLA, LAA) | decode ms per GatedDeltaNet layer fmoe timed, untimed (($FSTACK L − L) / $(( FSTACK - 1 ))) / llama.cpp (llama.cpp attention layer) | fixed ms per token fmoe timed, untimed / llama.cpp | **decode tok/s at 60 layers fmoe timed / llama.cpp** | fmoe / llama.cpp | **fmoe untimed at 60 layers** | fmoe untimed / llama.cpp | at one layer: fmoe untimed (L) / llama.cpp (LA less its attention layer) | prefill $PP tok/s measured fmoe (L) / llama.cpp (LA, LLA, LAA) | prefill tok/s at 60 layers fmoe / llama.cpp |"
    echo "|---|---|---|---|---|---|---|---|---|---|---|---|"; }
  local ks=(${PEER_KS:-10 4}) rows=" ${PEER_ROWS:-resident host disk} " plan=() p r
  plan+=(check)  # first: it takes seconds, and session 20's call was cut off before it
  for k in "${ks[@]}"; do
    for r in resident host; do [[ $rows == *" $r "* ]] && plan+=("$r $k"); done
  done
  [[ $rows == *" disk "* ]] && for k in "${ks[@]}"; do plan+=("disk $k"); done
  [ -z "${PEER_PLAN:-}" ] || IFS=, read -r -a plan <<< "$PEER_PLAN"
  for p in "${plan[@]}"; do
    if late; then echo "(deadline: '$p' and later rows not run)"; break; fi
    if [ "$p" = check ]; then crosscheck > "$POUT/crosscheck.txt" 2>&1 || true; continue; fi
    if [ "$p" = cpu ]; then cpurates > "$POUT/cpu.txt" 2>&1 || true; continue; fi
    set -- $p; setk "$2"; row "$1" "$2" || echo "| $1 | $2 | (failed) |"
  done
  setk 10
  echo
  autoshares
  cat "$POUT/crosscheck.txt" "$POUT/cpu.txt" 2> /dev/null || true
}

autoshares() { # where --cpu-experts auto settled in each timed run: peer run 16's K=10 row lost to
  # a share stuck at 0.20 (CPU 0.643 ms an expert, a misread), visible only deep in runs.log
  awk '/^### .*: fmoe-run generate/ {tag=$0; sub(/^### /, "", tag); sub(/: fmoe-run.*/, "", tag)}
    /cpu share \(auto\)/ {s=$0; sub(/^ +/, "", s); gsub(/  +/, " ", s); print "auto in \"" tag "\": " s}' "$POUT/runs.log" 2> /dev/null || true
}

cpurates() { # row 2's other engine: this host's CPUs computing experts (docs/benchmarks.md run 26)
  local b=$DIR/bin th=${PEER_CPU_THREADS:-$(nproc)} pg
  echo "## the CPU backend on $th threads: a layer's experts back to back (batch, beside a read of"
  echo "## the same bytes) from the Go heap and 4 KB / huge pages, a CPU share's after 1 ms idle, and"
  echo "## the host tier's pinned experts alone and beside the link (BenchmarkCPUBesideLink)"
  [ -x "$b/cpu.test" ] || { echo "(no cpu.test in PEER_BIN)"; return; }
  for pg in heap 4k huge; do
    for bench in 'Experts/.*/.*/(batch|read)' ExpertsAfterIdle; do  # one pattern for both ran only the first
      (cd "$ROOT/runtime/backend/cpu" && FMOE_BENCH_PAGES=$pg FMOE_BENCH_THREADS=$th timeout 120 "$b/cpu.test" \
        -test.run '^$' -test.bench "$bench" -test.benchtime 40x 2>&1 | grep -E '^Benchmark' | sed "s/^/$pg /")
    done
  done
  [ -x "$b/model.test" ] || { echo "(no model.test in PEER_BIN)"; return; }
  (cd "$ROOT/runtime/model" && FMOE_TEST_BACKEND=cuda FMOE_BENCH_MODEL=$DIR/fmoe FMOE_BENCH_THREADS=$th timeout 150 \
    "$b/model.test" -test.run '^$' -test.bench CPUBesideLink -test.benchtime 20x 2>&1 | grep -E '^Benchmark|FAIL|panic')
}

crosscheck() {
  echo "## cross-check on testdata/tiny/hf (F32 GGUF) against transformers' greedy ids"
  [ -f "$DIR/tiny-f32.gguf" ] || { echo "(no tiny GGUF: see convert-tiny.log)"; return; }
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
seen = [int(m.group(1)) for m in re.finditer(r"(\d+) -> '", out.stderr)]  # --verbose-prompt's lines
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
if out.returncode or not got:
    print(out.stderr[-3000:])
PY
}

case $PHASE in
  build) build ;;
  bench) bench | tee "$POUT/bench.txt" ;;
  all) build 2> >(tee "$POUT/build.txt" >&2); bench | tee "$POUT/bench.txt" ;;
  *) echo "PEER_PHASE must be build, bench or all" >&2; exit 2 ;;
esac
