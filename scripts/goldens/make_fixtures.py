#!/usr/bin/env python3
"""Regenerates testdata/tiny (and testdata/qwen3-tokenizer/golden.json): a random-weight
Qwen3.5-MoE in the three layouts fmoe-pack reads, and the golden outputs of Hugging Face
transformers (the reference implementation) that the Go tests compare against.

Needs torch, transformers >= 5.2 (qwen3_5_moe), tokenizers, safetensors and numpy: the GPU
machine has them (see scripts/goldens/README.md). Everything runs in float32 on the CPU.

  python3 make_fixtures.py --out DIR [--preset tiny|wide] [--seed N]
                           [--qwen3-tokenizer testdata/qwen3-tokenizer/tokenizer.json.gz]

writes DIR/<preset>/{tokenizer,hf,hf-vl,mlx-4bit,golden}/ (testdata/README.md says what each
holds) and, with --qwen3-tokenizer, DIR/qwen3-tokenizer-golden.json.

Reproducibility: the weights come from torch's CPU generator, so the same seed gives the same
bytes. The tokenizer is trained on the first 120 `modeling_*.py` files of the installed
transformers, so it (and every id in the goldens) depends on the transformers version:
testdata was made with transformers 5.17.0 and torch 2.11.0.
"""
import argparse
import glob
import gzip
import json
import os
import shutil
import sys
import tempfile

import numpy as np
import torch
from safetensors.torch import save_file

# The goldens are float32 references: no TF32 anywhere.
torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False

HERE = os.path.dirname(os.path.abspath(__file__))

# Shapes. Both keep the 397B model's structure (GatedDeltaNet + gated attention, routed experts
# + a sigmoid-gated shared expert) at a size whose goldens fit in the repository.
PRESETS = {
    # 8 layers, full attention at 3 and 7 (every 4th, as in Qwen3.5-397B-A17B)
    "tiny": dict(hidden_size=128, num_hidden_layers=8, num_attention_heads=4, num_key_value_heads=2,
                 head_dim=64, linear_num_key_heads=2, linear_num_value_heads=4, linear_key_head_dim=32,
                 linear_value_head_dim=32, linear_conv_kernel_dim=4, num_experts=16, num_experts_per_tok=4,
                 moe_intermediate_size=64, shared_expert_intermediate_size=64, vocab=2048, layer_types=None),
    # irregular layer pattern, 3 value heads per key head, wider experts
    "wide": dict(hidden_size=192, num_hidden_layers=5, num_attention_heads=6, num_key_value_heads=2,
                 head_dim=64, linear_num_key_heads=2, linear_num_value_heads=6, linear_key_head_dim=32,
                 linear_value_head_dim=64, linear_conv_kernel_dim=4, num_experts=24, num_experts_per_tok=6,
                 moe_intermediate_size=128, shared_expert_intermediate_size=192, vocab=3072,
                 layer_types=["linear_attention", "full_attention", "linear_attention", "linear_attention",
                              "full_attention"]),
}

# Qwen3.5's pre-tokenizer regex (Qwen3's with \p{M} joined to the letter classes).
PRETOKENIZE = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*"
               r"|\s*[\r\n]+|\s+(?!\S)|\s+")
SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
           "<|image_pad|>", "<|video_pad|>"]
ADDED = ["<tool_call>", "</tool_call>", "<tool_response>", "</tool_response>", "<think>", "</think>"]

