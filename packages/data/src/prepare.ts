/**
 * Corpus preparation: text files -> token shards, as TinyLlama prepares SlimPajama/StarCoder.
 * Each document's ids are followed by EOS (and preceded by BOS only if asked: TinyLlama does not),
 * documents go to train or val deterministically by index, and ids stream into shards of
 * `shardTokens` tokens: train_000.bin, ..., val_000.bin, ..., plus meta.json.
 */
import { existsSync, mkdirSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { documentsOf, findInputs, isValDocument, type TxtDocuments } from "./documents.ts";
import { dtypeForVocab, shardName, SHARD_VERSION, type TokenDType } from "./format.ts";
import { localEncoder, workerEncoder, type Encoder } from "./pool.ts";
import { ShardWriter } from "./shard.ts";
import { checkTokenizer, isTokenizerModule, loadTokenizerModule, type TokenizerLike, type TokenizerModule } from "./tokenizer.ts";

export interface PrepareProgress {
  /** Input bytes whose documents are tokenised and written. */
  bytesDone: number;
  bytesTotal: number;
  documents: number;
  tokens: number;
  seconds: number;
  done: boolean;
}

export interface PrepareOptions {
  /** Files and directories (searched recursively) of .txt and .jsonl. */
  inputs: string[];
  /** Output directory (created if missing). */
  out: string;
  /** A tokenizer object (tokenises in this thread) or a module that workers load (tokenises in `threads` workers). */
  tokenizer: TokenizerLike | TokenizerModule;
  /** Fraction of documents held out for validation (default 0.01). */
  valFraction?: number;
  /** Tokens per shard file (default 100M: 200 MB of uint16). */
  shardTokens?: number;
  /** How a .txt file splits into documents (default "paragraph": blank-line separated). */
  txtDocuments?: TxtDocuments;
  /** Prepend BOS to every document (default false, as TinyLlama). */
  bos?: boolean;
  /** Worker threads for a TokenizerModule (default: the machine's core count). */
  threads?: number;
  /** Replace shards and meta.json already in `out` (default false: an error). */
  overwrite?: boolean;
  onProgress?: (p: PrepareProgress) => void;
}

export interface SplitMeta {
  documents: number;
  tokens: number;
  shards: string[];
}

/** meta.json */
export interface PrepareMeta {
  format: "TLSHARD";
  version: number;
  tokenizer: string;
  vocabSize: number;
  eosId: number;
  bosId: number | null;
  bosPrepended: boolean;
  dtype: TokenDType;
  txtDocuments: TxtDocuments;
  valFraction: number;
  shardTokens: number;
  inputs: { files: number; bytes: number };
  train: SplitMeta;
  val: SplitMeta;
}

const OUR_FILES = /^((train|val)_\d+\.bin(\.tmp)?|meta\.json)$/;
const BATCH_CHARS = 1 << 18; // ~256 KB of text per worker message: fine enough to balance two workers on small inputs
const BATCH_DOCS = 8192;

/** Rolls a split's stream of ids over shard files of at most shardTokens tokens, opening each lazily. */
class SplitWriter {
  readonly shards: string[] = [];
  documents = 0;
  tokens = 0;
  #cur: ShardWriter | null = null;
  constructor(
    readonly dir: string,
    readonly split: string,
    readonly vocabSize: number,
    readonly shardTokens: number,
  ) {}

  write(ids: Int32Array, where: () => string): void {
    let off = 0;
    while (off < ids.length) {
      if (!this.#cur) {
        const name = shardName(this.split, this.shards.length);
        this.#cur = new ShardWriter(join(this.dir, name), this.vocabSize);
        this.shards.push(name);
      }
      const n = Math.min(ids.length - off, this.shardTokens - this.#cur.count);
      this.#cur.write(ids.subarray(off, off + n), where);
      off += n;
      this.tokens += n;
      if (this.#cur.count === this.shardTokens) {
        this.#cur.close();
        this.#cur = null;
      }
    }
  }
  close(): SplitMeta {
    this.#cur?.close();
    this.#cur = null;
    return { documents: this.documents, tokens: this.tokens, shards: this.shards };
  }
  /** Removes everything this writer produced: a failed prepare leaves no partial corpus behind. */
  abort(): void {
    this.#cur?.abort();
    this.#cur = null;
    for (const n of this.shards) rmSync(join(this.dir, n), { force: true });
  }
}

function prepareOut(out: string, overwrite: boolean): void {
  if (existsSync(out) && !statSync(out).isDirectory()) throw new Error(`prepare: out '${out}' exists and is not a directory`);
  mkdirSync(out, { recursive: true });
  const ours = readdirSync(out).filter((n) => OUR_FILES.test(n));
  if (ours.length === 0) return;
  if (!overwrite)
    throw new Error(`prepare: '${out}' already holds ${ours.slice(0, 3).join(", ")}${ours.length > 3 ? ", ..." : ""}; pass overwrite (--force) to replace them, or choose another directory`);
  for (const n of ours) rmSync(join(out, n), { force: true });
}

interface Batch {
  texts: string[];
  val: boolean[];
  /** [file index, document index] per document, for error messages */
  where: number[];
  bytes: number;
}

export async function prepare(o: PrepareOptions): Promise<PrepareMeta> {
  if (o === null || typeof o !== "object") throw new TypeError("prepare: options { inputs, out, tokenizer } are required");
  const valFraction = o.valFraction ?? 0.01;
  if (typeof valFraction !== "number" || !(valFraction >= 0 && valFraction < 1)) throw new RangeError(`prepare: valFraction must be in [0, 1), got ${valFraction}`);
  const shardTokens = o.shardTokens ?? 100_000_000;
  if (!Number.isSafeInteger(shardTokens) || shardTokens < 1) throw new RangeError(`prepare: shardTokens must be a positive integer, got ${shardTokens}`);
  const txt = o.txtDocuments ?? "paragraph";
  if (txt !== "paragraph" && txt !== "file") throw new RangeError(`prepare: txtDocuments must be "paragraph" or "file", got '${String(txt)}'`);
  if (typeof o.out !== "string" || o.out === "") throw new TypeError("prepare: 'out' must be a directory path");
  const files = findInputs(o.inputs);
  const bytesTotal = files.reduce((n, f) => n + f.bytes, 0);

  let enc: Encoder;
  if (isTokenizerModule(o.tokenizer)) {
    const threads = o.threads ?? Math.max(1, navigator.hardwareConcurrency || 1);
    if (!Number.isInteger(threads) || threads < 0) throw new RangeError(`prepare: threads must be an integer >= 0, got ${threads}`);
    enc = threads === 0 ? localEncoder(await loadTokenizerModule(o.tokenizer)) : await workerEncoder(o.tokenizer, threads);
  } else enc = localEncoder(checkTokenizer(o.tokenizer));
  const info = enc.info;
  if (o.bos && info.bosId === null) {
    enc.close();
    throw new Error("prepare: bos was requested but the tokenizer has no bosId");
  }

  const writers = { train: null as SplitWriter | null, val: null as SplitWriter | null };
  try {
    prepareOut(o.out, o.overwrite ?? false);
    const train = (writers.train = new SplitWriter(o.out, "train", info.vocabSize, shardTokens));
    const val = (writers.val = new SplitWriter(o.out, "val", info.vocabSize, shardTokens));
    const eos = new Int32Array([info.eosId]);
    const bos = o.bos ? new Int32Array([info.bosId!]) : null;
    const t0 = performance.now();
    let bytesDone = 0, lastReport = 0;
    const report = (done: boolean) => {
      const now = performance.now();
      if (!o.onProgress || (!done && now - lastReport < 100)) return;
      lastReport = now;
      o.onProgress({ bytesDone, bytesTotal, documents: train.documents + val.documents, tokens: train.tokens + val.tokens, seconds: (now - t0) / 1000, done });
    };

    // Batches are tokenised concurrently but written strictly in submission order, so the output
    // is the same whatever the thread count.
    const inflight: { batch: Batch; result: ReturnType<Encoder["encode"]> }[] = [];
    const maxInflight = Math.max(2, 2 * enc.threads);
    const drainOne = async () => {
      const { batch, result } = inflight.shift()!;
      const { flat, lengths } = await result;
      let off = 0;
      for (let i = 0; i < batch.texts.length; i++) {
        const w = batch.val[i] ? val : train;
        const where = () => `${files[batch.where[2 * i]!]!.path} (document ${batch.where[2 * i + 1]})`;
        const ids = flat.subarray(off, off + lengths[i]!);
        off += lengths[i]!;
        if (bos) w.write(bos, where);
        w.write(ids, where);
        w.write(eos, where);
        w.documents++;
      }
      bytesDone += batch.bytes;
      report(false);
    };
    let batch: Batch = { texts: [], val: [], where: [], bytes: 0 };
    let chars = 0, docIndex = 0;
    const submit = async () => {
      if (batch.texts.length === 0 && batch.bytes === 0) return;
      inflight.push({ batch, result: enc.encode(batch.texts) });
      // a rejected encode is awaited (and rethrown) by drainOne; keep it from being reported as unhandled meanwhile
      inflight[inflight.length - 1]!.result.catch(() => {});
      batch = { texts: [], val: [], where: [], bytes: 0 };
      chars = 0;
      while (inflight.length >= maxInflight) await drainOne();
    };
    for (let fi = 0; fi < files.length; fi++) {
      for (const doc of documentsOf(files[fi]!, txt)) {
        batch.texts.push(doc.text);
        batch.val.push(isValDocument(docIndex, valFraction));
        batch.where.push(fi, docIndex);
        batch.bytes += doc.bytes;
        chars += doc.text.length;
        docIndex++;
        if (chars >= BATCH_CHARS || batch.texts.length >= BATCH_DOCS) await submit();
      }
    }
    await submit();
    while (inflight.length > 0) await drainOne();
    if (docIndex === 0) throw new Error(`prepare: the inputs (${files.length} file${files.length === 1 ? "" : "s"}) hold no documents`);
    bytesDone = bytesTotal;
    report(true);
    const meta: PrepareMeta = {
      format: "TLSHARD",
      version: SHARD_VERSION,
      tokenizer: info.id,
      vocabSize: info.vocabSize,
      eosId: info.eosId,
      bosId: info.bosId,
      bosPrepended: !!bos,
      dtype: dtypeForVocab(info.vocabSize),
      txtDocuments: txt,
      valFraction,
      shardTokens,
      inputs: { files: files.length, bytes: bytesTotal },
      train: train.close(),
      val: val.close(),
    };
    writeFileSync(join(o.out, "meta.json"), JSON.stringify(meta, null, 2) + "\n");
    return meta;
  } catch (e) {
    writers.train?.abort();
    writers.val?.abort();
    throw e;
  } finally {
    enc.close();
  }
}
