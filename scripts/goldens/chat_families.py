"""Goldens for the chat formats of the families beside Qwen3.5 (issue 14).

Two parts, each usable alone:

  --templates DIR   renders every case below through each family's published chat template
                    (DIR/<family>.jinja) with Jinja2 configured as Hugging Face transformers
                    configures it (transformers' own compiler when it is installed) and writes
                    DIR/render_cases.json. Needs only jinja2.

  --tokenizer NAME=PATH  (repeatable) encodes the adversarial strings below and every rendered
                    prompt with Hugging Face `tokenizers` (tokenizer.json at PATH, .gz allowed)
                    and writes OUT/<NAME>-tokenizer-golden.json. With --trim it also writes
                    OUT/<NAME>-tokenizer-trimmed.json: the same tokenizer with only the merges
                    these strings apply (plus the 256 byte tokens and every added token), and
                    checks with `tokenizers` that the trimmed file encodes every string exactly as
                    the full one does. BPE picks the lowest-ranked applicable merge at each step;
                    a merge that never applies to a string is never that minimum, so dropping it
                    (keeping the others' relative ranks) cannot change the result for that string.

Messages are stored in the OpenAI wire shape (arguments as JSON text, content a string); before
rendering they are converted the way fmoe converts them for the family (chat.Format): arguments
parsed into a mapping, except for DeepSeek's templates, which concatenate them as text and test
the content of a tool-calling message for none.

Run:  python3 chat_families.py --templates ../../chat/testdata/families
      python3 chat_families.py --templates T --tokenizer deepseek_v3=tokenizer.json.gz --trim --out OUT
"""
import argparse
import copy
import gzip
import json
import os
import sys

DEEPSEEK_SPECIAL = {"bos_token": "<｜begin▁of▁sentence｜>", "eos_token": "<｜end▁of▁sentence｜>",
                    "pad_token": "<｜end▁of▁sentence｜>"}
FAMILIES = {
    # family: (template file, DeepSeek conversion?, special tokens HF passes to the template)
    "glm45": ("glm45.jinja", False, {"eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>"}),
    "deepseek_v31": ("deepseek_v31.jinja", True, DEEPSEEK_SPECIAL),
    "deepseek_v3": ("deepseek_v3.jinja", True, DEEPSEEK_SPECIAL),
    "kimi_k2": ("kimi_k2.jinja", False, {"bos_token": "[BOS]", "eos_token": "[EOS]",
                                         "pad_token": "[PAD]", "unk_token": "[UNK]"}),
}


def compiler():
    """HF's template compiler when transformers is installed, else a replica of its environment."""
    try:
        from transformers.utils.chat_template_utils import _compile_jinja_template
        import transformers
        return _compile_jinja_template, f"transformers {transformers.__version__} _compile_jinja_template"
    except Exception:  # noqa: BLE001
        pass
    import jinja2
    from jinja2.ext import loopcontrols
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    return env.from_string, f"jinja2 {jinja2.__version__}, HF environment replica"


WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Weather for a city <b>&</b> — météo",
    "parameters": {"type": "object", "properties": {
        "city": {"type": "string", "description": "City name, e.g. \"Paris\""},
        "days": {"type": "integer", "minimum": 1},
        "detail": {"type": "object", "properties": {"hourly": {"type": "boolean"}}}},
        "required": ["city"]}}}
WRITE = {"type": "function", "function": {
    "name": "write_file", "description": "Write a file",
    "parameters": {"type": "object", "properties": {
        "path": {"type": "string"}, "content": {"type": "string"},
        "tags": {"type": "array", "items": {"type": "string"}}}}}}


def call(name, args, id_):
    return {"id": id_, "type": "function",
            "function": {"name": name, "arguments": json.dumps(args, ensure_ascii=False)}}


def U(c):
    return {"role": "user", "content": c}


def A(c, **kw):
    m = {"role": "assistant", "content": c}
    m.update(kw)
    return m


def T(c, id_):
    return {"role": "tool", "content": c, "tool_call_id": id_}


