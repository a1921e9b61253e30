/**
 * `bun run eval --model DIR|RUN_DIR --data PATH [--seq T] [--split val|train] [--threads N]`
 *
 * Mean next-token cross-entropy of a model over non-overlapping windows of T+1 tokens (window w is
 * tokens [w(T+1), (w+1)(T+1)); a trailing partial window is dropped); T defaults to the model's
 * context. The last line of output is {"loss": x, "perplexity": y, "tokens": n} (n = targets counted).
 *
 * --data is
 *   a directory of prepared shards (bun run prepare: <split>_NNN.bin, default split val, else train)
 *   a .bin file: a TLSHARD shard, or raw little-endian uint16 tokens (nanoGPT / llama2.c)
 *   a text file (any other file) or a directory of .txt files: each file is encoded with the
 *   model's tokenizer (BOS as the tokenizer adds it) and the files are concatenated in name order
 */
import { readFileSync, readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { corpusFiles, openCorpus } from "@tinyllama/data";
import { InferenceSession, evaluateWindows, loadModel, type TokenStream } from "@tinyllama/generate";
import { openBackend } from "@tinyllama/kernels";
import type { Tokenizer } from "@tinyllama/tokenizer";

const USAGE = "usage: bun run eval --model DIR|RUN_DIR --data PATH [--seq T] [--split val|train] [--threads N]";

class UsageError extends Error {}

function positiveInt(name: string, v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  const x = Number(v);
  if (v.trim() === "" || !Number.isInteger(x) || x < 1) throw new UsageError(`--${name} must be a positive integer, got ${JSON.stringify(v)}`);
  return x;
}

function hasShards(dir: string, split: string): boolean {
  try {
    corpusFiles(dir, split);
    return true;
  } catch {
    return false;
  }
}

/** The token stream at `path`, and a description of where it came from. */
function readData(path: string, split: string | undefined, tokenizer: Tokenizer | null): { stream: TokenStream; what: string } {
  let st;
  try {
    st = statSync(path);
  } catch {
    throw new Error(`--data '${path}' does not exist`);
  }
  const encodeFiles = (files: string[]): TokenStream => {
    if (!tokenizer) throw new Error(`--data '${path}' is text, but the model directory has no tokenizer to encode it`);
    return files.map((f) => tokenizer.encode(readFileSync(f, "utf8")));
  };
  if (st.isDirectory()) {
    const s = split ?? (hasShards(path, "val") ? "val" : "train");
    if (hasShards(path, s)) {
      const c = openCorpus(path, s);
      return { stream: c.files.map((f) => f.tokens), what: `${c.files.length} ${s} shard(s), ${c.tokens} tokens` };
    }
    const txt = readdirSync(path).filter((n) => n.endsWith(".txt")).sort().map((n) => join(path, n));
    if (txt.length === 0) throw new Error(`--data '${path}' has no ${s}_NNN.bin / ${s}.bin shards and no .txt files`);
    return { stream: encodeFiles(txt), what: `${txt.length} text file(s)` };
  }
  if (path.endsWith(".bin")) {
    const c = openCorpus(path);
    return { stream: c.files.map((f) => f.tokens), what: `${c.files[0]!.format} file, ${c.tokens} tokens` };
  }
  return { stream: encodeFiles([path]), what: "text file" };
}

async function main(argv: string[]): Promise<void> {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: { model: { type: "string" }, data: { type: "string" }, seq: { type: "string" }, split: { type: "string" }, threads: { type: "string" }, help: { type: "boolean", short: "h" } },
      strict: true,
    }));
  } catch (e) {
    throw new UsageError((e as Error).message.split("\n")[0]!);
  }
  if (values.help) {
    console.log(USAGE);
    return;
  }
  if (!values.model || !values.data) throw new UsageError(`missing ${[!values.model && "--model DIR", !values.data && "--data PATH"].filter(Boolean).join(" and ")}`);
  const seq = positiveInt("seq", values.seq);
  const threads = positiveInt("threads", values.threads);
  if (values.split !== undefined && !/^[A-Za-z0-9_-]+$/.test(values.split)) throw new UsageError(`--split must be a plain name such as val or train, got ${JSON.stringify(values.split)}`);

  const backend = openBackend(threads !== undefined ? { threads } : {});
  const { model, tokenizer } = loadModel(values.model, backend);
  try {
    const ctx = model.cfg.maxSeqLen;
    const T = seq ?? ctx;
    if (T > ctx) throw new Error(`--seq ${T} exceeds the model's context ${ctx}`);
    const { stream, what } = readData(values.data, values.split, tokenizer);
    const V = model.cfg.vocabSize;
    for (const p of Array.isArray(stream) ? stream : [stream])
      for (let i = 0; i < p.length; i++)
        if (p[i]! >= V) throw new Error(`--data holds token id ${p[i]} (at ${i}), outside the model's vocabulary [0, ${V}); it was tokenised for another model`);
    const session = InferenceSession.create(model, { maxT: T });
    try {
      const t0 = performance.now();
      const r = evaluateWindows(session, stream, T);
      const s = (performance.now() - t0) / 1000;
      process.stderr.write(`${what}: ${r.windows} windows of ${T}+1 tokens, ${(r.tokens / s).toFixed(0)} tok/s\n`);
      console.log(JSON.stringify({ loss: r.loss, perplexity: r.perplexity, tokens: r.tokens }));
    } finally {
      session.free();
    }
  } finally {
    model.free();
  }
}

try {
  await main(process.argv.slice(2));
} catch (e) {
  const msg = e instanceof Error ? e.message : String(e);
  console.error(`eval: ${msg.split("\n").join(" ")}`);
  process.exitCode = e instanceof UsageError ? 2 : 1;
}
