#!/usr/bin/env bash
# The device machine takes at most 64 MiB of working tree (tracked and untracked files, plus what
# `run` carries); the tracked tree is ~62 MB, so .gpu/ (~15 MB of binaries) and .llama/ only fit
# with the largest folders the device never reads moved out first. `aside` moves them to
# .git/fmoe-aside/ (inside .git, so they neither travel nor show as untracked), `back` restores
# them, `status` says where they are. A session cut off while they are aside finds them there:
# run `back` before any commit (git status shows them deleted until then).
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
PARK=.git/fmoe-aside
DIRS=(models testdata/kimi-k2-tokenizer testdata/qwen3-tokenizer)
case ${1:-status} in
  aside)
    mkdir -p "$PARK/testdata"
    for d in "${DIRS[@]}"; do
      if [ -e "$PARK/$d" ]; then echo "$d: already aside" >&2; exit 1; fi
      mv "$d" "$PARK/$d"
    done ;;
  back)
    for d in "${DIRS[@]}"; do
      if [ -e "$PARK/$d" ]; then
        if [ -e "$d" ]; then echo "$d: both here and aside; left as is" >&2; exit 1; fi
        mv "$PARK/$d" "$d"
      fi
    done ;;
  status)
    for d in "${DIRS[@]}"; do
      if [ -e "$PARK/$d" ]; then echo "$d: aside"; else echo "$d: in place"; fi
    done ;;
  *) echo "usage: scripts/device-aside.sh aside|back|status" >&2; exit 2 ;;
esac