S = {"role": "system", "content": "You are helpful.\n"}
LOOP = [S, U("Weather in Paris and Oslo, then save it."),
        A("", tool_calls=[call("get_weather", {"city": "Paris", "days": 2}, "call_1"),
                          call("get_weather", {"city": "Oslo", "detail": {"hourly": True}}, "call_2")]),
        T('{"temp": 21}', "call_1"), T("{\n  \"temp\": 3\n}", "call_2"),
        A("Saving.", tool_calls=[call("write_file", {"path": "/tmp/w.txt", "content": "Paris 21\nOslo 3\n",
                                                      "tags": ["a", "ü"]}, "call_3")]),
        T("ok", "call_3"), A("Done: Paris 21°C, Oslo 3°C.")]

# (name, messages, tools, options); options hold add_generation_prompt (default true) and the
# template variables fmoe passes as RenderOptions (enable_thinking, thinking).
CASES = [
    ("plain", [U("hi")], None, {}),
    ("multi-turn", [S, U("hi"), A("hello!"), U("how are you?")], None, {}),
    ("no generation prompt", [U("hi"), A("hello")], None, {"add_generation_prompt": False}),
    ("two system messages", [S, {"role": "system", "content": "Be brief."}, U("x")], None, {}),
    ("thinking off", [S, U("hi")], None, {"enable_thinking": False}),
    ("thinking on", [U("hi")], None, {"enable_thinking": True}),
    ("deepseek thinking var", [U("hi")], None, {"thinking": True}),
    ("user ends with nothink", [U("hi /nothink")], None, {"enable_thinking": False}),
    ("tools offered", [U("weather?")], [WEATHER, WRITE], {}),
    ("think in content before last query", [U("q1"), A("<think>\nplan\n</think>\n\nanswer one"), U("q2")], None, {}),
    ("think in content after last query", [U("q1"), A("<think>\nplan\n</think>\n\nanswer one")], None,
     {"add_generation_prompt": False}),
    ("reasoning_content after last query", [U("q"), A("final", reasoning_content="  step 1\nstep 2  ")], None,
     {"add_generation_prompt": False}),
    ("agent loop", LOOP, [WEATHER, WRITE], {}),
    ("agent loop then question", LOOP + [U("And Rome?")], [WEATHER, WRITE], {}),
    ("tool result last", LOOP[:5], [WEATHER, WRITE], {}),
    ("argument value types",
     [U("x"), A("", tool_calls=[call("noop", {
         "s": "multi\nline\n", "i": 42, "neg": -7, "f": 1.5, "e": 1e-7, "t": True, "fa": False, "n": None,
         "l": [1, "a", {"k": "v"}], "o": {"b": 1, "a": {"z": []}}, "emptyo": {}, "uni": "你好 😀",
         "quote": "say \"hi\" \\ <tag>"}, "c1")]), T("r", "c1")], None, {}),
    ("tool call with content", [U("x"), A("Let me check.", tool_calls=[call("noop", {"a": 1}, "c1")]), T("r", "c1")],
     None, {}),
    ("non-ascii", [{"role": "system", "content": "Réponds en français 🇫🇷"}, U("Qu'est-ce que c'est ? — «ok» 日本語")],
     None, {}),
]


def to_family(messages, deepseek):
    """What fmoe passes the template (chat.Format): arguments as a mapping, except that DeepSeek's
    templates take them as JSON text and see content None beside tool calls when there is no text."""
    out = copy.deepcopy(messages)
    for m in out:
        if deepseek:
            if m.get("tool_calls") and m["content"] == "":
                m["content"] = None
            continue
        for c in m.get("tool_calls", []):
            c["function"]["arguments"] = json.loads(c["function"]["arguments"])
    return out


def render_all(tdir):
    compile_, ref = compiler()
    out = {"reference": ref, "families": {}}
    for fam, (fname, args_text, special) in FAMILIES.items():
        src = open(os.path.join(tdir, fname), encoding="utf-8").read()
        tpl = compile_(src)
        cases = []
        for name, messages, tools, opts in CASES:
            kw = {k: v for k, v in opts.items() if k != "add_generation_prompt"}
            agp = opts.get("add_generation_prompt", True)
            try:
                text, err = tpl.render(messages=to_family(messages, args_text), tools=tools, documents=None,
                                       add_generation_prompt=agp, **special, **kw), None
            except Exception as e:  # noqa: BLE001
                text, err = None, f"{type(e).__name__}: {e}"
            cases.append({"name": name, "messages": messages, "tools": tools, "options": kw,
                          "add_generation_prompt": agp, "rendered": text, "error": err})
        out["families"][fam] = {"template": fname, "special_tokens": special, "cases": cases}
    return out


