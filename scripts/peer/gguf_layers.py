#!/usr/bin/env python3
"""Write a copy of a GGUF model that keeps only its first N transformer blocks.

The peer benchmark (scripts/peer-bench.sh) times llama.cpp on a 2-block and a 1-block copy of the
same weights: the difference is the cost of one layer, the rest is the per-token fixed cost
(embedding, output norm, lm_head, sampling), so both engines are extrapolated to 60 layers the
same way. Uses llama.cpp's gguf-py (put its folder on PYTHONPATH).

    gguf_layers.py IN.gguf OUT.gguf N
"""
import sys

import gguf


def main() -> None:
    src, dst, keep = sys.argv[1], sys.argv[2], int(sys.argv[3])
    r = gguf.GGUFReader(src)
    arch = r.fields[gguf.Keys.General.ARCHITECTURE].contents()
    count_key = f"{arch}.block_count"
    old = int(r.fields[count_key].contents())
    if not 0 < keep <= old:
        sys.exit(f"{src}: has {old} blocks, cannot keep {keep}")
    w = gguf.GGUFWriter(dst, arch)
    for f in r.fields.values():
        if f.name == gguf.Keys.General.ARCHITECTURE or f.name.startswith("GGUF."):
            continue  # written by GGUFWriter itself
        vtype = f.types[0]
        sub = f.types[-1] if vtype == gguf.GGUFValueType.ARRAY else None
        val = f.contents()
        if f.name == count_key:
            val = keep
        elif sub is not None and isinstance(val, list) and len(val) == old and f.name.startswith(arch + "."):
            val = val[:keep]  # a per-layer array (e.g. head counts per block)
        w.add_key_value(f.name, val, vtype, sub_type=sub)
    kept = [t for t in r.tensors if not (t.name.startswith("blk.") and int(t.name.split(".")[1]) >= keep)]
    for t in kept:
        w.add_tensor_info(t.name, t.data.shape, t.data.dtype, t.data.nbytes, t.tensor_type)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    for t in kept:
        w.write_tensor_data(t.data, tensor_endianess=r.endianess)
    w.close()
    print(f"{dst}: {keep} of {old} blocks, {len(kept)} of {len(r.tensors)} tensors", file=sys.stderr)


if __name__ == "__main__":
    main()
