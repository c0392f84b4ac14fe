"""Copies a few tensors of the deepseek_v3 reference fixture into deepseek_v3_sample.safetensors.

The fixture (made by make_arch_fixtures.py with torch 2.11: weights quantised by torch's own
float8_e4m3fn cast, float32 weight_scale_inv per 32x32 tile) lives outside the repository; tests
read only this copy. Each FP8 weight is copied byte for byte with its scale and, under the prefix
"original.", the bf16 weight it was quantised from (the fixture's hf/ checkpoint).
Usage: python3 extract.py FIXTURE_DIR (…/arch/deepseek_v3); standard library only.
"""
import json, os, struct, sys

NAMES = ["model.layers.1.self_attn.kv_a_proj_with_mqa.weight",  # [80, 128]: partial row tile
         "model.layers.1.self_attn.q_b_proj.weight",
         "model.layers.1.self_attn.o_proj.weight",
         "model.layers.1.mlp.shared_experts.down_proj.weight",
         "model.layers.0.mlp.gate_proj.weight"]


def read(d):
    idx = json.load(open(os.path.join(d, "model.safetensors.index.json")))["weight_map"]
    out = {}
    for shard in sorted(set(idx.values())):
        b = open(os.path.join(d, shard), "rb").read()
        n = struct.unpack("<Q", b[:8])[0]
        for k, v in json.loads(b[8:8 + n]).items():
            if k != "__metadata__":
                s, e = v["data_offsets"]
                out[k] = (v["dtype"], v["shape"], b[8 + n + s:8 + n + e])
    return out


def main():
    root = sys.argv[1]
    fp8, hf = read(os.path.join(root, "fp8")), read(os.path.join(root, "hf"))
    items = []
    for n in NAMES:
        items += [(n, fp8[n]), (n + "_scale_inv", fp8[n + "_scale_inv"]), ("original." + n, hf[n])]
    hdr, off, data = {"__metadata__": {"source": "deepseek_v3 fixture, make_arch_fixtures.py"}}, 0, b""
    for k, (dt, shape, raw) in items:
        hdr[k] = {"dtype": dt, "shape": shape, "data_offsets": [off, off + len(raw)]}
        off += len(raw)
        data += raw
    h = json.dumps(hdr, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "deepseek_v3_sample.safetensors")
    open(out, "wb").write(struct.pack("<Q", len(h)) + h + data)
    print(out, 8 + len(h) + len(data), "bytes")


main()
