"""Regenerates render_cases.json: Qwen3.5 chat-template renders from real
Jinja2 configured as Hugging Face transformers configures it, for
conversations beyond the checkpoint golden file. Messages are stored in the
OpenAI wire shape (arguments as JSON text); before rendering they are
converted the way an OpenAI server must (arguments parsed to a mapping).
Run from this directory:  python3 gen_render_cases.py"""
import copy
import json
import jinja2
from jinja2.ext import loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment


def raise_exception(message):
    raise jinja2.exceptions.TemplateError(message)


def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent,
                      separators=separators, sort_keys=sort_keys)


env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                    extensions=[loopcontrols])
env.filters["tojson"] = tojson
env.globals["raise_exception"] = raise_exception
TEMPLATE = open("../../testdata/tiny/tokenizer/chat_template.jinja").read()
tpl = env.from_string(TEMPLATE)
QWEN3 = json.load(open("../../testdata/qwen3-tokenizer/tokenizer_config.json"))["chat_template"]
tpl3 = env.from_string(QWEN3)
# Qwen3's template calls string methods on content, so it cannot take the
# part lists or null content that the Go types normalise to strings.
QWEN3_SKIP = {"text parts", "null content"}

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Weather for a city <b>&</b> — météo",
    "parameters": {"type": "object", "properties": {
        "city": {"type": "string", "description": "City name, e.g. \"Paris\""},
        "days": {"type": "integer", "minimum": 1, "maximum": 1e1},
        "detail": {"type": "object", "properties": {"hourly": {"type": "boolean"}}},
        "ratio": {"type": "number", "default": 0.5}},
        "required": ["city"]}}}
WRITE = {"type": "function", "function": {
    "name": "write_file", "description": "Write a file",
    "parameters": {"type": "object", "properties": {
        "path": {"type": "string"}, "content": {"type": "string"},
        "tags": {"type": "array", "items": {"type": "string"}}}}}}
NODESC = {"type": "function", "function": {"name": "noop", "parameters": {}}}


def call(name, args, id_=None):
    c = {"type": "function", "function": {"name": name, "arguments": json.dumps(args, ensure_ascii=False)}}
    if id_:
        c["id"] = id_
    return c


def U(c):
    return {"role": "user", "content": c}


def A(c, **kw):
    m = {"role": "assistant", "content": c}
    m.update(kw)
    return m


def T(c, id_=None):
    m = {"role": "tool", "content": c}
    if id_:
        m["tool_call_id"] = id_
    return m


S = {"role": "system", "content": "  You are helpful.\n\n"}