# Strings every tokenizer golden encodes; they are also part of the tokenizer's training corpus.
TOKENIZER_CASES = [
    "Hello, world!", "hello world", " leading space", "trailing space ", "  two  spaces  ",
    "tabs\tand\nnewlines\r\n\r\nend", "\n\n\n", "   \n  \n", "", " ", "a", "I'm you're we've they'll he'd",
    "DON'T SHOUT I'LL", "numbers 1234567890 3.14159 -42 1e10", "x=1;y=2;", "def f(x):\n    return x**2\n",
    'json {"name": "get_weather", "arguments": {"city": "Paris"}}', "<tool_call>\n<function=bash>\n</tool_call>",
    "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n", "<think>\n\n</think>\n\n",
    "日本語のテキストです。", "中文分词测试，标点符号！", "한국어 텍스트", "Ünïcödé àccents café naïve",
    "e\u0301 combining acute", "cafe\u0301 vs caf\u00e9", "emoji 😀🎉👍🏽 family 👨‍👩‍👧", "Ελληνικά και Русский",
    "עברית ועربية", "हिन्दी भाषा", "ﬁ ligature and ＡＢＣ fullwidth", "zero\u200bwidth\u200djoiner",
    "mixed123abc456", "a\u00a0nbsp", "$$$ %%% ^^^ &&&", "!!!???...", "https://example.com/path?q=1&r=2",
    "C:\\Users\\name\\file.txt", "    indented code block", "```go\nfunc main() {}\n```",
    "<|endoftext|>", "text<|im_end|>more", "<|im_start|><|im_start|>", "<tool_response>\nok\n</tool_response>",
    "'s 's 'S", "supercalifragilisticexpialidocious", "The quick brown fox jumps over the lazy dog. " * 3,
]
# Alphabet of the random strings appended to the tokenizer golden (regex boundaries, specials).
RANDOM_ALPHABET = list("abcXYZ019 \t\n'\".,!?-_/\\()[]{}<>|") + [
    "é", "ü", "ß", "日", "本", "中", "😀", "\u0301", "\u200d", "<|im_end|>", "<think>", "  ", "\r\n"]

GOLDEN_PROMPT = "The packed experts stream from disk, one layer at a time."
MIN_ROUTER_GAP = 2e-3  # k-th vs (k+1)-th router logit, every token of every golden case
TOOLS = [
    {"type": "function", "function": {"name": "get_weather", "description": "Weather for a city",
     "parameters": {"type": "object", "properties": {"city": {"type": "string"},
                    "unit": {"type": "string", "enum": ["c", "f"]}}, "required": ["city"]}}},
    {"type": "function", "function": {"name": "bash", "description": "Run a shell command",
     "parameters": {"type": "object", "properties": {"command": {"type": "string"}}, "required": ["command"]}}},
]


def bf16(t):
    return t.to(torch.bfloat16)


def write_json(path, obj, **kw):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, **kw)


# ---------------------------------------------------------------------------------------------
# Tokenizer

