// trainBpe: a Llama-style vocabulary that @huggingface/tokenizers loads and encodes exactly as we do.
import { expect, test } from "bun:test";
import { Tokenizer as HFTokenizer } from "@huggingface/tokenizers";
import { trainBpe, Tokenizer } from "@tinyllama/tokenizer";
import { adversarial, corpusSentences, describeMismatch, sameIds } from "./helpers.ts";

const sentences = corpusSentences();
const tok = trainBpe(sentences.slice(0, 20_000), { vocabSize: 1000 });
const json = JSON.parse(JSON.stringify(tok.toJSON())) as object;
const config = tok.toConfigJSON();

test("layout: <unk> <s> </s>, 256 byte pieces, merges, characters; exactly vocabSize pieces", () => {
  expect(tok.vocabSize).toBe(1000);
  expect([tok.idToToken(0), tok.idToToken(1), tok.idToToken(2)]).toEqual(["<unk>", "<s>", "</s>"]);
  for (let b = 0; b < 256; b++) expect(tok.idToToken(3 + b)).toBe(`<0x${b.toString(16).toUpperCase().padStart(2, "0")}>`);
  expect(tok.tokenToId("\u2581the")).toBeGreaterThan(258);
  expect(new Set(Array.from({ length: 1000 }, (_, i) => tok.idToToken(i))).size).toBe(1000);
  expect(Array.from(tok.encode("1234", { bos: false })).length).toBe(5); // "▁" and one piece per digit
}, 60_000);

test("@huggingface/tokenizers loads the saved tokenizer.json and encodes identically", () => {
  const hf = new HFTokenizer(json, config);
  const ours = Tokenizer.fromJSON(json, config);
  const texts = [...sentences.slice(20_000, 30_000), ...adversarial().map((c) => c.text).filter((t) => t.length < 100_000)];
  const bad: string[] = [];
  for (const s of texts) {
    const o = ours.encode(s);
    const r = hf.encode(s).ids;
    if (!sameIds(o, r)) bad.push(describeMismatch(s, o, r));
    if (!sameIds(o, tok.encode(s))) bad.push(`reloaded differs: ${JSON.stringify(s.slice(0, 60))}`);
  }
  expect(bad.slice(0, 5)).toEqual([]);
  expect(bad.length).toBe(0);
}, 120_000);

test("round trip and compression on held-out text", () => {
  let bytes = 0;
  let tokens = 0;
  for (const s of sentences.slice(30_000, 32_000)) {
    const ids = tok.encode(s, { bos: false, special: false });
    expect(tok.decode(ids)).toBe(s);
    bytes += new TextEncoder().encode(s).length;
    tokens += ids.length;
  }
  // a 1000-piece vocabulary should beat 2 bytes per token on English (bytes alone would be 1)
  expect(bytes / tokens).toBeGreaterThan(2);
});

test("bad options are errors", () => {
  expect(() => trainBpe("abc", { vocabSize: 10 })).toThrow(/vocabSize/);
  expect(() => trainBpe(sentences.slice(0, 2000), { vocabSize: 262 })).toThrow(/too small/);
});