# Strings that stress each pre-tokenizer alternative and the added-token split.
STRINGS = [
    "", "hello world", "Hello, World!", "  leading and trailing  ", "tabs\tand\nnewlines\r\n\r\nend",
    "1234567890 12 3.14159 -42 1e10", "x1y22z333w4444", "²³ ½ ٣٤٥ ௧௨௩",
    "I'm you're we've they'll she'd IT'S DON'T", "don’t won't", "snake_case camelCase kebab-case",
    "(a+b)*c/d; e->f => g != h && i || j", "path/to/file.go:12:3", "https://example.com/a?b=c&d=e#f",
    "!!!??? ... --- ___ ***", "@user #tag $100 %20 ^caret `tick` ~tilde", "\"quoted\" 'single'",
    "中文分词测试，你好世界！", "日本語のテキスト、カタカナとひらがな。", "한국어 텍스트입니다", "Ελληνικά кириллица עברית العربية",
    "emoji 😀👍🏽👨‍👩‍👧 flags 🇫🇷🇯🇵", "café naïve résumé", "e\u0301 a\u0308 combining", "\u200b zero\u200dwidth \ufeff bom",
    "   \n\n\n   ", "a\n\n\nb", " \t \n x", "trailing spaces   ", "line1\nline2\n",
    "def f(x):\n    return x ** 2  # square\n", "for (int i = 0; i < n; ++i) { sum += a[i]; }",
    "<think>reasoning</think>answer", "<tool_call>get_weather\n<arg_key>city</arg_key>\n<arg_value>Paris</arg_value>\n</tool_call>",
    "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>get_weather<｜tool▁sep｜>{\"city\": \"Paris\"}<｜tool▁call▁end｜><｜tool▁calls▁end｜>",
    "<｜begin▁of▁sentence｜><｜User｜>hi<｜Assistant｜></think>hello<｜end▁of▁sentence｜>",
    "<|tool_calls_section_begin|><|tool_call_begin|>functions.get_weather:0<|tool_call_argument_begin|>{}<|tool_call_end|>",
    "<|im_start|>user\nhi<|im_end|>", "[gMASK]<sop><|user|>\nhi<|assistant|>",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "ab" * 40, "0" * 50,
    "Mixed中文and English混合text", "ÀÉÎÕÜ àéîõü ß ẞ", "ǅ ǈ ǋ titlecase", "ſ long s 'ſ 'S",
    "\x00\x01\x7f control", "ｆｕｌｌｗｉｄｔｈ ＡＢＣ １２３", "Ⅻ ⅻ roman", "a.b,c;d:e", "...", " .", ". ",
]


def load_tokenizer_json(path):
    raw = open(path, "rb").read()
    if path.endswith(".gz"):
        raw = gzip.decompress(raw)
    return json.loads(raw)


def applied_merges(tok_json, words):
    """The merges BPE applies to the given pre-tokenized words (byte-level strings)."""
    merges = tok_json["model"]["merges"]
    pairs = [tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m) for m in merges]
    rank = {p: i for i, p in enumerate(pairs)}
    used = set()
    for w in words:
        syms = list(w)
        while len(syms) > 1:
            best = None
            for i in range(len(syms) - 1):
                r = rank.get((syms[i], syms[i + 1]))
                if r is not None and (best is None or r < best[0]):
                    best = (r, i)
            if best is None:
                break
            r, i = best
            used.add(r)
            syms[i:i + 2] = [syms[i] + syms[i + 1]]
    return sorted(used), pairs


