#!/usr/bin/env python3
"""Trains fmoe-tiny-chat, the repository's built-in model (models/fmoe-tiny-chat): a Qwen3.5-MoE
of the 397B model's architecture at a tiny shape (hidden 256, 8 layers, 16 experts of 128, top-4,
vocab 4096), from scratch, on a synthetic assistant corpus rendered with the Qwen3.5 chat template:
tool calls in Qwen3.5's XML format (get_weather, bash), JSON answers, counting, replies to tool
results and small talk. Then it scores the model on held-out prompts, as the reference for
`fmoe-run eval`.

  python3 train_tiny_chat.py --out DIR [--steps 1737] [--seed 0] [--eval-n 60]

writes DIR/fmoe-tiny-chat/{tokenizer,hf,mlx-4bit,eval}/: hf/ is the bf16 checkpoint in
transformers' save_pretrained layout (34 MB; the source scripts/quant-study.sh packs), mlx-4bit/
the mlx-community 4-bit layout the repository ships, eval/eval.json the prompts with the
reference's greedy outputs (bf16, and the dequantised mlx-4bit weights) and their scores.

Needs what make_fixtures.py needs; a GPU makes it minutes (the shipped model: 1,737 steps, about
5 minutes on one H200). What is reproducible and what is not:
  - the tokenizer and the eval prompts are deterministic (for a given transformers version; the
    shipped ones came from transformers 5.17.0), so a retrained model reads the shipped
    eval/eval.json's prompt_ids the same way;
  - the weights are not: GPU training is not bit-reproducible, so a retrained model is another
    draw of the same recipe. Its own eval/eval.json holds its own reference outputs.
"""
import argparse
import json
import math
import os
import random
import re
import shutil
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_fixtures as fx  # noqa: E402  (tokenizer, config and checkpoint writers)

VOCAB = 4096
SHAPE = dict(hidden_size=256, num_hidden_layers=8, num_attention_heads=4, num_key_value_heads=2, head_dim=64,
             linear_num_key_heads=2, linear_num_value_heads=4, linear_key_head_dim=64, linear_value_head_dim=64,
             linear_conv_kernel_dim=4, num_experts=16, num_experts_per_tok=4, moe_intermediate_size=128,
             shared_expert_intermediate_size=128, vocab=VOCAB, layer_types=None)

# Real entities: 80% are trained on, the other 20% are the eval's (never seen in training).
CITIES = ["Paris", "Oslo", "Tokyo", "Lima", "Cairo", "Delhi", "Berlin", "Madrid", "Rome", "Vienna", "Prague",
          "Dublin", "Lisbon", "Athens", "Seoul", "Bangkok", "Nairobi", "Quito", "Havana", "Sydney", "Toronto",
          "Chicago", "Boston", "Denver", "Austin", "Munich", "Zurich", "Geneva", "Milan", "Naples", "Porto",
          "Krakow", "Warsaw", "Riga", "Tallinn", "Helsinki", "Bergen", "Malmo", "Ghent", "Lyon", "Nice",
          "Seville", "Valencia", "Bilbao", "Tunis", "Accra", "Dakar", "Lagos", "Kyoto", "Osaka", "Busan", "Hanoi",
          "Manila", "Jakarta", "Perth", "Hobart", "Auckland", "Santiago", "Bogota", "Caracas", "Montevideo"]
NAMES = ["Alice", "Bob", "Carol", "Dave", "Erin", "Frank", "Grace", "Heidi", "Ivan", "Judy", "Mallory", "Niaj",
         "Olivia", "Peggy", "Rupert", "Sybil", "Trent", "Victor", "Walter", "Yara", "Zoe", "Liam", "Noah", "Emma",
         "Ava", "Mia", "Lucas", "Mateo", "Sofia", "Elena", "Hugo", "Ines", "Jonas", "Lena", "Marta", "Nils",
         "Omar", "Priya", "Ravi", "Sara", "Tomas", "Uma", "Vera", "Wen", "Xavier", "Yusuf", "Zara"]
