#!/usr/bin/env python3
"""Write a copy of a GGUF model with N transformer blocks: its first N, or, when N exceeds the
blocks it has, its blocks repeated in order (block i is a copy of block i mod the original count).

The peer benchmark (scripts/peer-bench.sh) times llama.cpp on a 2-block and a 1-block model with the
same tensors: the difference is the cost of one layer, the rest the per-token fixed cost (embedding,
output norm, lm_head), so both engines are extrapolated to 60 layers the same way. A repeated block
has its own copy of the data in the file, so it is read from memory or disk like a distinct layer.
Uses llama.cpp's gguf-py (put its folder on PYTHONPATH).

    gguf_layers.py IN.gguf OUT.gguf N
"""
import os
import sys

import gguf


def block_of(name: str) -> int | None:
    return int(name.split(".")[1]) if name.startswith("blk.") else None


def main() -> None:
    if len(sys.argv) != 4:
        sys.exit("usage: gguf_layers.py IN.gguf OUT.gguf N")
    src, dst, keep = sys.argv[1], sys.argv[2], int(sys.argv[3])
    if os.path.abspath(src) == os.path.abspath(dst):
        sys.exit(f"{dst}: would overwrite the input")
    r = gguf.GGUFReader(src)
    arch = r.fields[gguf.Keys.General.ARCHITECTURE].contents()
    count_key = f"{arch}.block_count"
    old = int(r.fields[count_key].contents())
    if keep <= 0:
        sys.exit(f"{src}: N must be at least 1, got {keep}")
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
        elif sub is not None and isinstance(val, list) and len(val) == old and f.name.startswith(arch + "."):
            val = [val[i % old] for i in range(keep)]  # a per-layer array (e.g. head counts per block)
            print(f"{f.name}: per-layer array, now {val}", file=sys.stderr)
        w.add_key_value(f.name, val, vtype, sub_type=sub)
    by_block: dict[int, list] = {}
    for t in r.tensors:
        b = block_of(t.name)
        if b is not None:
            by_block.setdefault(b, []).append(t)
    if sorted(by_block) != list(range(old)):
        sys.exit(f"{src}: {count_key} says {old} blocks but its tensors name blocks {sorted(by_block)}")
    out = [(t.name, t) for t in r.tensors if block_of(t.name) is None]
    for i in range(keep):
        for t in by_block[i % old]:
            out.append((f"blk.{i}." + t.name.split(".", 2)[2], t))
    for name, t in out:
        w.add_tensor_info(name, t.data.shape, t.data.dtype, t.data.nbytes, t.tensor_type)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    for _, t in out:
        w.write_tensor_data(t.data, tensor_endianess=r.endianess)
    w.close()
    os.replace(tmp, dst)
    print(f"{dst}: {keep} blocks from {old}, {len(out)} tensors", file=sys.stderr)


if __name__ == "__main__":
    main()
