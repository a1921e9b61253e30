// SentencePiece tokenizer.model files (trained by spm_train) vs SentencePiece's own encoder. The reference
// encodings were produced by tools/reference/tokenizer/make-spm-fixtures.sh and are committed, so no Python here.
import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { Tokenizer as HFTokenizer } from "@huggingface/tokenizers";
import { Tokenizer, parseSpmModel } from "@tinyllama/tokenizer";
import { adversarial, corpusSentences, fnvIds } from "./helpers.ts";

const fixture = (name: string): string => new URL(`./fixtures/${name}`, import.meta.url).pathname;

interface AdvRef {
  n: number;
  hash: number;
  ids: number[] | null;
}

for (const [model, sentences] of [["spm-bpe4096", 100_000], ["spm-bpe800-ws", 20_000]] as const) {
  describe(`${model}.model vs SentencePiece`, () => {
    const tok = Tokenizer.fromFile(fixture(`${model}.model`));
    const corpusRef = new Uint32Array(readFileSync(fixture(`${model}.corpus.bin`)).buffer.slice(0));
    const advRef = JSON.parse(readFileSync(fixture(`${model}.adversarial.json`), "utf8")) as AdvRef[];

    test("corpus sentences: zero mismatches (token count and id hash per sentence)", () => {
      const texts = corpusSentences().slice(0, sentences);
      expect(corpusRef.length).toBe(texts.length * 2);
      const bad: string[] = [];
      texts.forEach((s, i) => {
        const ids = tok.encode(s, { bos: false });
        if (ids.length !== corpusRef[2 * i] || fnvIds(ids) !== corpusRef[2 * i + 1]) bad.push(`${i}: ${JSON.stringify(s.slice(0, 80))}`);
      });
      expect(bad.slice(0, 5)).toEqual([]);
      expect(bad.length).toBe(0);
    });

    test("adversarial set: zero mismatches", () => {
      const cases = adversarial();
      expect(advRef.length).toBe(cases.length);
      cases.forEach(({ name, text }, i) => {
        const ids = tok.encode(text, { bos: false });
        const ref = advRef[i];
        if (ref.ids) expect({ name, ids: Array.from(ids) }).toEqual({ name, ids: ref.ids });
        expect({ name, n: ids.length, hash: fnvIds(ids) }).toEqual({ name, n: ref.n, hash: ref.hash });
      });
    });

    test("BOS comes from the model's <s> control piece", () => {
      expect(tok.bosId).toBe(1);
      expect(tok.encode("hi")[0]).toBe(1);
    });
  });
}

test("model flags are read from the protobuf", () => {
  const a = parseSpmModel(readFileSync(fixture("spm-bpe4096.model")));
  expect(a.byteFallback).toBe(true);
  expect(a.removeExtraWhitespaces).toBe(false);
  expect(a.addDummyPrefix).toBe(true);
  expect(a.pieces.length).toBe(4096);
  expect(a.pieces[3].piece).toBe("<0x00>");
  const b = parseSpmModel(readFileSync(fixture("spm-bpe800-ws.model")));
  expect(b.byteFallback).toBe(false);
  expect(b.removeExtraWhitespaces).toBe(true);
});

test("a SentencePiece model exports to a tokenizer.json that encodes the same, here and in @huggingface/tokenizers", () => {
  const tok = Tokenizer.fromFile(fixture("spm-bpe4096.model"));
  const exported = JSON.parse(JSON.stringify(tok.toJSON())) as object;
  const json = Tokenizer.fromJSON(exported, tok.toConfigJSON());
  const hf = new HFTokenizer(exported, tok.toConfigJSON());
  corpusSentences().slice(0, 5000).forEach((s, i) => {
    const ids = Array.from(tok.encode(s));
    expect(Array.from(json.encode(s, { special: false }))).toEqual(ids);
    if (i < 2000 && !/<\/?s>|<unk>/.test(s)) expect(hf.encode(s).ids).toEqual(ids);
  });
}, 60_000);

test("truncated or foreign files are clear errors", () => {
  const bytes = readFileSync(fixture("spm-bpe4096.model"));
  expect(() => Tokenizer.fromBytes(bytes.subarray(0, 1000))).toThrow(/tokenizer\.model: truncated/);
  expect(() => Tokenizer.fromBytes(new Uint8Array([0x08, 0x01]))).toThrow(/no pieces/);
});