FILES = ["notes.txt", "main.go", "README.md", "data.csv", "config.yaml", "server.log", "Makefile", "go.mod",
         "index.html", "style.css", "app.py", "report.pdf", "todo.md", "build.sh", "schema.sql", "LICENSE",
         "results.tsv", "train.py", "model.json", "Dockerfile", "notes.md", "errors.log", "setup.cfg"]
DIRS = ["/tmp", "/var/log", "/home", "src", "docs", "build", "cmd", "testdata", "/etc", "scripts", "assets",
        "pkg", "internal", "bin", "out", "data"]
CONDITIONS = ["sunny", "cloudy", "rainy", "windy", "snowy", "foggy", "clear"]
SMALL_TALK = [
    ("Hello!", "Hello! How can I help you today?"),
    ("Hi there", "Hi! What can I do for you?"),
    ("Who are you?", "I am a small assistant running from packed experts on disk."),
    ("What is fmoe?", "fmoe runs mixture-of-experts models that are larger than memory by streaming experts from SSD."),
    ("Thanks!", "You are welcome."),
    ("Good night", "Good night!"),
]
# The tools offered in training (and in models/fmoe-tiny-chat/tools.json).
TOOLS = [
    {"type": "function", "function": {"name": "get_weather", "description": "Current weather for a city",
     "parameters": {"type": "object", "properties": {"city": {"type": "string"},
                    "unit": {"type": "string", "enum": ["c", "f"]}}, "required": ["city"]}}},
    {"type": "function", "function": {"name": "bash", "description": "Run a shell command",
     "parameters": {"type": "object", "properties": {"command": {"type": "string"}}, "required": ["command"]}}},
]
# Made-up words: the model has to copy entities from the prompt, it cannot memorise them.
SYLLABLES = ["ka", "lo", "mi", "ra", "ten", "vo", "su", "ber", "dan", "el", "fi", "gor", "ha", "is", "jun", "ke",
             "lin", "mar", "no", "or", "pa", "qui", "ro", "sa", "tu", "ul", "ven", "wa", "xi", "yo", "zan", "bri",
             "cho", "dre", "ste", "tha", "ax", "em", "on", "ur", "ly", "ne", "ti", "ga", "po", "ri", "ce", "du"]
EXTENSIONS = [".txt", ".go", ".md", ".csv", ".yaml", ".log", ".py", ".json", ".sql", ".sh", ".html", ".toml"]


def made_up_word(r, lo=2, hi=3):
    return "".join(r.choice(SYLLABLES) for _ in range(r.randint(lo, hi)))


def made_up_entities(r, n=4000):
    return {"cities": [made_up_word(r).capitalize() for _ in range(n)],
            "names": [made_up_word(r).capitalize() for _ in range(n)],
            "files": [made_up_word(r, 1, 3) + r.choice(EXTENSIONS) for _ in range(n)],
            "dirs": [r.choice(["/", "", "./"]) + "/".join(made_up_word(r, 1, 2) for _ in range(r.randint(1, 2)))
                     for _ in range(n)]}


def split_80_20(xs, seed):
    xs = list(xs)
    random.Random(seed).shuffle(xs)
    k = int(len(xs) * 0.8)
    return xs[:k], xs[k:]


def tool_call(name, args):
    return {"type": "function", "function": {"name": name, "arguments": args}}