def train_tokenizer(vocab, outdir, extra_texts=()):
    """A byte-level BPE with Qwen3.5's normaliser, pre-tokenizer, specials and chat template,
    trained on transformers' own model sources plus TOKENIZER_CASES and extra_texts."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    import transformers
    src = os.path.join(os.path.dirname(transformers.__file__), "models", "*", "modeling_*.py")
    corpus = [open(p, encoding="utf-8", errors="ignore").read() for p in sorted(glob.glob(src))[:120]]
    corpus += TOKENIZER_CASES + list(extra_texts)
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(PRETOKENIZE), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab - len(SPECIAL) - len(ADDED), show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(corpus, trainer)
    tok.add_special_tokens(SPECIAL)
    tok.add_tokens(ADDED)
    if tok.get_vocab_size() != vocab:
        sys.exit("tokenizer: %d tokens, want %d" % (tok.get_vocab_size(), vocab))

    os.makedirs(outdir, exist_ok=True)
    tok.save(os.path.join(outdir, "tokenizer.json"))
    template = open(os.path.join(HERE, "qwen35_chat_template.jinja"), encoding="utf-8").read()
    with open(os.path.join(outdir, "chat_template.jinja"), "w", encoding="utf-8") as f:
        f.write(template)
    decoder = {str(tok.token_to_id(t)): dict(content=t, lstrip=False, normalized=False, rstrip=False,
                                             single_word=False, special=t in SPECIAL)
               for t in SPECIAL + ADDED}
    config = dict(add_bos_token=False, add_prefix_space=False, added_tokens_decoder=decoder, bos_token=None,
                  eos_token="<|im_end|>", pad_token="<|endoftext|>", unk_token=None, model_max_length=262144,
                  tokenizer_class="Qwen2Tokenizer", chat_template=template, errors="replace",
                  clean_up_tokenization_spaces=False)
    write_json(os.path.join(outdir, "tokenizer_config.json"), config, indent=2, ensure_ascii=False)
    return tok


def tokenizer_golden(tokenizer_json, out_path):
    """TOKENIZER_CASES and 150 random strings -> ids, tokens and decoded text (HF tokenizers)."""
    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(tokenizer_json)
    rng = np.random.default_rng(7)
    texts = list(TOKENIZER_CASES)
    for _ in range(150):
        n = int(rng.integers(1, 40))
        texts.append("".join(RANDOM_ALPHABET[int(i)] for i in rng.integers(0, len(RANDOM_ALPHABET), n)))
    cases = []
    for s in texts:
        enc = tok.encode(s, add_special_tokens=False)
        cases.append(dict(text=s, ids=enc.ids, tokens=enc.tokens,
                          decoded=tok.decode(enc.ids, skip_special_tokens=False)))
    import tokenizers
    name = os.path.basename(os.path.dirname(tokenizer_json)) or "tokenizer"
    write_json(out_path, dict(tokenizer=name, reference="tokenizers %s" % tokenizers.__version__, cases=cases),
               ensure_ascii=False, indent=1)


def chat_golden(tokenizer_dir, out_path):
    """Conversations rendered by transformers' apply_chat_template with a generation prompt."""
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    call = lambda name, **args: {"type": "function", "function": {"name": name, "arguments": args}}
    convs = [
        dict(messages=[{"role": "user", "content": "Hello!"}]),
        dict(messages=[{"role": "system", "content": "You are terse."}, {"role": "user", "content": "2+2?"}]),
        dict(messages=[{"role": "user", "content": "Hi"}], enable_thinking=False),
        dict(messages=[{"role": "user", "content": "Weather in Paris?"}], tools=TOOLS),
        dict(messages=[{"role": "system", "content": "Be helpful."},
                       {"role": "user", "content": "Weather in Paris and Oslo?"},
                       {"role": "assistant", "content": "", "tool_calls": [
                           call("get_weather", city="Paris"), call("get_weather", city="Oslo", unit="c")]},
                       {"role": "tool", "content": "{\"temp\": 21}"},
                       {"role": "tool", "content": "{\"temp\": 3}"}], tools=TOOLS),
        dict(messages=[{"role": "user", "content": "list files"},
                       {"role": "assistant", "content": "<think>\nuse ls\n</think>\n\nRunning it.",
                        "tool_calls": [call("bash", command="ls -la")]},
                       {"role": "tool", "content": "a.txt\nb.txt"},
                       {"role": "assistant", "content": "Two files: a.txt and b.txt."},
                       {"role": "user", "content": "thanks"}], tools=TOOLS),
    ]
    cases = []
    for c in convs:
        options = {k: v for k, v in c.items() if k not in ("messages", "tools")}
        text = tok.apply_chat_template(c["messages"], tools=c.get("tools"), tokenize=False,
                                       add_generation_prompt=True, **options)
        cases.append(dict(messages=c["messages"], tools=c.get("tools"), options=options, add_generation_prompt=True,
                          rendered=text, ids=tok(text, add_special_tokens=False)["input_ids"]))
    write_json(out_path, dict(reference="transformers apply_chat_template", cases=cases), ensure_ascii=False, indent=1)


# ---------------------------------------------------------------------------------------------
# Model

def text_config(shape, vocab):
    from transformers import Qwen3_5MoeTextConfig
    kw = {k: v for k, v in shape.items() if k not in ("vocab", "layer_types")}
    if shape["layer_types"] is not None:
        kw["layer_types"] = shape["layer_types"]
    rope = dict(rope_type="default", rope_theta=10000000.0, partial_rotary_factor=0.25)
    return Qwen3_5MoeTextConfig(vocab_size=vocab, rope_parameters=rope, rms_norm_eps=1e-6, tie_word_embeddings=False,
                                eos_token_id=None, bos_token_id=None, pad_token_id=None, **kw)


def init_value(name, shape, g):
    """A random value for one parameter, scaled so that every path of the forward matters:
    non-zero norm offsets, spread decays, decisive routing."""
    rand = lambda: torch.randn(shape, generator=g)
    if name.endswith("A_log"):
        return torch.log(torch.empty(shape).uniform_(0.3, 6.0, generator=g))
    if name.endswith("dt_bias") or name.endswith("conv1d.weight"):
        return rand() * 0.5
    if name.endswith("linear_attn.norm.weight"):  # gated norm: plain w, around 1
        return 1.0 + rand() * 0.2
    if "norm" in name:  # zero-centred (1 + w) norms
        return rand() * 0.2
    if name.endswith("mlp.gate.weight"):  # router: logits a few units apart
        return rand() * (8.0 / shape[-1] ** 0.5)
    if name.endswith("embed_tokens.weight"):
        return rand()
    if len(shape) in (2, 3):  # matrices, fused experts [E, out, in]: unit-variance outputs
        return rand() / shape[-1] ** 0.5
    return rand() * 0.1


