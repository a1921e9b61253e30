/**
 * `bun run convert --model DIR --to gguf|hf [--dtype f32|f16|bf16] --out PATH`
 *
 * Converts a Hugging Face Llama directory (config.json + model.safetensors or a sharded index) to
 *  - gguf: one GGUF file for llama.cpp (F32 or F16 weights, norms always F32), vocabulary included;
 *  - hf:   another Hugging Face directory (float32 or bfloat16 weights; tokenizer files copied).
 *
 * The vocabulary for GGUF comes from DIR/tokenizer.json or DIR/tokenizer.model, read by @tinyllama/tokenizer, or
 * from DIR/tokenizer_gguf.json ({tokens, scores, types, bos_id, eos_id, unk_id, add_bos, add_eos}: plain data, the
 * format of the test fixtures) when neither exists.
 */
import { existsSync, mkdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { ggufVocab, loadHfCheckpoint, saveHfCheckpoint, writeGguf, type GgufTokenizer, type HfDtype, type TokenizerLike } from "@tinyllama/checkpoint";

const USAGE = `usage: bun run convert --model DIR --to gguf|hf [--dtype f32|f16|bf16] --out PATH

  --model DIR   Hugging Face Llama directory (config.json, model.safetensors[.index.json], tokenizer files)
  --to FORMAT   gguf (llama.cpp) or hf (Hugging Face directory)
  --dtype T     gguf: f32 (default) or f16; hf: f32, bf16 or f16 (default: the source's dtype)
  --out PATH    the .gguf file, or the output directory for hf (created if missing)`;

class UsageError extends Error {}

const HF_TOKENIZER_FILES = ["tokenizer.model", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json", "tokenizer_gguf.json"];

async function loadTokenizer(dir: string): Promise<GgufTokenizer> {
  const hasHf = existsSync(join(dir, "tokenizer.json")) || existsSync(join(dir, "tokenizer.model"));
  if (!hasHf) {
    const plain = join(dir, "tokenizer_gguf.json");
    if (!existsSync(plain)) throw new Error(`${dir}: no tokenizer.json, tokenizer.model or tokenizer_gguf.json; GGUF needs the vocabulary`);
    const j = JSON.parse(readFileSync(plain, "utf8")) as Record<string, unknown>;
    const arr = <T>(k: string): T[] => {
      if (!Array.isArray(j[k])) throw new Error(`${plain}: "${k}" must be an array`);
      return j[k] as T[];
    };
    return {
      tokens: arr<string>("tokens"), scores: arr<number>("scores"), types: arr<number>("types"),
      bosId: Number(j.bos_id), eosId: Number(j.eos_id), unkId: Number(j.unk_id), addBos: j.add_bos === true, addEos: j.add_eos === true,
    };
  }
  const name = "@tinyllama/tokenizer"; // a variable, so this file type-checks and runs without that package
  let mod: { Tokenizer?: { fromFile(path: string): unknown } };
  try {
    mod = (await import(name)) as typeof mod;
  } catch (e) {
    throw new Error(`reading ${dir}'s tokenizer needs the @tinyllama/tokenizer package, which did not load (${e instanceof Error ? e.message.split("\n")[0] : String(e)}); run npm install at the repository root`);
  }
  if (typeof mod.Tokenizer?.fromFile !== "function") throw new Error("@tinyllama/tokenizer has no Tokenizer.fromFile; it is older or newer than this tool expects");
  const tok = mod.Tokenizer.fromFile(dir) as TokenizerLike;
  return ggufVocab(tok);
}

async function main(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: { model: { type: "string" }, to: { type: "string" }, dtype: { type: "string" }, out: { type: "string" }, help: { type: "boolean", short: "h" } },
    strict: true,
  });
  if (values.help) {
    console.log(USAGE);
    return;
  }
  const { model, to, out } = values;
  if (!model || !to || !out) throw new UsageError(`missing ${["model", "to", "out"].filter((k) => !values[k as "model"]).map((k) => `--${k}`).join(", ")}`);
  if (to !== "gguf" && to !== "hf") throw new UsageError(`--to must be gguf or hf, got ${JSON.stringify(to)}`);
  const dtype = values.dtype;
  if (dtype !== undefined && !["f32", "f16", "bf16"].includes(dtype)) throw new UsageError(`--dtype must be f32, f16 or bf16, got ${JSON.stringify(dtype)}`);
  if (to === "gguf" && dtype === "bf16") throw new UsageError("--dtype bf16 is not supported for GGUF here; use f16 (or f32)");

  const t0 = performance.now();
  // The vocabulary first: a missing tokenizer should fail before gigabytes of weights are read.
  const tokenizer = to === "gguf" ? await loadTokenizer(model) : undefined;
  const ck = loadHfCheckpoint(model);
  const c = ck.config;
  console.log(`read ${model}: ${ck.tensors.size} tensors (${ck.dtype}), V=${c.vocabSize} C=${c.dim} L=${c.nLayers} NH=${c.nHeads} NKV=${c.nKvHeads}`);
  if (tokenizer) {
    const gdtype = dtype === "f16" ? "F16" : "F32";
    const name = model.replace(/\/+$/, "").split("/").pop() ?? "TinyLlama";
    writeGguf(out, { config: c, tensors: ck.tensors, tokenizer, dtype: gdtype, name });
    report(out, `GGUF ${gdtype}`, t0);
  } else {
    const hfDtype: HfDtype = dtype === undefined ? ck.dtype : ({ f32: "float32", f16: "float16", bf16: "bfloat16" } as const)[dtype as "f32"];
    if (existsSync(out) && !statSync(out).isDirectory()) throw new UsageError(`--out ${out} exists and is not a directory`);
    mkdirSync(out, { recursive: true });
    const tokenizerFiles = HF_TOKENIZER_FILES.map((f) => join(model, f)).filter((f) => existsSync(f));
    saveHfCheckpoint(out, { config: c, tensors: ck.tensors, dtype: hfDtype, tokenizerFiles });
    report(join(out, "model.safetensors"), `Hugging Face ${hfDtype}, ${tokenizerFiles.length} tokenizer file(s) copied`, t0);
  }
}

function report(path: string, what: string, t0: number): void {
  const mb = statSync(path).size / 1e6;
  const s = (performance.now() - t0) / 1000;
  console.log(`wrote ${path} (${what}, ${mb.toFixed(1)} MB) in ${s.toFixed(2)} s`);
}

if (import.meta.main) {
  try {
    await main(process.argv.slice(2));
  } catch (e) {
    const usage = e instanceof UsageError || (e instanceof Error && "code" in e && String(e.code).startsWith("ERR_PARSE_ARGS"));
    console.error(`convert: ${e instanceof Error ? e.message : String(e)}`);
    if (usage) console.error(USAGE);
    process.exit(usage ? 2 : 1);
  }
}
