#!/usr/bin/env bash
# Build what the GPU machine runs (it has no Go) into OUT (default .gpu/bin, which .git/info/exclude
# should ignore): fmoe-pack, fmoe-verify, fmoe-run (cgo: the CUDA backend needs it), cuda.test and
# model.test, stripped and xz-compressed (~13 MB in all; the device takes 64 MiB of tree, and the
# repository is ~62 MB with models/, so move models/ aside for the call). scripts/gpu-all.sh
# unpacks them on the device.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-.gpu/bin}
go=${GO:-go}
mkdir -p "$out"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export CGO_ENABLED=1
"$go" build -ldflags='-s -w' -o "$tmp/" ./cmd/fmoe-pack ./cmd/fmoe-verify ./cmd/fmoe-run
"$go" test -c -ldflags='-s -w' -o "$tmp/cuda.test" ./runtime/backend/cuda
"$go" test -c -ldflags='-s -w' -o "$tmp/model.test" ./runtime/model
"$go" test -c -ldflags='-s -w' -o "$tmp/cpu.test" ./runtime/backend/cpu
for f in "$tmp"/*; do xz --x86 --lzma2=preset=9e -T1 -c "$f" > "$out/$(basename "$f").xz" & done
wait
ls -l "$out"
