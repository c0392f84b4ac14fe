"""Goldens for Kimi-K2's tokenizer (tiktoken.model + tokenization_kimi.py), issue 14.

Kimi-K2 ships no tokenizer.json. Its tokenization_kimi.py (loaded with trust_remote_code) builds
tiktoken.Encoding(pat_str=PAT_STR, mergeable_ranks=tiktoken.model, special_tokens=...) and its
encode(text) cuts the text into 400,000-character chunks, cuts those so that no run of whitespace
or non-whitespace passes 25,000 characters, and encodes each piece with allowed_special="all".
This script reproduces that pipeline: with tiktoken when it is installed, and always with the pure
Python reference below (the `regex` module, a transformers dependency, for pat_str; tiktoken's
byte-pair merge written out), checking that the two agree on every string.

The strings are chat_families.STRINGS, the Kimi-specific ones below and every prompt in
render_cases.json (all four families' templates).

Run (from the repository root; ~10 s, CPU only, no network):
  python3 scripts/goldens/kimi_tokenizer.py --model testdata/kimi-k2-tokenizer/tiktoken.model.gz \
      --config testdata/kimi-k2-tokenizer/tokenizer_config.json \
      --renders chat/testdata/families/render_cases.json --out /tmp/kimi-golden.json
  python3 scripts/goldens/kimi_tokenizer.py --texts-out /tmp/kimi-texts.json --renders ...   # inputs only
"""
import argparse
import base64
import gzip
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from chat_families import STRINGS  # noqa: E402

# tokenization_kimi.py's pat_str, written out.
PAT_STR = "|".join([
    r"""[\p{Han}]+""",
    r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}&&[^\p{Han}]]*[\p{Ll}\p{Lm}\p{Lo}\p{M}&&[^\p{Han}]]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
    r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}&&[^\p{Han}]]+[\p{Ll}\p{Lm}\p{Lo}\p{M}&&[^\p{Han}]]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
    r"""\p{N}{1,3}""",
    r""" ?[^\s\p{L}\p{N}]+[\r\n]*""",
    r"""\s*[\r\n]+""",
    r"""\s+(?!\S)""",
    r"""\s+""",
])
NUM_RESERVED = 256 + 2  # tokenization_kimi.py: num_reserved_special_tokens + 2
CHUNK_CHARS = 400_000
MAX_RUN = 25_000

# Strings aimed at Kimi's pattern: Han runs beside kana and digits, the upper/lower letter
# alternatives with Lt/Lm/Lo and marks, contractions after either, special-token literals
# (named, reserved, and the two reserved ids past config.json's vocab_size), and runs long
# enough for the 25,000-character cut.
KIMI_STRINGS = [
    "中文123汉字〇〇七⺀⻳⼀ and 日本語のカタカナ、ひらがな。", "漢字かな交じり文", "中文English中文",
    "HTTPServer XMLHttpRequest iPhone McDonald's O'NEIL'S DON'T we'RE",
    "ǅungla ǈudevit ǋ Ǆ ǆ", "ʰʲʷ ˈstress ˌsecond", "αβγ ΑΒΓ Ωmega ωMEGA", "ﬁ ﬂ ﬃ ligatures",
    "a\u0301e\u0300 \u0301x X\u0301Y", "\u0300\u0301", "'s 'S 'ſ x'ſ X'ſ", "ǅ's Ǆ'LL",
    "١٢٣٤ ۱۲۳ 𝟘𝟙𝟚 ⅠⅡⅢ", "x²³", "\u3000\u3000全角空白 ", "\u00a0nbsp\u2009thin\u202fnarrow",
    "\x1c\x1d\x1e\x1f seps", "tab\t\tx\v\fy\x85z", "emoji😀👍🏽 🇯🇵字",
    "[BOS]hi[EOS]<|im_end|><|im_user|>user<|im_middle|>hi<|im_end|><|im_assistant|>assistant<|im_middle|>",
    "<|reserved_token_163589|><|reserved_token_163600|><|reserved_token_163837|>",
    "<|reserved_token_163840|><|reserved_token_163841|><|reserved_token_163842|>",
    "[UNK][PAD][EOT]<|tool_calls_section_begin|>x<|tool_calls_section_end|>",
    "<|tool_call_begin|>functions.f:0<|tool_call_argument_begin|>{\"a\":1}<|tool_call_end|>",
    "a" * 25_000, "a" * 25_001, "ab " * 9000, " " * 25_003 + "x", "中" * 25_002,
    "x" * 25_005 + "<|im_end|>" + "y" * 10,
]


def texts(renders):
    out = list(STRINGS) + KIMI_STRINGS
    if renders:
        cases = json.load(open(renders, encoding="utf-8"))
        for fam in cases["families"].values():
            out += [c["rendered"] for c in fam["cases"] if c["rendered"]]
    return out


def load_ranks(path):
    raw = open(path, "rb").read()
    if path.endswith(".gz"):
        raw = gzip.decompress(raw)
    return {base64.b64decode(tok): int(rank) for tok, rank in (line.split() for line in raw.splitlines() if line)}


def special_tokens(config_path, n):
    cfg = json.load(open(config_path, encoding="utf-8"))
    names = {int(k): v["content"] for k, v in cfg.get("added_tokens_decoder", {}).items()}
    return {names.get(i, f"<|reserved_token_{i}|>"): i for i in range(n, n + NUM_RESERVED)}