def randomize(model, g):
    """Replaces every parameter (in state_dict order, so a seed always gives the same bytes) by a
    bf16-representable value: the bf16 checkpoint is then exactly the model the goldens ran."""
    state = {k: bf16(init_value(k, v.shape, g)).float() for k, v in model.state_dict().items()}
    model.load_state_dict(state)
    return state


def set_top_k(model, k):
    model.config.num_experts_per_tok = k
    for layer in model.model.layers:
        layer.mlp.gate.top_k = k


def golden_case(model, ids, n_new, path, note):
    """Saves the logits at every prompt position, the residual stream after every layer, and a
    greedy continuation decoded token by token through the cache. Returns the smallest router
    gap seen (a near-tie would let rounding pick the experts)."""
    first = lambda out: out[0] if isinstance(out, tuple) else out
    with torch.no_grad():
        x = torch.tensor([ids])
        hidden = {}

        def keep(name):
            return lambda mod, inp, out: hidden.__setitem__(name, first(out)[0].float().clone())
        hooks = [model.model.embed_tokens.register_forward_hook(keep("hidden.embed"))]
        hooks += [layer.register_forward_hook(keep("hidden.layer%02d" % i)) for i, layer in enumerate(model.model.layers)]
        hooks.append(model.model.norm.register_forward_hook(keep("hidden.final_norm")))
        logits = model(x, use_cache=False).logits[0].float()
        for h in hooks:
            h.remove()

        gen = model.generate(x, max_new_tokens=n_new, do_sample=False, use_cache=True, output_logits=True,
                             return_dict_in_generate=True, pad_token_id=0, eos_token_id=None)
        gen_ids = gen.sequences[0, len(ids):].tolist()
        gen_logits = torch.stack([l[0].float() for l in gen.logits])
        # The reference checks itself: its cached decode must match a full forward.
        full = model(gen.sequences[:, :-1], use_cache=False).logits[0, len(ids) - 1:].float()
        decode_vs_full = ((full - gen_logits).norm() / full.norm()).item()
        if decode_vs_full >= 1e-4:
            sys.exit("%s: the reference's cached decode differs from its full forward (%.3g)" % (path, decode_vs_full))

        k = model.config.num_experts_per_tok
        gaps = []

        def gap(mod, inp, out):
            top = torch.topk(first(out).float(), k + 1, dim=-1).values
            gaps.append((top[:, -2] - top[:, -1]).min().item())
        hooks = [layer.mlp.gate.register_forward_hook(gap) for layer in model.model.layers]
        model(gen.sequences, use_cache=False)
        for h in hooks:
            h.remove()

    tensors = {"input_ids": torch.tensor(ids, dtype=torch.int64), "logits": logits.contiguous(),
               "generated_ids": torch.tensor(gen_ids, dtype=torch.int64), "generated_logits": gen_logits.contiguous()}
    tensors.update({name: h.contiguous() for name, h in hidden.items()})
    save_file(tensors, path, metadata={"note": note, "experts_per_token": str(k),
                                       "min_router_logit_gap": "%.3g" % min(gaps),
                                       "decode_vs_full_rel": "%.3g" % decode_vs_full})
    return min(gaps)


# ---------------------------------------------------------------------------------------------
# Checkpoint layouts

def save_hf(state, cfg, outdir, shard_size):
    """transformers' own save_pretrained (per-expert tensors in bf16, sharded)."""
    from transformers import AutoModelForCausalLM
    m = AutoModelForCausalLM.from_config(cfg)
    m.load_state_dict(state)
    m.to(torch.bfloat16).save_pretrained(outdir, max_shard_size=shard_size)


