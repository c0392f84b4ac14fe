// Kimi-K2 tokenizer goldens from the npm package `tiktoken` (WASM build of OpenAI's Rust tiktoken,
// the core Python's tiktoken wraps): the same golden file kimi_tokenizer.py writes, from an
// implementation independent of both it and fmoe. Usage, from the repository root:
//
//   npm pack tiktoken@1.0.22 && tar xzf tiktoken-1.0.22.tgz          # anywhere; gives package/
//   python3 scripts/goldens/kimi_tokenizer.py --texts-out /tmp/texts.json \
//       --renders chat/testdata/families/render_cases.json
//   node scripts/goldens/kimi_tokenizer_tiktoken.cjs PACKAGE_DIR /tmp/texts.json \
//       testdata/kimi-k2-tokenizer OUT.json
'use strict';
const fs = require('fs');
const path = require('path');
const zlib = require('zlib');

const [pkgDir, textsPath, tokDir, outPath] = process.argv.slice(2);
if (!outPath) {
  console.error('usage: node kimi_tokenizer_tiktoken.cjs TIKTOKEN_PACKAGE_DIR TEXTS.json TOKENIZER_DIR OUT.json');
  process.exit(2);
}
const { Tiktoken } = require(path.resolve(pkgDir, 'tiktoken.cjs'));
const version = require(path.resolve(pkgDir, 'package.json')).version;

// tokenization_kimi.py's pat_str (as in kimi_tokenizer.py).
const PAT = [
  String.raw`[\p{Han}]+`,
  String.raw`[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}&&[^\p{Han}]]*[\p{Ll}\p{Lm}\p{Lo}\p{M}&&[^\p{Han}]]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?`,
  String.raw`[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}&&[^\p{Han}]]+[\p{Ll}\p{Lm}\p{Lo}\p{M}&&[^\p{Han}]]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?`,
  String.raw`\p{N}{1,3}`,
  String.raw` ?[^\s\p{L}\p{N}]+[\r\n]*`,
  String.raw`\s*[\r\n]+`,
  String.raw`\s+(?!\S)`,
  String.raw`\s+`,
].join('|');
const NUM_RESERVED = 256 + 2;
const CHUNK_CHARS = 400000;
const MAX_RUN = 25000;

const ranks = zlib.gunzipSync(fs.readFileSync(path.join(tokDir, 'tiktoken.model.gz'))).toString('utf8');
const n = ranks.split('\n').filter((l) => l.trim() !== '').length;
const config = JSON.parse(fs.readFileSync(path.join(tokDir, 'tokenizer_config.json'), 'utf8'));
const specials = {};
for (let i = n; i < n + NUM_RESERVED; i++) {
  const named = config.added_tokens_decoder[String(i)];
  specials[named ? named.content : `<|reserved_token_${i}|>`] = i;
}
const enc = new Tiktoken(ranks, specials, PAT);

// Python's str.isspace for one code point.
function isSpace(cp) {
  return (cp >= 0x09 && cp <= 0x0d) || (cp >= 0x1c && cp <= 0x20) || cp === 0x85 || cp === 0xa0 ||
    cp === 0x1680 || (cp >= 0x2000 && cp <= 0x200a) || cp === 0x2028 || cp === 0x2029 ||
    cp === 0x202f || cp === 0x205f || cp === 0x3000;
}

// tokenization_kimi.py's cuts, over code points as Python indexes strings.
function* pieces(text) {
  const cps = Array.from(text);
  for (let i = 0; i < cps.length; i += CHUNK_CHARS) {
    const s = cps.slice(i, i + CHUNK_CHARS);
    let run = 0;
    let space = s.length ? isSpace(s[0].codePointAt(0)) : false;
    let start = 0;
    for (let j = 0; j < s.length; j++) {
      const now = isSpace(s[j].codePointAt(0));
      if (now !== space) {
        run = 1;
        space = now;
      } else if (++run > MAX_RUN) {
        yield s.slice(start, j).join('');
        start = j;
        run = 1;
      }
    }
    yield s.slice(start).join('');
  }
}

const texts = JSON.parse(fs.readFileSync(textsPath, 'utf8'));
const cases = texts.map((text) => {
  const ids = [];
  for (const p of pieces(text)) ids.push(...enc.encode(p, 'all'));
  const decoded = new TextDecoder('utf-8').decode(enc.decode(new Uint32Array(ids)));
  return { text, ids, decoded };
});
enc.free();
const golden = { reference: `npm tiktoken ${version} (WASM build of tiktoken's Rust core)`, tokenizer: 'tiktoken.model', cases };
fs.writeFileSync(outPath + '.tmp', JSON.stringify(golden, null, 0) + '\n');
fs.renameSync(outPath + '.tmp', outPath);
console.error(`${cases.length} cases, ${cases.reduce((a, c) => a + c.ids.length, 0)} ids`);
