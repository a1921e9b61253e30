// Misuse is an Error that says what is wrong and where.
import { expect, test } from "bun:test";
import { Tokenizer, trainBpe } from "@tinyllama/tokenizer";
import { corpusSentences } from "./helpers.ts";

const llama = await Tokenizer.llama2();
// a small Llama-style vocabulary keeps the many loads below fast; the checks do not depend on its size
const small = JSON.stringify(trainBpe(corpusSentences().slice(0, 2000), { vocabSize: 400 }).toJSON());
const good = (): Record<string, unknown> => JSON.parse(small) as Record<string, unknown>;
type Model = { vocab?: Record<string, number>; merges?: unknown[]; [k: string]: unknown };

test("malformed tokenizer.json names the missing or bad field", () => {
  const cases: [string, (j: Record<string, unknown>) => void, RegExp][] = [
    ["no model", (j) => delete j.model, /model is missing/],
    ["no vocab", (j) => delete (j.model as Model).vocab, /model\.vocab is missing/],
    ["no merges", (j) => delete (j.model as Model).merges, /model\.merges is missing/],
    ["bad merge", (j) => (((j.model as Model).merges as unknown[])[5] = 42), /model\.merges\[5\]/],
    ["merge of unknown piece", (j) => (((j.model as Model).merges as unknown[])[7] = "zzzq qqqz"), /model\.merges\[7\] uses "zzzq"/],
    ["vocab hole", (j) => delete ((j.model as Model).vocab as Record<string, number>)["\u2581the"], /model\.vocab has no token with id/],
    ["bad vocab id", (j) => (((j.model as Model).vocab as Record<string, number>)["\u2581the"] = -3), /model\.vocab\["▁the"\]/],
    ["unigram", (j) => ((j.model as Model).type = "Unigram"), /model\.type .*only BPE/],
    ["bad byte_fallback", (j) => ((j.model as Model).byte_fallback = "yes"), /model\.byte_fallback must be a boolean/],
    ["unk not in vocab", (j) => ((j.model as Model).unk_token = "<nope>"), /model\.unk_token/],
    ["added token without content", (j) => delete (j.added_tokens as Record<string, unknown>[])[1].content, /added_tokens\[1\]\.content is missing/],
    ["unsupported normalizer", (j) => (j.normalizer = { type: "NFKC" }), /normalizer\.type is "NFKC"/],
    ["unsupported pre_tokenizer", (j) => (j.pre_tokenizer = { type: "ByteLevel" }), /pre_tokenizer\.type/],
    ["unsupported decoder", (j) => (j.decoder = { type: "WordPiece" }), /decoder\.type is "WordPiece"/],
  ];
  for (const [name, mutate, re] of cases) {
    const j = good();
    mutate(j);
    expect(() => Tokenizer.fromJSON(j), name).toThrow(re);
  }
  expect(() => Tokenizer.fromJSON(null)).toThrow(/tokenizer\.json: \(root\) must be an object/);
  expect(() => Tokenizer.fromBytes(new TextEncoder().encode("{ not json"))).toThrow(/not valid JSON/);
}, 60_000);

test("decoding an id outside the vocabulary names it", () => {
  expect(() => llama.decode([1, 15043, 32000])).toThrow(/token id 32000 at position 2 is outside the vocabulary \(valid ids are 0\.\.31999\)/);
  expect(() => llama.decode([-1])).toThrow(/token id -1/);
  expect(() => llama.decode([1.5])).toThrow(/token id 1.5/);
  expect(() => llama.idToToken(40000)).toThrow(/40000/);
  expect(() => llama.streamDecoder().push(99999)).toThrow(/99999/);
});

test("fromFile on a missing path or an empty directory says so", () => {
  expect(() => Tokenizer.fromFile("/nonexistent/tokenizer.json")).toThrow(/nonexistent/);
  expect(() => Tokenizer.fromFile(new URL(".", import.meta.url).pathname)).toThrow(/no tokenizer\.json or tokenizer\.model/);
});