def save_hf_vl(state, cfg, outdir, g):
    """The official release's layout: nested text_config, model.language_model.* names, fused
    experts, and vision and MTP tensors that a text runtime must skip."""
    os.makedirs(outdir, exist_ok=True)
    out = {("model.language_model." + k[len("model."):] if k.startswith("model.") else k): bf16(v)
           for k, v in state.items()}
    H, E, I = cfg.hidden_size, cfg.num_experts, cfg.moe_intermediate_size
    for name, shape in (("model.visual.patch_embed.proj.weight", (32, 3, 2, 4, 4)),
                        ("model.visual.blocks.0.attn.qkv.weight", (96, 32)),
                        ("model.visual.merger.linear_fc2.weight", (H, 64)),
                        ("mtp.fc.weight", (H, 2 * H)),
                        ("mtp.layers.0.input_layernorm.weight", (H,)),
                        ("mtp.layers.0.mlp.experts.gate_up_proj", (E, 2 * I, H))):
        out[name] = bf16(torch.randn(*shape, generator=g))
    # two shards split by sorted name, so that a layer's tensors straddle files
    names = sorted(out)
    half = len(names) // 2
    weight_map, total = {}, 0
    for fname, keys in (("model-00001-of-00002.safetensors", names[:half]),
                        ("model-00002-of-00002.safetensors", names[half:])):
        save_file({k: out[k].contiguous() for k in keys}, os.path.join(outdir, fname), metadata={"format": "pt"})
        for k in keys:
            weight_map[k] = fname
            total += out[k].numel() * 2
    write_json(os.path.join(outdir, "model.safetensors.index.json"),
               {"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2)
    text = cfg.to_dict()
    for k in ("architectures", "transformers_version", "dtype", "torch_dtype"):
        text.pop(k, None)
    text.update(model_type="qwen3_5_moe_text", dtype="bfloat16", mtp_num_hidden_layers=1)
    text["rope_parameters"]["mrope_section"] = [11, 11, 10]
    text["rope_parameters"]["mrope_interleaved"] = True
    write_json(os.path.join(outdir, "config.json"), {
        "architectures": ["Qwen3_5MoeForConditionalGeneration"], "model_type": "qwen3_5_moe", "text_config": text,
        "vision_config": {"depth": 1, "hidden_size": 32, "model_type": "qwen3_5_moe"},
        "image_token_id": cfg.vocab_size - 8, "tie_word_embeddings": False, "transformers_version": "5.17.0"},
        indent=2)


def mlx_quantize(w, bits, group=64):
    """MLX's affine quantisation of a float32 [out, in] matrix (mlx/ops.cpp affine_quantize):
    the group's extreme of larger magnitude maps exactly to a level, scale and bias are stored
    as bf16 and the levels are chosen with the stored values. Returns the packed words (as
    int32, little-endian nibbles), scales, biases and the dequantised matrix."""
    w = w.float()
    rows, cols = w.shape
    grp = w.reshape(rows, cols // group, group)
    hi, lo = grp.max(-1).values, grp.min(-1).values
    levels = 2 ** bits - 1
    scale = torch.clamp((hi - lo) / levels, min=1e-7)
    from_lo = lo.abs() > hi.abs()
    scale = torch.where(from_lo, scale, -scale)
    edge = torch.where(from_lo, lo, hi)
    q_edge = torch.round(edge / scale)
    scale = torch.where(q_edge != 0, edge / q_edge, scale)
    bias = torch.where(q_edge == 0, torch.zeros_like(edge), edge)
    scale, bias = bf16(scale), bf16(bias)
    s, b = scale.float()[..., None], bias.float()[..., None]
    q = torch.clamp(torch.round((grp - b) / s), 0, levels).to(torch.int64)
    deq = (q.float() * s + b).reshape(rows, cols)
    per_word = 32 // bits
    q = q.reshape(rows, cols // per_word, per_word)
    words = torch.zeros(rows, cols // per_word, dtype=torch.int64)
    for i in range(per_word):
        words |= q[..., i] << (bits * i)
    packed = torch.from_numpy(words.numpy().astype(np.uint32).view(np.int32))
    return packed, scale, bias, deq


def save_mlx(state, cfg, outdir):
    """mlx-community's layout (language_model.* names, stacked switch_mlp experts, affine 4-bit
    g64, router gates 8-bit, +1 folded into the zero-centred norms, conv1d as [C, K, 1]).
    Returns the dequantised state dict: what the reference must run to give its goldens."""
    os.makedirs(outdir, exist_ok=True)
    out, deq = {}, {}
    qcfg = {"group_size": 64, "bits": 4, "mode": "affine"}
    shifted = ("input_layernorm.weight", "post_attention_layernorm.weight", "q_norm.weight", "k_norm.weight")

    def put_quantized(base, w, bits):
        packed, s, b, d = mlx_quantize(w, bits)
        name = "language_model." + base
        out[name + ".weight"], out[name + ".scales"], out[name + ".biases"] = packed, s, b
        if bits != 4:
            qcfg[name] = {"group_size": 64, "bits": bits}
        return d

    for k, v in state.items():
        if ".mlp.experts." in k:
            continue  # stacked below
        if k.endswith(shifted) or k == "model.norm.weight":
            stored = bf16(v + 1.0)
            out["language_model." + k] = stored
            deq[k] = stored.float() - 1.0
        elif k.endswith("conv1d.weight"):  # HF [C, 1, K] -> MLX [C, K, 1]
            out["language_model." + k] = bf16(v).permute(0, 2, 1).contiguous()
            deq[k] = v
        elif k.endswith("A_log"):
            out["language_model." + k] = v.float()
            deq[k] = v
        elif v.dim() == 2 and not k.endswith("norm.weight"):
            gate = k.endswith("mlp.gate.weight") or k.endswith("shared_expert_gate.weight")
            deq[k] = put_quantized(k[:-len(".weight")], v, 8 if gate else 4)
        else:
            out["language_model." + k] = bf16(v)
            deq[k] = bf16(v).float()

    I = cfg.moe_intermediate_size
    for layer in range(cfg.num_hidden_layers):
        pre = "model.layers.%d.mlp." % layer
        gate_up, down = state[pre + "experts.gate_up_proj"], state[pre + "experts.down_proj"]
        parts = {}
        for proj, w in (("gate_proj", gate_up[:, :I, :]), ("up_proj", gate_up[:, I:, :]), ("down_proj", down)):
            per_expert = [mlx_quantize(w[e], 4) for e in range(w.shape[0])]
            name = "language_model." + pre + "switch_mlp." + proj
            for i, suffix in enumerate((".weight", ".scales", ".biases")):
                out[name + suffix] = torch.stack([p[i] for p in per_expert])
            parts[proj] = torch.stack([p[3] for p in per_expert])
        deq[pre + "experts.gate_up_proj"] = torch.cat([parts["gate_proj"], parts["up_proj"]], dim=1)
        deq[pre + "experts.down_proj"] = parts["down_proj"]

    # packed words are U32 on disk
    out = {k: (v.view(torch.uint32) if v.dtype == torch.int32 and k.endswith(".weight") else v) for k, v in out.items()}
    names = sorted(out)
    third = len(names) // 3
    weight_map = {}
    for i, keys in enumerate((names[:third], names[third:2 * third], names[2 * third:])):
        fname = "model-%05d-of-00003.safetensors" % (i + 1)
        save_file({k: out[k].contiguous() for k in keys}, os.path.join(outdir, fname), metadata={"format": "mlx"})
        weight_map.update((k, fname) for k in keys)
    write_json(os.path.join(outdir, "model.safetensors.index.json"), {"metadata": {}, "weight_map": weight_map},
               indent=2)
    text = cfg.to_dict()
    text["model_type"] = "qwen3_5_moe_text"
    for k in ("architectures", "transformers_version", "torch_dtype"):
        text.pop(k, None)
    write_json(os.path.join(outdir, "config.json"), {
        "architectures": ["Qwen3_5MoeForConditionalGeneration"], "model_type": "qwen3_5_moe", "text_config": text,
        "tie_word_embeddings": False, "quantization": qcfg, "quantization_config": qcfg}, indent=2)
    return deq


def copy_tokenizer(src, dirs):
    for d in dirs:
        for f in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
            shutil.copy(os.path.join(src, f), os.path.join(d, f))


# ---------------------------------------------------------------------------------------------

def make_models(preset, shape, cfg, tok, root, seed):
    """The checkpoints and model goldens for one seed; returns the router gap of each case."""
    from transformers import AutoModelForCausalLM
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(cfg).float().eval()
    state = randomize(model, g)
    golden = lambda name: os.path.join(root, "golden", name + ".safetensors")

    ids = tok.encode(GOLDEN_PROMPT).ids
    n_text = shape["vocab"] - len(SPECIAL) - len(ADDED)
    long_ids = torch.randint(0, n_text, (80,), generator=g).tolist()
    gaps = {}
    gaps["bf16"] = golden_case(model, ids, 16, golden("bf16"),
                               "hf and hf-vl layouts, float32 compute on bf16 weights, prompt=%r" % GOLDEN_PROMPT)
    gaps["bf16-long"] = golden_case(model, long_ids, 4, golden("bf16-long"),
                                    "80 random tokens (crosses the 64-token chunk of the chunked delta rule)")
    k = shape["num_experts_per_tok"]
    small = max(1, k // 2)
    set_top_k(model, small)
    gaps["bf16-k%d" % small] = golden_case(model, ids, 8, golden("bf16-k%d" % small),
                                           "experts per token overridden to %d (renormalised over the chosen)" % small)
    set_top_k(model, k)

    save_hf(state, cfg, os.path.join(root, "hf"), "300KB")
    save_hf_vl(state, cfg, os.path.join(root, "hf-vl"), g)
    deq = save_mlx(state, cfg, os.path.join(root, "mlx-4bit"))
    qmodel = AutoModelForCausalLM.from_config(cfg).float().eval()
    qmodel.load_state_dict(deq)
    gaps["mlx4"] = golden_case(qmodel, ids, 16, golden("mlx4"), "mlx-4bit layout: float32 compute on the dequantised weights")
    if min(gaps.values()) < MIN_ROUTER_GAP:
        return gaps
    copy_tokenizer(os.path.join(root, "tokenizer"), [os.path.join(root, d) for d in ("hf", "mlx-4bit", "hf-vl")])
    import transformers
    write_json(os.path.join(root, "golden", "README.json"), {
        "reference": "transformers %s, torch %s, float32 on CPU" % (transformers.__version__, torch.__version__),
        "preset": preset, "seed": seed, "config": cfg.to_dict(), "min_router_logit_gap": gaps,
        "tensors": {"input_ids": "int64 [T] prompt token ids",
                    "logits": "float32 [T, vocab]: logits at every prompt position (full-sequence forward)",
                    "hidden.embed": "float32 [T, hidden]: token embeddings",
                    "hidden.layerNN": "float32 [T, hidden]: residual stream after decoder layer NN",
                    "hidden.final_norm": "float32 [T, hidden]: after the final norm (input of lm_head)",
                    "generated_ids": "int64 [N]: greedy continuation, decoded one token at a time with the cache",
                    "generated_logits": "float32 [N, vocab]: logits that chose each generated token"},
    }, indent=2)
    return gaps


def qwen3_golden(path, out_path):
    """The real Qwen3 tokenizer's golden; path may be the repository's gzipped copy."""
    if not path.endswith(".gz"):
        return tokenizer_golden(path, out_path)
    with tempfile.TemporaryDirectory() as tmp:
        plain = os.path.join(tmp, "qwen3-tokenizer", "tokenizer.json")  # the golden names its folder
        os.makedirs(os.path.dirname(plain))
        with gzip.open(path, "rb") as src, open(plain, "wb") as dst:
            shutil.copyfileobj(src, dst)
        tokenizer_golden(plain, out_path)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="output folder (DIR/<preset> is replaced)")
    ap.add_argument("--preset", default="tiny", choices=sorted(PRESETS))
    ap.add_argument("--seed", type=int, default=1234, help="first seed tried (testdata/tiny: 1234)")
    ap.add_argument("--qwen3-tokenizer", help="also write the golden of this tokenizer.json[.gz]")
    a = ap.parse_args()
    shape = PRESETS[a.preset]
    root = os.path.join(a.out, a.preset)
    if os.path.exists(root):
        shutil.rmtree(root)
    os.makedirs(os.path.join(root, "golden"))
    tok = train_tokenizer(shape["vocab"], os.path.join(root, "tokenizer"))
    tokenizer_golden(os.path.join(root, "tokenizer", "tokenizer.json"), os.path.join(root, "golden", "tokenizer.json"))
    chat_golden(os.path.join(root, "tokenizer"), os.path.join(root, "golden", "chat.json"))
    if a.qwen3_tokenizer:
        qwen3_golden(a.qwen3_tokenizer, os.path.join(a.out, "qwen3-tokenizer-golden.json"))
    cfg = text_config(shape, shape["vocab"])
    for seed in range(a.seed, a.seed + 40):  # a seed whose routing is decisive everywhere
        gaps = make_models(a.preset, shape, cfg, tok, root, seed)
        if min(gaps.values()) >= MIN_ROUTER_GAP:
            print(json.dumps(dict(seed=seed, min_router_logit_gap=gaps)))
            return
        print("seed %d: router gap %.3g under %g, trying the next" % (seed, min(gaps.values()), MIN_ROUTER_GAP))
    sys.exit("no seed in 40 gave decisive routing")


if __name__ == "__main__":
    main()