def conversation(r, ents):
    """One conversation: (messages, tools, expected), expected describing the last assistant turn.
    (The order of r's draws defines the corpus and the eval set: keep it.)"""
    kind = r.choices(["weather", "bash", "json", "count", "talk", "weather_answer"], [5, 5, 4, 3, 1, 3])[0]
    if kind == "weather":
        city = r.choice(ents["cities"])
        unit = r.choice([None, None, "c", "f"])
        q = r.choice(["What's the weather in {c}?", "Is it raining in {c}?", "How warm is it in {c} right now?",
                      "weather {c}", "Tell me the weather for {c}."]).format(c=city)
        args = {"city": city}
        if unit:
            q += " In " + {"c": "celsius", "f": "fahrenheit"}[unit] + " please."
            args["unit"] = unit
        return ([{"role": "user", "content": q},
                 {"role": "assistant", "content": "", "tool_calls": [tool_call("get_weather", args)]}],
                TOOLS, {"type": "tool_call", "name": "get_weather", "arguments": args})
    if kind == "weather_answer":
        city, temp, cond = r.choice(ents["cities"]), r.randint(-10, 35), r.choice(CONDITIONS)
        answer = "It is %d degrees and %s in %s." % (temp, cond, city)
        return ([{"role": "user", "content": "What's the weather in %s?" % city},
                 {"role": "assistant", "content": "", "tool_calls": [tool_call("get_weather", {"city": city})]},
                 {"role": "tool", "content": json.dumps({"temp": temp, "condition": cond})},
                 {"role": "assistant", "content": answer}], TOOLS, {"type": "text", "text": answer})
    if kind == "bash":
        op = r.randrange(3)
        if op == 0:
            d = r.choice(ents["dirs"])
            q, cmd = r.choice(["List the files in {d}", "What is in {d}?", "show me {d}"]).format(d=d), "ls -la " + d
        elif op == 1:
            f, n = r.choice(ents["files"]), r.randint(1, 50)
            q, cmd = "Show the first %d lines of %s" % (n, f), "head -n %d %s" % (n, f)
        else:
            f = r.choice(ents["files"])
            q, cmd = r.choice(["How many lines are in {f}?", "count lines of {f}"]).format(f=f), "wc -l " + f
        return ([{"role": "user", "content": q},
                 {"role": "assistant", "content": "", "tool_calls": [tool_call("bash", {"command": cmd})]}],
                TOOLS, {"type": "tool_call", "name": "bash", "arguments": {"command": cmd}})
    if kind == "json":
        name, age, city = r.choice(ents["names"]), r.randint(18, 90), r.choice(ents["cities"])
        obj = {"name": name, "age": age, "city": city}
        q = r.choice(["Give me a JSON object for {n}, age {a}, from {c}.", "JSON for {n} ({a}) who lives in {c}",
                      "Write {n}, {a}, {c} as JSON."]).format(n=name, a=age, c=city)
        return ([{"role": "user", "content": q}, {"role": "assistant", "content": json.dumps(obj)}], None,
                {"type": "json", "value": obj})
    if kind == "count":
        a = r.randint(0, 90)
        b = a + r.randint(2, 9)
        answer = ", ".join(str(i) for i in range(a, b + 1)) + "."
        return ([{"role": "user", "content": "Count from %d to %d." % (a, b)},
                 {"role": "assistant", "content": answer}], None, {"type": "text", "text": answer})
    q, answer = r.choice(SMALL_TALK)
    return ([{"role": "user", "content": q}, {"role": "assistant", "content": answer}], None,
            {"type": "text", "text": answer})


def render(tok, messages, tools, generation_prompt):
    return tok.apply_chat_template(messages, tools=tools, tokenize=False, add_generation_prompt=generation_prompt)


# Scoring, as eval.json's "scoring" says and fmoe-run eval implements.
TOOL_CALL = re.compile(r"<tool_call>\s*<function=([^>\n]+)>\s*(.*?)</function>\s*</tool_call>", re.S)
PARAMETER = re.compile(r"<parameter=([^>\n]+)>\n?(.*?)\n?</parameter>", re.S)


def score(text, expected):
    """1 if the completion carries exactly the expected call / JSON / text, else 0."""
    body = text.split("<|im_end|>")[0]
    if "</think>" in body:
        body = body.split("</think>", 1)[1]
    body = body.strip()
    if expected["type"] == "tool_call":
        m = TOOL_CALL.search(body)
        if not m or m.group(1).strip() != expected["name"]:
            return 0
        args = {k.strip(): v for k, v in PARAMETER.findall(m.group(2))}
        return int(args == {k: str(v) for k, v in expected["arguments"].items()})
    if expected["type"] == "json":
        try:
            return int(json.loads(body) == expected["value"])
        except ValueError:
            return 0
    return int(body == expected["text"])