CASES = [
    ("plain multi-turn", [U("hi"), A("hello!"), U("how are you?")], None, {}),
    ("no generation prompt", [U("hi"), A("hello")], None, {"add_generation_prompt": False}),
    ("thinking off", [S, U("hi")], None, {"enable_thinking": False}),
    ("thinking on explicit", [U("hi")], None, {"enable_thinking": True}),
    ("system trimmed no tools", [S, U("  padded user  \n")], None, {}),
    ("tools no system", [U("weather?")], [WEATHER, WRITE, NODESC], {}),
    ("tools with system", [S, U("weather?")], [WEATHER], {}),
    ("tools empty system", [{"role": "system", "content": "   "}, U("x")], [WEATHER], {}),
    ("think in content before last query",
     [U("q1"), A("<think>\nplan\n</think>\n\nanswer one"), U("q2")], None, {}),
    ("think in content after last query",
     [U("q1"), A("<think>\nplan\n</think>\n\nanswer one")], None, {"add_generation_prompt": False}),
    ("reasoning_content after last query",
     [U("q"), A("final", reasoning_content="  step 1\nstep 2  ")], None, {"add_generation_prompt": False}),
    ("reasoning_content before last query dropped",
     [U("q"), A("final", reasoning_content="hidden"), U("next")], None, {}),
    ("agent loop",
     [S, U("weather in Paris and Oslo, then save it"),
      A("", reasoning_content="need weather", tool_calls=[
          call("get_weather", {"city": "Paris", "days": 2}, "c1"),
          call("get_weather", {"city": "Oslo", "detail": {"hourly": True, "x": [1, 2.5, None]}}, "c2")]),
      T('{"temp": 21}', "c1"), T("{\n  \"temp\": 3\n}", "c2"),
      A("Saving.", reasoning_content="now write", tool_calls=[
          call("write_file", {"path": "/tmp/w.txt", "content": "Paris 21\nOslo 3\n", "tags": ["a", "ü"]})]),
      T("ok"), A("Done: Paris 21°C, Oslo 3°C.")],
     [WEATHER, WRITE], {}),
    ("argument value types",
     [U("x"), A("", tool_calls=[call("noop", {
         "s": "multi\nline\n", "i": 42, "neg": -7, "f": 1.0, "g": 3.14159, "e": 1e-7, "big": 12345678901234567890,
         "t": True, "fa": False, "n": None, "l": [1, "a", {"k": "v"}], "o": {"b": 1, "a": {"z": []}},
         "emptyo": {}, "emptyl": [], "uni": "你好 😀", "quote": "say \"hi\" \\ <tag>"})]),
      T("r")], [NODESC], {}),
    ("empty arguments", [U("x"), A("", tool_calls=[call("noop", {})]), T("r")], [NODESC], {}),
    ("tool call with content", [U("x"), A("Let me check.", tool_calls=[call("noop", {"a": 1})]), T("r")], [NODESC], {}),
    ("content whitespace only with call", [U("x"), A("  \n", tool_calls=[call("noop", {"a": 1})]), T("r")], [NODESC], {}),
    ("user tool_response is not a query",
     [U("real question"), A("", tool_calls=[call("noop", {})]), U("<tool_response>\nmanual\n</tool_response>")],
     [NODESC], {}),
    ("text parts", [{"role": "system", "content": [{"type": "text", "text": "sys "}, {"type": "text", "text": "two"}]},
                    {"role": "user", "content": [{"type": "text", "text": "part one, "}, {"type": "text", "text": "part two"}]}],
     None, {}),
    ("null content", [U("x"), {"role": "assistant", "content": None, "tool_calls": [call("noop", {"q": 1})]}, T("r")], [NODESC], {}),
    ("tool first after user", [U("x"), T("orphan"), U("y")], None, {}),
    ("non-ascii everywhere", [{"role": "system", "content": "Réponds en français 🇫🇷"}, U("Qu'est-ce que c'est ? — «ok»")], None, {}),
    # errors
    ("error no messages", [], None, {}),
    ("error no user query", [{"role": "system", "content": "s"}], None, {}),
    ("error system not first", [U("a"), {"role": "system", "content": "late"}], None, {}),
    ("error unknown role", [U("a"), {"role": "critic", "content": "x"}], None, {}),
]


def to_hf(messages):
    out = copy.deepcopy(messages)
    for m in out:
        for c in m.get("tool_calls", []):
            c["function"]["arguments"] = json.loads(c["function"]["arguments"])
    return out


def render(t, messages, tools, agp, kwargs):
    try:
        return t.render(messages=to_hf(messages), tools=tools, documents=None,
                        add_generation_prompt=agp, eos_token="<|im_end|>",
                        pad_token="<|endoftext|>", **kwargs), None
    except Exception as e:  # noqa: BLE001
        return None, f"{type(e).__name__}: {e}"


def main():
    cases = []
    for name, messages, tools, opts in CASES:
        kwargs = {k: v for k, v in opts.items() if k != "add_generation_prompt"}
        agp = opts.get("add_generation_prompt", True)
        out, err = render(tpl, messages, tools, agp, kwargs)
        case = {"name": name, "messages": messages, "tools": tools, "options": kwargs,
                "add_generation_prompt": agp, "rendered": out, "error": err}
        if name not in QWEN3_SKIP and messages:
            case["qwen3"], case["qwen3_error"] = render(tpl3, messages, tools, agp, kwargs)
        cases.append(case)
    with open("render_cases.json", "w", encoding="utf-8") as f:
        json.dump({"reference": f"jinja2 {jinja2.__version__}, HF environment, tiny checkpoint template",
                   "cases": cases}, f, ensure_ascii=False, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
