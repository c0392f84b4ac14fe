#!/usr/bin/env python3
"""Write a copy of a Qwen3.5-MoE GGUF with a chosen stack of transformer blocks.

    gguf_layers.py IN.gguf OUT.gguf N        the first N blocks, or IN's blocks repeated in order
                                             when N exceeds them (block i copies block i mod count)
    gguf_layers.py IN.gguf OUT.gguf SPEC     SPEC a string of L and A, one letter per block: L the
                                             next of IN's blocks (in order, repeating), A a
                                             full-attention block (see below)

The peer benchmark (scripts/peer-bench.sh) times llama.cpp on stacks that differ by one block of
the same tensors: the difference is the cost of that block, the rest the per-token fixed cost
(embedding, output norm, lm_head), so both engines are extrapolated to 60 layers the same way. A
repeated block has its own copy of the data in the file, so it is read from memory or disk like a
distinct layer.

An A block exists because llama.cpp (v0.5.0) aborts on a Qwen3.5 model without any attention
layer (its hybrid memory sets the index inputs of a KV cache that no layer allocated). It has the
FFN tensors (router, routed and shared experts) and norms of IN's block 0, and attention weights
of the shapes llama.cpp expects for the 397B (query with its output gate, grouped keys and values,
output, query/key norms), random, Q4_0 like llama-quantize's Q4_0 output. Uses llama.cpp's gguf-py
(put its folder on PYTHONPATH) and numpy.
"""
import os
import sys

import numpy as np

import gguf

FFN_AND_NORMS = ("attn_norm.", "post_attention_norm.", "ffn_")


def block_of(name: str) -> int | None:
    return int(name.split(".")[1]) if name.startswith("blk.") else None


def field(r: gguf.GGUFReader, key: str) -> int:
    f = r.fields.get(key)
    if f is None:
        sys.exit(f"missing metadata {key}: needed to shape an attention block")
    v = f.contents()
    return int(v[0] if isinstance(v, list) else v)


class Synth:
    """A tensor made here: name, ggml type and bytes (quantized rows for Q4_0)."""

    def __init__(self, name: str, data: np.ndarray, qtype: gguf.GGMLQuantizationType):
        self.name, self.data, self.tensor_type = name, data, qtype


def attention_block(r: gguf.GGUFReader, arch: str, rng: np.random.Generator) -> list[Synth]:
    n_embd = field(r, f"{arch}.embedding_length")
    n_head = field(r, f"{arch}.attention.head_count")
    n_kv = field(r, f"{arch}.attention.head_count_kv")
    d_k = field(r, f"{arch}.attention.key_length")
    d_v = field(r, f"{arch}.attention.value_length")
    q4 = gguf.GGMLQuantizationType.Q4_0

    def weight(name: str, rows: int, cols: int) -> Synth:
        w = rng.standard_normal((rows, cols), dtype=np.float32) / np.float32(np.sqrt(cols))
        return Synth(name, gguf.quants.quantize(w, q4), q4)

    ones = lambda name, n: Synth(name, np.ones(n, dtype=np.float32), gguf.GGMLQuantizationType.F32)
    return [
        weight("attn_q.weight", n_head * d_k * 2, n_embd),  # query and its output gate
        weight("attn_k.weight", n_kv * d_k, n_embd),
        weight("attn_v.weight", n_kv * d_v, n_embd),
        weight("attn_output.weight", n_embd, n_head * d_k),
        ones("attn_q_norm.weight", d_k),
        ones("attn_k_norm.weight", d_k),
    ]


def main() -> None:
    if len(sys.argv) != 4:
        sys.exit("usage: gguf_layers.py IN.gguf OUT.gguf N|SPEC")
    src, dst, spec = sys.argv[1], sys.argv[2], sys.argv[3]
    if os.path.abspath(src) == os.path.abspath(dst):
        sys.exit(f"{dst}: would overwrite the input")
    r = gguf.GGUFReader(src)
    arch = r.fields[gguf.Keys.General.ARCHITECTURE].contents()
    count_key = f"{arch}.block_count"
    old = int(r.fields[count_key].contents())
    if spec.isdigit():
        spec = "L" * int(spec)
    if not spec or set(spec) - {"L", "A"}:
        sys.exit(f"N or SPEC must be a positive count or letters L and A, got {sys.argv[3]!r}")
    keep = len(spec)
    if "A" in spec and f"{arch}.attention.recurrent_layers" not in r.fields:
        sys.exit(f"{src}: no {arch}.attention.recurrent_layers to mark the attention block in")

    by_block: dict[int, list] = {}
    for t in r.tensors:
        b = block_of(t.name)
        if b is not None:
            by_block.setdefault(b, []).append(t)
    if sorted(by_block) != list(range(old)):
        sys.exit(f"{src}: {count_key} says {old} blocks but its tensors name blocks {sorted(by_block)}")

    out = [(t.name, t) for t in r.tensors if block_of(t.name) is None]
    recurrent = []
    attn = None
    nxt = 0
    for i, kind in enumerate(spec):
        if kind == "L":
            for t in by_block[nxt % old]:
                out.append((f"blk.{i}." + t.name.split(".", 2)[2], t))
            recurrent.append(True)
            nxt += 1
            continue
        if attn is None:
            attn = attention_block(r, arch, np.random.default_rng(1))
        for t in by_block[0]:
            rest = t.name.split(".", 2)[2]
            if rest.startswith(FFN_AND_NORMS):
                out.append((f"blk.{i}.{rest}", t))
        out.extend((f"blk.{i}.{s.name}", s) for s in attn)
        recurrent.append(False)

    tmp = dst + ".tmp"
    w = gguf.GGUFWriter(tmp, arch)
    for f in r.fields.values():
        if f.name == gguf.Keys.General.ARCHITECTURE or f.name.startswith("GGUF."):
            continue  # written by GGUFWriter itself
        vtype = f.types[0]
        sub = f.types[-1] if vtype == gguf.GGUFValueType.ARRAY else None
        val = f.contents()
        if f.name == count_key:
            val = keep
        elif f.name == f"{arch}.attention.recurrent_layers":
            val = recurrent
        elif sub is not None and isinstance(val, list) and len(val) == old and f.name.startswith(arch + "."):
            val = [val[i % old] for i in range(keep)]  # another per-layer array (e.g. head counts)
            print(f"{f.name}: per-layer array, now {val}", file=sys.stderr)
        w.add_key_value(f.name, val, vtype, sub_type=sub)
    for name, t in out:
        w.add_tensor_info(name, t.data.shape, t.data.dtype, t.data.nbytes, t.tensor_type)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    for _, t in out:
        w.write_tensor_data(t.data, tensor_endianess=r.endianess)
    w.close()
    os.replace(tmp, dst)
    print(f"{dst}: blocks {spec} from {old}, {len(out)} tensors", file=sys.stderr)


if __name__ == "__main__":
    main()