def make_tokenizer(tok_dir, ents):
    """fmoe's tokenizer recipe, trained twice: a first one renders 6,000 conversations, the
    second is trained on those renders too, so the chat format gets its own merges."""
    from transformers import AutoTokenizer
    r = random.Random(1)
    convs = [conversation(r, ents) for _ in range(6000)]
    fx.train_tokenizer(VOCAB, tok_dir)
    first = AutoTokenizer.from_pretrained(tok_dir)
    fx.train_tokenizer(VOCAB, tok_dir, extra_texts=[render(first, m, t, False) for m, t, _ in convs])
    return AutoTokenizer.from_pretrained(tok_dir)


def train(model, tok, ents, steps, pool_size, dev, aux_coef):
    """Whole conversations packed from position 0 into rows of 512 tokens, padding not learned;
    AdamW, 100 warm-up steps, cosine to a tenth of the peak rate."""
    seq, batch_rows, peak = 512, 48, 2e-3
    pad = tok.convert_tokens_to_ids("<|endoftext|>")
    enc = lambda s: tok(s, add_special_tokens=False)["input_ids"]

    def encode(messages, tools):  # prompt and reply tokenised apart, exactly as at inference
        prompt, full = render(tok, messages[:-1], tools, True), render(tok, messages, tools, False)
        assert full.startswith(prompt)
        return enc(prompt) + enc(full[len(prompt):]) + [pad]
    rp = random.Random(3)
    pool = [encode(m, t) for m, t, _ in (conversation(rp, ents) for _ in range(pool_size))]
    print("pool of %d conversations, %.0f tokens on average" % (len(pool), sum(map(len, pool)) / len(pool)), flush=True)

    def batch(r):
        rows, masks = [], []
        while len(rows) < batch_rows:
            ids = []
            while True:
                c = pool[r.randrange(len(pool))]
                if len(ids) + len(c) > seq + 1:
                    break
                ids += c
            if not ids:
                continue
            masks.append([1] * len(ids) + [0] * (seq + 1 - len(ids)))
            rows.append(ids + [pad] * (seq + 1 - len(ids)))
        x, m = torch.tensor(rows, device=dev), torch.tensor(masks, device=dev)
        return x[:, :-1], x[:, 1:], m[:, 1:]

    opt = torch.optim.AdamW(model.parameters(), lr=peak, betas=(0.9, 0.95), weight_decay=0.05)
    rb = random.Random(5)
    t0 = time.time()
    model.train()
    for step in range(steps):
        lr = peak * min(1.0, step / 100) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * step / steps)))
        for group in opt.param_groups:
            group["lr"] = lr
        x, y, m = batch(rb)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=dev == "cuda"):
            out = model(input_ids=x, use_cache=False)
            ce = torch.nn.functional.cross_entropy(out.logits.float().reshape(-1, VOCAB), y.reshape(-1), reduction="none")
            loss = (ce * m.reshape(-1)).sum() / m.sum()
            aux = out.aux_loss if getattr(out, "aux_loss", None) is not None else 0.0
        opt.zero_grad(set_to_none=True)
        (loss + aux_coef * aux).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if step % 100 == 0 or step == steps - 1:
            print("step %d  %.0fs  loss %.4f  lr %.2e" % (step, time.time() - t0, loss.item(), lr), flush=True)
    return loss.item()


