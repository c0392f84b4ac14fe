"""Regenerates cases.json: expected renders from real Jinja2 configured the
way Hugging Face transformers configures chat templates. Run from this
directory with jinja2 installed:  python3 gen_cases.py
Tests only read cases.json; this script documents where it came from."""
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

V = {
    "s": "Hello, World", "n": 3, "f": 2.5, "big": 1e20, "small": 1e-7,
    "t": True, "no": None, "empty": "", "lst": [1, "two", 3.0, None, True],
    "d": {"b": 1, "a": [1, 2, {"x": "y"}], "c": {"z": None, "u": "ü\n\"q\"\t<&>"}},
    "words": ["pear", "Apple", "fig", "apple"],
    "people": [{"name": "Ann", "age": 31, "tags": ["a"]},
               {"name": "bob", "age": 25, "tags": []},
               {"name": "Cy", "age": 40}],
    "text": "  line one\nline two\n\n  line four  ",
    "uni": "héllo wörld — 你好 😀",
}

T = [
    # output and literals
    "{{ s }}|{{ n }}|{{ f }}|{{ big }}|{{ small }}|{{ t }}|{{ no }}|{{ missing }}|{{ lst }}|{{ d }}",
    "{{ 1 }} {{ 1.0 }} {{ 1e3 }} {{ 1_000 }} {{ 0.1 + 0.2 }} {{ 10 / 4 }} {{ 10 // 4 }} {{ -7 // 2 }} {{ -7 % 3 }} {{ 7.5 % 2 }} {{ 2 ** 10 }} {{ 2 ** -1 }}",
    "{{ 'a' ~ 1 ~ none ~ true ~ missing }} {{ 'ab' * 3 }} {{ [1] + [2] }} {{ 'x' + 'y' }} {{ -n }} {{ not n }}",
    "{{ 'it''s' }} {{ \"q\\\"uote\" }} {{ 'tab\\there' }} {{ '\\u00e9\\x41\\101' }} {{ 'back\\\\slash' }} {{ 'keep\\q' }}",
    "{{ (1, 2) }} {{ (1,) }} {{ () }} {{ [] }} {{ {} }} {{ {'k': [1, (2, 3)]} }} {{ \"it's\" }} {{ ['a\"b', \"c'd\"] }}",
    "{{ 1 < 2 < 3 }} {{ 3 > 2 > 2 }} {{ 'a' < 'b' }} {{ [1, 2] < [1, 3] }} {{ 1 == 1.0 }} {{ true == 1 }} {{ none == none }} {{ missing == none }} {{ missing != 'x' }}",
    "{{ 'ell' in s }} {{ 'b' in d }} {{ 'zz' not in d }} {{ 3.0 in lst }} {{ 'x' in missing }} {{ n if t else 'no' }} {{ n if no }}|{{ no or 'dflt' }} {{ n and s }}",
    # whitespace control
    "a\n  {% if t %}\n    yes\n  {% endif %}\nb",
    "a\n  {%- if t %}\n    yes\n  {%- endif %}\nb",
    "a\n  {%+ if t %}\n    yes\n  {%+ endif +%}\nb",
    "x  {{- s -}}  y\n{{ n }}  \n  {# comment #}\n  z {#- c -#}  w\n",
    "{% for i in lst %}\n  {{ i }}\n{% endfor %}\n",
    "  {% set x = 1 %}  after\n{% if t %}  {{ x }}{% endif %}\ntail\n\n",
    "{% raw %}{{ not rendered }}{% endraw %}|{%- raw -%}  {{ x }}  {%- endraw -%}|",
    "line\r\nwith crlf\r\n{% if t %}\r\nok\r\n{% endif %}\r\n",
    # loops
    "{% for p in people %}{{ loop.index }}/{{ loop.length }}:{{ p.name }}{% if not loop.last %}, {% endif %}{% endfor %}",
    "{% for p in people %}{{ loop.previtem.name if loop.previtem is defined else '^' }}{% endfor %}",
    "{% for p in people %}[{{ loop.index0 }} {{ loop.revindex }} {{ loop.revindex0 }} {{ loop.first }} {{ loop.previtem.name }} {{ loop.nextitem.name if loop.nextitem is defined else '-' }}]{% endfor %}",
    "{% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %}|{% for k, v in d|items %}{{ k }};{% endfor %}|{% for k in d %}{{ k }}{% endfor %}",
    "{% for x in [] %}x{% else %}empty{% endfor %}|{% for x in missing %}x{% else %}undef-empty{% endfor %}",
    "{% for p in people if p.age > 30 %}{{ p.name }}{{ loop.length }}{% endfor %}",
    "{% for i in range(10) %}{% if i == 2 %}{% continue %}{% endif %}{% if i == 5 %}{% break %}{% endif %}{{ i }}{% endfor %}",
    "{% for i in range(2, 11, 3) %}{{ i }},{% endfor %}{% for c in 'héy' %}[{{ c }}]{% endfor %}{{ loop is defined }}",
    "{% for a, b in [(1, 2), [3, 4]] %}{{ a + b }}{% endfor %}{% for (a, b) in [['x', 'y']] %}{{ b }}{{ a }}{% endfor %}",
    "{% for x in lst %}{{ loop.cycle('odd', 'even') }}{% endfor %}",
    "{% for row in [[1, 2], [3]] %}{% for c in row %}{{ loop.index }}{{ c }}{% endfor %};{% endfor %}",
    # scoping
    "{% set x = 1 %}{% for i in range(3) %}{% set x = x + i %}{{ x }}{% endfor %}|{{ x }}",
    "{% set x = 1 %}{% if t %}{% set x = 2 %}{% endif %}{{ x }}",
    "{% set ns = namespace(total=0, names=[]) %}{% for p in people %}{% set ns.total = ns.total + p.age %}{% endfor %}{{ ns.total }} {{ ns.names }}",
    "{% set a, b = 1, 2 %}{{ a }}{{ b }}{% set c = 1, %}{{ c }}",
    "{% set block %}  inner {{ n }}  {% endset %}[{{ block }}]",
    "{% set trimmed | trim %}  inner {{ n }}  {% endset %}[{{ trimmed }}]",
    # macros
    "{% macro m(a, b='B', c=none) %}{{ a }}-{{ b }}-{{ c }}{% endmacro %}{{ m(1) }} {{ m(1, 2) }} {{ m(1, c=3) }} {{ m() }}",
    "{% macro outer(x) %}<{{ inner(x) }}>{% endmacro %}{% macro inner(y) %}{{ y * 2 }}{% endmacro %}{{ outer(4) }}{{ outer(4)|length }}",
    "{% set g = 'global' %}{% macro show() %}{{ g }}{% endmacro %}{{ show() }}",
    "{% macro rec(n) %}{% if n > 0 %}{{ n }}{{ rec(n - 1) }}{% endif %}{% endmacro %}{{ rec(5) }}",
    # filters
    "{{ s|upper }} {{ s|lower }} {{ 'hello world'|title }} {{ 'hELLO'|capitalize }} {{ s|length }} {{ uni|length }} {{ lst|count }} {{ d|length }}",
    "[{{ text|trim }}] [{{ 'xxhixx'|trim('x') }}] [{{ missing|trim }}] [{{ none|string }}] [{{ 12|string }}] [{{ lst|string }}]",
    "{{ d|tojson }}\n{{ d|tojson(indent=2) }}\n{{ lst|tojson(indent=4) }}\n{{ d|tojson(sort_keys=true) }}\n{{ uni|tojson }}\n{{ [] |tojson(indent=2) }}{{ {}|tojson(indent=2) }}",
    "{{ d|tojson(separators=(',', ':')) }} {{ uni|tojson(ensure_ascii=true) }} {{ 1e20|tojson }} {{ 2.0|tojson }} {{ 1e-5|tojson }} {{ 123456789012345678|tojson }}",
    "{{ words|join(', ') }} {{ words|first }} {{ words|last }} {{ words|sort|join(',') }} {{ words|sort(reverse=true)|join(',') }} {{ words|sort(case_sensitive=true)|join(',') }} {{ words|unique|join(',') }}",
    "{{ people|map(attribute='name')|join(',') }} {{ people|selectattr('age', 'gt', 30)|map(attribute='name')|list }} {{ people|rejectattr('tags')|map(attribute='name')|list }} {{ people|sort(attribute='age')|map(attribute='name')|join }}",
    "{{ lst|select|list }} {{ lst|reject('none')|list }} {{ [1, 2, 3, 4]|select('odd')|list }} {{ ['a', 'b']|map('upper')|list }} {{ [1, 2, 3]|sum }} {{ people|sum(attribute='age') }}",
    "{{ missing|default('dflt') }} {{ ''|default('dflt') }} {{ ''|default('dflt', true) }} {{ missing|d('x') }} {{ none|default('n') }}",
    "{{ '42'|int }} {{ '4.7'|int }} {{ 'x'|int }} {{ 'x'|int(7) }} {{ 3.9|int }} {{ '2.5'|float }} {{ 3|float }} {{ -3|abs }} {{ 2.567|round(2) }} {{ 2.5|round }} {{ 3.5|round }}",
    "{{ 'a b a'|replace('a', 'x') }} {{ 'a b a'|replace('a', 'x', 1) }} {{ [1, 2, 3]|reverse|list }} {{ 'abc'|reverse }} {{ '<b>&\"\\''|e }} {{ lst|list }} {{ 'ab'|list }}",
    "{{ text|indent }}|{{ text|indent(2, true) }}|{{ 'a\n\nb'|indent(first=true, blank=true) }}|{{ 'a\nb'|indent('> ') }}",
    "{{ d|dictsort }} {{ {'b': 2, 'a': 3}|dictsort(by='value') }} {{ d|items|list }} {{ 'one two  three'|wordcount }}",
    "{% filter upper %}shout {{ s }}{% endfilter %}",
    # tests
    "{{ s is string }} {{ n is number }} {{ n is integer }} {{ f is float }} {{ t is boolean }} {{ t is true }} {{ no is none }} {{ missing is defined }} {{ missing is undefined }}",
    "{{ d is mapping }} {{ lst is sequence }} {{ s is sequence }} {{ d is sequence }} {{ n is sequence }} {{ lst is iterable }} {{ s is iterable }} {{ n is iterable }} {{ missing is iterable }}",
    "{{ 4 is even }} {{ 3 is odd }} {{ 9 is divisibleby 3 }} {{ 9 is divisibleby(4) }} {{ 'abc' is lower }} {{ 'ABC' is upper }} {{ n is eq 3 }} {{ n is ne 3 }} {{ 2 is lt 3 }} {{ 'a' is in 'cat' }} {{ t is sameas true }}",
    "{{ s is not string }} {{ lst is not mapping and lst is iterable }} {{ n is number or false }} {{ range is callable }} {{ n is not none }} {{ t is false }}",
    # string methods
    "{{ s.startswith('Hell') }} {{ s.endswith(('x', 'ld')) }} {{ s.split(', ') }} {{ ' a  b '.split() }} {{ 'a,b,c'.split(',', 1) }} {{ 'a,b,c'.rsplit(',', 1) }} {{ ' a b '.split(none, 1) }}",
    "[{{ text.strip() }}] [{{ text.lstrip() }}] [{{ text.rstrip() }}] [{{ '\n\nx\n'.lstrip('\n') }}] [{{ 'xyhixy'.strip('xy') }}] [{{ s.upper() }}{{ s.lower() }}{{ s.title() }}]",
    "{{ s.replace('l', 'L') }} {{ s.find('o') }} {{ s.rfind('o') }} {{ uni.find('w') }} {{ s.count('l') }} {{ '-'.join(words) }} {{ 'abc'.removeprefix('a') }} {{ '{} and {}'.format(1, 'b') }} {{ '{x}!'.format(x=2) }}",
    "{{ 'a</think>b</think>c'.split('</think>')[-1] }} {{ 'a</think>b'.split('</think>')[0].rstrip('\n').split('<think>')[-1] }} {{ s[0] }} {{ s[-1] }} {{ s[1:4] }} {{ s[::-1] }} {{ lst[1:] }} {{ lst[::2] }} {{ lst[-2:] }} {{ lst[10] is defined }}",
    "{{ d.get('b') }} {{ d.get('zz', 'dflt') }} {{ d.get('zz') }} {{ d.keys()|list }} {{ d.values()|list|length }} {{ d['c']['u'] }} {{ d.c.z }} {{ people[0]['name'] }} {{ people.0.name }}",
    "{{ 'x'.splitlines() }} {{ 'a\nb\r\nc'.splitlines() }} {{ 'abc'.isdigit() }} {{ '12'.isdigit() }} {{ ' \t'.isspace() }}",
    # globals
    "{{ range(3)|list }} {{ range(5, 0, -2)|list }} {{ dict(a=1, b=none) }} {{ namespace(a=1).a }}",
    "{{ messages|length - 1 }} {{ -1|abs }} {{ -(1)|abs }} {{ (messages|length) * 2 }} {{ messages[::-1]|map(attribute='role')|join(',') }}",
    # errors (expected output is null)
    "{{ raise_exception('custom failure') }}",
    "{{ missing.attr }}",
    "{{ 'a' + 1 }}",
    "{% for x in 3 %}{% endfor %}",
    "{{ 1 / 0 }}",
    "{{ d|items|first }}",
    "{% if %}",
    "{{ s | nosuchfilter }}",
    "{% endfor %}",
    "{% for x in lst %}",
    "{{ 'unterminated }}",
    "{{ s is nosuchtest }}",
    "{{ n() }}",
]

messages = [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]


def main():
    cases = []
    for src in T:
        vars_ = dict(V, messages=messages)
        try:
            out = env.from_string(src).render(**vars_)
        except Exception as e:  # noqa: BLE001 - any failure is an expected error
            out = None
            err = f"{type(e).__name__}: {e}"
        else:
            err = None
        cases.append({"template": src, "output": out, "error": err})
    with open("cases.json", "w", encoding="utf-8") as f:
        json.dump({"generator": f"jinja2 {jinja2.__version__}, HF environment",
                   "vars": dict(V, messages=messages), "cases": cases},
                  f, ensure_ascii=False, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
