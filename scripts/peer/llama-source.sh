#!/usr/bin/env bash
# Cut the llama.cpp source tarball that scripts/peer-bench.sh builds on the GPU machine (which can't
# download anything). The source is the git bundle inside the npm package node-llama-cpp (its
# llama/llama.cpp.info.json names the ggml-org/llama.cpp tag), trimmed to what a CUDA build of
# llama-bench, llama-completion and llama-quantize and the Qwen3.5 converter need (~2.5 MB as .tar.xz
# instead of 175 MB; the GPU machine takes 64 MiB of tree in all), with FMOE-SOURCE.txt recording where it came from.
#   llama-source.sh [OUT.tar.xz]      (default .llama/llama.cpp.tar.xz; needs npm, git, xz)
# Environment: PEER_NPM_PKG (default node-llama-cpp@3.22.1).
set -euo pipefail
out=$(realpath -m "${1:-.llama/llama.cpp.tar.xz}")
pkg=${PEER_NPM_PKG:-node-llama-cpp@3.22.1}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
npm pack --silent "$pkg" > /dev/null
tar xzf ./*.tgz package/llama/gitRelease.bundle package/llama/llama.cpp.info.json
git clone -q package/llama/gitRelease.bundle src 2> /dev/null
S=src T=trim/llama.cpp
mkdir -p $T/ggml/src $T/tools $T/vendor
cp -r $S/CMakeLists.txt $S/cmake $S/src $S/include $S/common $S/gguf-py $S/conversion $S/convert_hf_to_gguf.py $S/LICENSE $T/
cp -r $S/ggml/CMakeLists.txt $S/ggml/cmake $S/ggml/include $T/ggml/
cp $S/ggml/src/*.c $S/ggml/src/*.cpp $S/ggml/src/*.h $S/ggml/src/*.in $S/ggml/src/CMakeLists.txt $T/ggml/src/
cp -r $S/ggml/src/ggml-cuda $S/ggml/src/ggml-cpu $T/ggml/src/
# the converter imports a model family's module only when converting it: keep Qwen3.5's
( cd $T/conversion && ls | grep -vx -e __init__.py -e base.py -e qwen.py -e qwen3vl.py -e qwenvl.py | xargs rm -rf )
# the GPU machine is x86-64: other CPUs' kernels are compiled only on those CPUs
( cd $T/ggml/src/ggml-cpu && rm -rf spacemit kleidiai && find arch -mindepth 1 -maxdepth 1 ! -name x86 -exec rm -rf {} + )
cp -r $S/tools/llama-bench $S/tools/completion $S/tools/quantize $T/tools/
# miniaudio (4 MB) serves only mtmd, which is not built: left out to keep the tree that travels small
grep -v 'add_subdirectory(miniaudio)' $S/vendor/CMakeLists.txt > $T/vendor/CMakeLists.txt
for v in cpp-httplib nlohmann stb sheredom hash; do [ ! -d $S/vendor/$v ] || cp -r $S/vendor/$v $T/vendor/; done
cat > $T/tools/CMakeLists.txt <<'EOF'
# trimmed for fmoe's peer benchmark (scripts/peer-bench.sh): only the tools it runs
find_package(Threads REQUIRED)
llama_add_compile_flags()
add_subdirectory(llama-bench)
add_subdirectory(completion)
add_subdirectory(quantize)
EOF
{
  echo "npm $pkg, package/llama/gitRelease.bundle: ggml-org/llama.cpp $(tr -d ' \n' < package/llama/llama.cpp.info.json)"
  echo "commit $(git -C $S rev-parse HEAD) ($(git -C $S log -1 --format=%cd --date=short)), ggml $(sed -n 's/^set(GGML_VERSION_\(MAJOR\|MINOR\|PATCH\) \([0-9]*\))/\2/p' $S/ggml/CMakeLists.txt | paste -sd.)"
  echo "trimmed by fmoe scripts/peer/llama-source.sh to the CUDA build of llama-bench, llama-completion, llama-quantize"
} > $T/FMOE-SOURCE.txt
mkdir -p "$(dirname "$out")"
tar cJf "$out.tmp" -C trim llama.cpp && mv "$out.tmp" "$out"
cat $T/FMOE-SOURCE.txt
ls -l "$out"