def greedy(model, tok, ids, dev):
    im_end, pad = tok.convert_tokens_to_ids("<|im_end|>"), tok.convert_tokens_to_ids("<|endoftext|>")
    x = torch.tensor([ids], device=dev)
    out = model.generate(x, max_new_tokens=64, do_sample=False, eos_token_id=im_end, pad_token_id=pad)
    return out[0, len(ids):].tolist()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="output folder (DIR/fmoe-tiny-chat is replaced)")
    ap.add_argument("--steps", type=int, default=1737, help="training steps (the shipped model: 1737)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--eval-n", type=int, default=60, help="held-out eval prompts (the shipped eval: 60)")
    ap.add_argument("--pool", type=int, default=30000, help="distinct training conversations")
    a = ap.parse_args()
    from transformers import AutoModelForCausalLM
    random.seed(a.seed)
    torch.manual_seed(a.seed)
    root = os.path.join(a.out, "fmoe-tiny-chat")
    if os.path.exists(root):
        shutil.rmtree(root)
    tok_dir = os.path.join(root, "tokenizer")
    os.makedirs(tok_dir)

    ents_train, ents_test = made_up_entities(random.Random(17)), {}
    for k, xs in (("cities", CITIES), ("names", NAMES), ("files", FILES), ("dirs", DIRS)):
        seen, ents_test[k] = split_80_20(xs, 11)
        ents_train[k] += seen
    tok = make_tokenizer(tok_dir, ents_train)

    cfg = fx.text_config(SHAPE, VOCAB)
    cfg.output_router_logits = True  # the load-balancing loss
    cfg.router_aux_loss_coef = 0.01
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    model = AutoModelForCausalLM.from_config(cfg).to(dev)
    n_params = sum(p.numel() for p in model.parameters())
    final_loss = train(model, tok, ents_train, a.steps, a.pool, dev, cfg.router_aux_loss_coef)
    print("trained %d steps, %d parameters, final loss %.4f" % (a.steps, n_params, final_loss), flush=True)

    model.eval()
    model.config.output_router_logits = False
    cfg.output_router_logits = False
    r = random.Random(99)
    cases = []
    for _ in range(a.eval_n):
        messages, tools, expected = conversation(r, ents_test)
        prompt = render(tok, messages[:-1], tools, True)
        cases.append(dict(messages=messages[:-1], tools=tools, expected=expected, prompt=prompt,
                          prompt_ids=tok(prompt, add_special_tokens=False)["input_ids"]))
    with torch.no_grad():
        for c in cases:
            c["reference_ids"] = greedy(model, tok, c["prompt_ids"], dev)
            c["reference_text"] = tok.decode(c["reference_ids"], skip_special_tokens=False)
            c["reference_score"] = score(c["reference_text"], c["expected"])
    bf16_exact = sum(c["reference_score"] for c in cases)
    print("bf16 eval: %d/%d exact" % (bf16_exact, len(cases)), flush=True)

    state = {k: v.float() for k, v in model.float().cpu().state_dict().items()}
    fx.save_hf(state, cfg, os.path.join(root, "hf"), "50MB")
    deq = fx.save_mlx(state, cfg, os.path.join(root, "mlx-4bit"))
    fx.copy_tokenizer(tok_dir, [os.path.join(root, "hf"), os.path.join(root, "mlx-4bit")])
    qmodel = AutoModelForCausalLM.from_config(cfg).float().eval().to(dev)
    qmodel.load_state_dict(deq)
    with torch.no_grad():
        for c in cases:
            c["mlx4_ids"] = greedy(qmodel, tok, c["prompt_ids"], dev)
            c["mlx4_score"] = score(tok.decode(c["mlx4_ids"], skip_special_tokens=False), c["expected"])
    mlx4_exact = sum(c["mlx4_score"] for c in cases)
    print("mlx-4bit eval (reference on the dequantised weights): %d/%d exact" % (mlx4_exact, len(cases)), flush=True)

    os.makedirs(os.path.join(root, "eval"))
    fx.write_json(os.path.join(root, "eval", "eval.json"), dict(
        description="held-out prompts (cities, names, files, dirs unseen in training); expected = the exact tool "
                    "call / JSON / text; reference_* = greedy output of the bf16 model in transformers; mlx4_* = "
                    "greedy output on the dequantised mlx-4bit weights",
        scoring="tool_call: first <tool_call> parses, function and every parameter equal; json: the answer after "
                "</think> parses and equals; text: equal after strip",
        bf16_exact=bf16_exact, mlx4_exact=mlx4_exact, n=len(cases), train_steps=a.steps, params=n_params,
        cases=cases), indent=1)


if __name__ == "__main__":
    main()