def pieces(text):
    """tokenization_kimi.py's cuts: 400k-character chunks, then runs of at most 25k."""
    for i in range(0, len(text), CHUNK_CHARS):
        s = text[i:i + CHUNK_CHARS]
        run, space, start = 0, s[0].isspace() if s else False, 0
        for j, ch in enumerate(s):
            now = ch.isspace()
            if now != space:
                run, space = 1, now
            else:
                run += 1
                if run > MAX_RUN:
                    yield s[start:j]
                    start, run = j, 1
        yield s[start:]


class Reference:
    """tiktoken's encode(allowed_special="all"), written out in Python."""

    def __init__(self, ranks, specials):
        import regex
        self.ranks, self.specials = ranks, specials
        self.words = regex.compile(PAT_STR, flags=regex.V1)
        # tiktoken's special regex is the escaped tokens joined by "|"; none of Kimi's is a
        # prefix of another, so longest-first order finds the same matches.
        self.special_re = regex.compile("|".join(regex.escape(s) for s in sorted(specials, key=len, reverse=True)))

    def merge(self, piece):
        """Merge the adjacent pair whose concatenation ranks lowest, leftmost among equals (a
        heap with stale entries skipped, as the quadratic scan would take minutes on the long
        runs)."""
        import heapq
        if piece in self.ranks:
            return [self.ranks[piece]]
        n = len(piece)
        end = list(range(1, n + 1))  # part starting at byte i ends at end[i]; -1 once merged away
        nxt = list(range(1, n + 1))
        prv = list(range(-1, n - 1))
        heap = []

        def push(i):
            j = nxt[i]
            if j < n:
                r = self.ranks.get(piece[i:end[j]])
                if r is not None:
                    heapq.heappush(heap, (r, i, end[i], end[j]))

        for i in range(n):
            push(i)
        while heap:
            r, i, mid, stop = heapq.heappop(heap)
            if end[i] != mid or nxt[i] >= n or end[nxt[i]] != stop:
                continue  # stale: a neighbour merged since
            j = nxt[i]
            end[i], end[j] = stop, -1
            nxt[i] = nxt[j]
            if nxt[i] < n:
                prv[nxt[i]] = i
            if prv[i] >= 0:
                push(prv[i])
            push(i)
        out, i = [], 0
        while i < n:
            out.append(self.ranks[piece[i:end[i]]])
            i = end[i]
        return out

    def ordinary(self, text, out):
        for m in self.words.finditer(text):
            out += self.merge(m.group().encode("utf-8"))

    def encode(self, text):
        out, pos = [], 0
        for m in self.special_re.finditer(text):
            self.ordinary(text[pos:m.start()], out)
            out.append(self.specials[m.group()])
            pos = m.end()
        self.ordinary(text[pos:], out)
        return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="tiktoken.model (.gz allowed)")
    ap.add_argument("--config", help="tokenizer_config.json")
    ap.add_argument("--renders", help="render_cases.json whose prompts are encoded too")
    ap.add_argument("--out", help="golden JSON to write")
    ap.add_argument("--texts-out", help="write only the input strings (JSON list) here")
    a = ap.parse_args()
    inputs = texts(a.renders)
    if a.texts_out:
        json.dump(inputs, open(a.texts_out, "w", encoding="utf-8"), ensure_ascii=False)
        return
    if not (a.model and a.config and a.out):
        ap.error("--model, --config and --out are needed (or --texts-out)")
    ranks = load_ranks(a.model)
    specials = special_tokens(a.config, len(ranks))
    ref = Reference(ranks, specials)
    by_id = {v: k for k, v in ranks.items()}
    by_id.update({v: k.encode() for k, v in specials.items()})
    try:
        import tiktoken
        enc = tiktoken.Encoding(name="kimi", pat_str=PAT_STR, mergeable_ranks=ranks, special_tokens=specials)
        reference = f"tiktoken {tiktoken.__version__}, checked against a pure-Python byte-pair merge"
    except ImportError:
        enc = None
        reference = "pure-Python tiktoken byte-pair merge with the regex module (tiktoken not installed)"
    cases, disagree = [], 0
    for t in inputs:
        ids = []
        for p in pieces(t):
            mine = ref.encode(p)
            if enc is not None:
                theirs = enc.encode(p, allowed_special="all")
                if theirs != mine:
                    disagree += 1
                    print(f"reference disagrees with tiktoken on {p[:60]!r}", file=sys.stderr)
                mine = theirs
            ids += mine
        decoded = (enc.decode_bytes(ids) if enc else b"".join(by_id[i] for i in ids)).decode("utf-8", "replace")
        cases.append({"text": t, "ids": ids, "decoded": decoded})
    golden = {"reference": reference, "tokenizer": "tiktoken.model", "cases": cases}
    tmp = a.out + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(golden, f, ensure_ascii=False, indent=0)
        f.write("\n")
    os.replace(tmp, a.out)
    print(f"{len(cases)} cases, {sum(len(c['ids']) for c in cases)} ids; {reference}", file=sys.stderr)
    if disagree:
        sys.exit(f"{disagree} pieces: the pure-Python reference and tiktoken disagree")


if __name__ == "__main__":
    main()