def trim(tok_json, texts, tk):
    """A tokenizer.json with only the merges `texts` apply; see the module doc."""
    from tokenizers import Tokenizer
    full = Tokenizer.from_str(json.dumps(tok_json))
    words = []
    for t in texts:
        # Added tokens are split out first, as encode does.
        enc = full.encode(t, add_special_tokens=False)
        specials = {a["content"] for a in tok_json["added_tokens"]}
        pieces = [t]
        for s in sorted(specials, key=len, reverse=True):
            pieces = [q for p in pieces for q in p.split(s)]
        for p in pieces:
            if full.normalizer is not None:
                p = full.normalizer.normalize_str(p)
            words += [w for w, _ in full.pre_tokenizer.pre_tokenize_str(p)]
        del enc
    used, pairs = applied_merges(tok_json, words)
    vocab = tok_json["model"]["vocab"]
    keep = {}
    for ch in bytes_to_unicode().values():
        if ch in vocab:
            keep[ch] = vocab[ch]
    merges = []
    for r in used:
        a, b = pairs[r]
        for tok in (a, b, a + b):
            keep[tok] = vocab[tok]
        merges.append(tok_json["model"]["merges"][r])
    # tokenizers gives an added token the id of the vocabulary entry with its content, else the
    # next id after the vocabulary's size: with a smaller vocabulary that id would change, so the
    # added tokens enter the trimmed vocabulary with the ids the full tokenizer gives them.
    for a in tok_json["added_tokens"]:
        tid = full.token_to_id(a["content"])
        if tid is not None:
            keep[a["content"]] = tid
    out = copy.deepcopy(tok_json)
    out["model"]["vocab"] = dict(sorted(keep.items(), key=lambda kv: kv[1]))
    out["model"]["merges"] = merges
    small = Tokenizer.from_str(json.dumps(out, ensure_ascii=False))
    bad = [t for t in texts if small.encode(t, add_special_tokens=False).ids != full.encode(t, add_special_tokens=False).ids
           or small.decode(full.encode(t, add_special_tokens=False).ids, skip_special_tokens=False)
           != full.decode(full.encode(t, add_special_tokens=False).ids, skip_special_tokens=False)]
    return out, bad


def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


def encode_all(name, path, texts, out_dir, do_trim):
    from tokenizers import Tokenizer
    import tokenizers
    tj = load_tokenizer_json(path)
    tok = Tokenizer.from_str(json.dumps(tj))
    cases = []
    for t in texts:
        ids = tok.encode(t, add_special_tokens=False).ids
        cases.append({"text": t, "ids": ids, "decoded": tok.decode(ids, skip_special_tokens=False)})
    golden = {"reference": f"tokenizers {tokenizers.__version__}", "tokenizer": os.path.basename(path), "cases": cases}
    if do_trim:
        small, bad = trim(tj, texts, tok)
        golden["trimmed_mismatches"] = bad
        with open(os.path.join(out_dir, f"{name}-tokenizer-trimmed.json"), "w", encoding="utf-8") as f:
            json.dump(small, f, ensure_ascii=False, separators=(",", ":"))
        print(f"{name}: trimmed to {len(small['model']['vocab'])} tokens, {len(small['model']['merges'])} merges;"
              f" {len(bad)} strings encode differently", file=sys.stderr)
    with open(os.path.join(out_dir, f"{name}-tokenizer-golden.json"), "w", encoding="utf-8") as f:
        json.dump(golden, f, ensure_ascii=False, indent=0)
        f.write("\n")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--templates", help="folder with the family templates; render_cases.json is written there unless --out")
    ap.add_argument("--tokenizer", action="append", default=[], help="NAME=PATH of a tokenizer.json(.gz)")
    ap.add_argument("--trim", action="store_true")
    ap.add_argument("--out")
    a = ap.parse_args()
    rendered = []
    if a.templates:
        cases = render_all(a.templates)
        out_dir = a.out or a.templates
        with open(os.path.join(out_dir, "render_cases.json"), "w", encoding="utf-8") as f:
            json.dump(cases, f, ensure_ascii=False, indent=1)
            f.write("\n")
        for fam in cases["families"].values():
            rendered += [c["rendered"] for c in fam["cases"] if c["rendered"]]
        print(f"rendered with {cases['reference']}", file=sys.stderr)
    for spec in a.tokenizer:
        name, path = spec.split("=", 1)
        encode_all(name, path, STRINGS + rendered, a.out or ".", a.trim)


if __name__ == "__main__":
    main()
