"""Re-derive, in Python, the tokenizer goldens that were made with Node packages, and compare.

testdata/kimi-k2-tokenizer/golden.json came from npm `tiktoken` and
testdata/qwen3-tokenizer/gpt4-pattern-golden.json from npm `tokenizers` (see the .cjs scripts
beside this one). This script recomputes both where Python's tokenizers (and tiktoken, if
installed) are the reference, and checks every case's ids and decoded text against the
committed files. It writes nothing; it exits 1 on any difference.

Run from the repository root (CPU only, no network, about 5 s):
  python3 scripts/goldens/tokenizer_crosscheck.py
"""
import gzip
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kimi_tokenizer as kt  # noqa: E402

KIMI = "testdata/kimi-k2-tokenizer/"
QWEN3 = "testdata/qwen3-tokenizer/"
# The JSON text of Qwen3's number alternative and the GPT-4 one that replaces it.
QWEN_RE = r"\\p{N}| ?[^\\s\\p{L}\\p{N}]+"
GPT4_RE = r"\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+"


def compare(name, want, got):
    bad = [i for i, (w, g) in enumerate(zip(want, got)) if w["ids"] != g["ids"] or w["decoded"] != g["decoded"]]
    if len(want) != len(got):
        bad.append(-1)
    print(f"{name}: {len(got)} cases, {len(bad)} differ" + (f" (first: {bad[:5]})" if bad else ""))
    return not bad


def kimi():
    ranks = kt.load_ranks(KIMI + "tiktoken.model.gz")
    specials = kt.special_tokens(KIMI + "tokenizer_config.json", len(ranks))
    ref = kt.Reference(ranks, specials)
    try:
        import tiktoken
        enc = tiktoken.Encoding(name="kimi", pat_str=kt.PAT_STR, mergeable_ranks=ranks, special_tokens=specials)
        print(f"kimi: tiktoken {tiktoken.__version__} and the pure-Python reference")
    except ImportError:
        enc = None
        print("kimi: tiktoken is not installed; the pure-Python reference only")
    by_id = {v: k for k, v in ranks.items()}
    by_id.update({v: k.encode() for k, v in specials.items()})
    want = json.load(open(KIMI + "golden.json", encoding="utf-8"))["cases"]
    got, ok = [], True
    for c in want:
        ids = []
        for p in kt.pieces(c["text"]):
            mine = ref.encode(p)
            if enc is not None:
                theirs = enc.encode(p, allowed_special="all")
                if theirs != mine:
                    ok = False
                    print(f"kimi: tiktoken and the reference disagree on {p[:60]!r}")
                mine = theirs
            ids += mine
        got.append({"ids": ids, "decoded": b"".join(by_id[i] for i in ids).decode("utf-8", "replace")})
    return compare("kimi golden.json", want, got) and ok


def gpt4():
    from tokenizers import Tokenizer
    import tokenizers
    text = gzip.decompress(open(QWEN3 + "tokenizer.json.gz", "rb").read()).decode("utf-8")
    if text.count(QWEN_RE) != 1:
        sys.exit("the Qwen3 regex is not in tokenizer.json exactly once")
    tok = Tokenizer.from_str(text.replace(QWEN_RE, GPT4_RE))
    want = json.load(open(QWEN3 + "gpt4-pattern-golden.json", encoding="utf-8"))["cases"]
    got = []
    for c in want:
        ids = tok.encode(c["text"], add_special_tokens=False).ids
        got.append({"ids": ids, "decoded": tok.decode(ids, skip_special_tokens=False)})
    return compare(f"gpt4-pattern-golden.json (tokenizers {tokenizers.__version__})", want, got)


def main():
    results = [kimi()]
    try:
        results.append(gpt4())
    except ImportError:
        print("gpt4 pattern: Python tokenizers is not installed; skipped")
        results.append(False)
    sys.exit(0 if all(results) else 1)


if __name__ == "__main__":
    main()
