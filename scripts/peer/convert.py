#!/usr/bin/env python3
"""Run llama.cpp's convert_hf_to_gguf.py on fmoe's synthetic and test checkpoints.

llama.cpp names a BPE tokenizer's pre-tokenizer by hashing how it splits a fixed text and refuses
hashes it doesn't know. fmoe's checkpoints (fmoe-pack synth, testdata/tiny) carry small byte-level
BPE vocabularies with Qwen3.5's pre-tokenizer regex, whose hash no released model has, so an
unknown hash is read as Qwen3.5's ("qwen35"); a known one is kept. Nothing else changes.

    LLAMA=/path/to/llama.cpp convert.py <convert_hf_to_gguf.py arguments>
"""
import os
import runpy
import sys

llama = os.environ["LLAMA"]
sys.path[:0] = [llama, os.path.join(llama, "gguf-py")]
import conversion.base as base  # noqa: E402  (needs the path above)

_known = base.TextModel.get_vocab_base_pre


def _pre(self, tokenizer):
    try:
        return _known(self, tokenizer)
    except NotImplementedError:
        return "qwen35"


base.TextModel.get_vocab_base_pre = _pre
sys.argv[0] = os.path.join(llama, "convert_hf_to_gguf.py")
runpy.run_path(sys.argv[0], run_name="__main__")
