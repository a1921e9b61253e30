// Property: decode(encode(s)) === s for well-formed strings; lone surrogates become U+FFFD, never an exception.
import { expect, test } from "bun:test";
import { Tokenizer } from "@tinyllama/tokenizer";

const llama = await Tokenizer.llama2();
const spm = Tokenizer.fromFile(new URL("./fixtures/spm-bpe4096.model", import.meta.url).pathname);

// Code point pools: scripts, whitespace, emoji and joiners, combining marks, astral planes. U+2581 is left out:
// SentencePiece writes spaces as "▁", so a literal "▁" in text decodes as a space by design.
const POOLS: [number, number][] = [
  [0x20, 0x7e], // ASCII
  [0x20, 0x20], [0x20, 0x20], [0x09, 0x0a], [0x0d, 0x0d], // whitespace, weighted up
  [0xa0, 0x24f], // Latin-1, Latin Extended
  [0x300, 0x36f], // combining marks
  [0x370, 0x3ff], [0x400, 0x4ff], [0x590, 0x6ff], [0x900, 0x97f], [0xe00, 0xe7f], // Greek, Cyrillic, Hebrew/Arabic, Devanagari, Thai
  [0x3040, 0x30ff], [0x4e00, 0x9fff], [0xac00, 0xd7a3], // kana, CJK, Hangul
  [0x200b, 0x200d], [0xfe0f, 0xfe0f], // zero-width, ZWJ, VS16
  [0x1f300, 0x1faff], [0x1f3fb, 0x1f3ff], // emoji, skin tones
  [0x10000, 0x1ffff], [0x20000, 0x2fa1f], [0xe000, 0xf8ff], // astral, CJK ext, private use
  [0x0, 0x1f], // controls
];

function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function randomString(r: () => number): string {
  const len = Math.floor(r() ** 2 * 60);
  let s = "";
  for (let i = 0; i < len; i++) {
    const [lo, hi] = POOLS[Math.floor(r() * POOLS.length)];
    const cp = lo + Math.floor(r() * (hi - lo + 1));
    s += String.fromCodePoint(cp >= 0xd800 && cp <= 0xdfff ? 0x41 : cp);
  }
  return s;
}

test("decode(encode(s)) === s for 100k random mixed-script strings (Llama 2 and a 4096-piece SentencePiece model)", () => {
  const r = rng(20261129);
  const failures: string[] = [];
  for (let i = 0; i < 100_000; i++) {
    const s = randomString(r);
    for (const tok of [llama, spm]) {
      if (tok === spm && i % 4 !== 0) continue; // the second vocabulary on a quarter of them
      const back = tok.decode(tok.encode(s, { special: false }));
      if (back !== s) failures.push(`${JSON.stringify(s)} -> ${JSON.stringify(back)}`);
    }
  }
  expect(failures.slice(0, 5)).toEqual([]);
  expect(failures.length).toBe(0);
}, 120_000);

test("with default options (BOS added, special tokens parsed, skipped on decode) the round trip holds too", () => {
  const r = rng(7);
  for (let i = 0; i < 5000; i++) {
    const s = randomString(r);
    expect(llama.decode(llama.encode(s))).toBe(s);
  }
});

test("lone surrogates become U+FFFD and never throw", () => {
  for (const s of ["\ud800", "a\udc00b", "\ud83d", "x\ud83d y", "\udfff\ud800", "😀\ud83d😀"]) {
    const expected = s.replace(/[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g, "\uFFFD");
    for (const tok of [llama, spm]) expect(tok.decode(tok.encode(s))).toBe(expected);
  }
});
