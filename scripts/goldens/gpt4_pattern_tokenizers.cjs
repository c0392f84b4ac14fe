// Goldens for the GPT-4 split regex (Llama 3, GLM-4.5 to 4.7: `\p{N}{1,3}` where Qwen3 has
// `\p{N}`) from Hugging Face tokenizers' own Node binding (npm `tokenizers` 0.23.2, the Rust
// crate version the GPU machine's Python tokenizers wraps). The tokenizer is Qwen3's shipped
// tokenizer.json with only that regex changed, which is what the Go test builds too; GLM-4.5's
// own tokenizer.json is not in the repository. Usage, from the repository root:
//
//   npm pack tokenizers@0.23.2 && tar xzf tokenizers-0.23.2.tgz     # anywhere; gives package/
//   python3 scripts/goldens/kimi_tokenizer.py --texts-out /tmp/texts.json \
//       --renders chat/testdata/families/render_cases.json
//   node scripts/goldens/gpt4_pattern_tokenizers.cjs PACKAGE_DIR /tmp/texts.json \
//       testdata/qwen3-tokenizer/gpt4-pattern-golden.json
'use strict';
const fs = require('fs');
const path = require('path');
const zlib = require('zlib');

const [pkgDir, textsPath, outPath] = process.argv.slice(2);
if (!outPath) {
  console.error('usage: node gpt4_pattern_tokenizers.cjs TOKENIZERS_PACKAGE_DIR TEXTS.json OUT.json');
  process.exit(2);
}
const { Tokenizer } = require(path.resolve(pkgDir, 'index.js'));
const version = require(path.resolve(pkgDir, 'package.json')).version;

// The JSON text of Qwen3's number alternative and the one that replaces it (see gpt4Variant in
// tokenizer/gpt4_test.go).
const QWEN = String.raw`\\p{N}| ?[^\\s\\p{L}\\p{N}]+`;
const GPT4 = String.raw`\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+`;
const json = zlib.gunzipSync(fs.readFileSync('testdata/qwen3-tokenizer/tokenizer.json.gz')).toString('utf8');
if (json.split(QWEN).length !== 2) throw new Error('the Qwen3 regex is not in tokenizer.json exactly once');
const tok = Tokenizer.fromString(json.replace(QWEN, GPT4));

const extra = ['1234567 89 0', 'x1y22z333w4444v55555', '3.14159265358979', '١٢٣٤٥ ²³⁴ ⅠⅡⅢⅣ 一二三', '2026-12-02T17:45:00Z'];
(async () => {
  const texts = [...extra, ...JSON.parse(fs.readFileSync(textsPath, 'utf8'))];
  const cases = [];
  for (const text of texts) {
    const enc = await tok.encode(text, null, { addSpecialTokens: false });
    const ids = Array.from(enc.getIds());
    const decoded = await tok.decode(ids, false);
    cases.push({ text, ids, decoded });
  }
  const golden = { reference: `npm tokenizers ${version} (Hugging Face tokenizers' Node binding)`, tokenizer: 'Qwen3 tokenizer.json with the GPT-4 split regex', cases };
  fs.writeFileSync(outPath + '.tmp', JSON.stringify(golden, null, 0) + '\n');
  fs.renameSync(outPath + '.tmp', outPath);
  console.error(`${cases.length} cases, ${cases.reduce((a, c) => a + c.ids.length, 0)} ids`);
})();
