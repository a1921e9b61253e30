// Multi-core encoding with worker threads (Bun; Node >= 23 with TypeScript type stripping). This is a
// separate entry, "@tinyllama/tokenizer/parallel", so the browser entry never imports node:worker_threads.

import { Worker } from "node:worker_threads";
import { statSync } from "node:fs";
import { availableParallelism } from "node:os";
import type { EncodeOptions, Tokenizer } from "./tokenizer.ts";

interface Reply {
  id: number;
  ids: Int32Array;
  offsets: Int32Array;
}

/** A pool of worker threads, each holding a copy of one tokenizer. */
export class ParallelTokenizer {
  private next = 0;
  private readonly pending = new Map<number, (r: Reply) => void>();

  private readonly workers: Worker[];

  private constructor(workers: Worker[]) {
    this.workers = workers;
    for (const w of workers) {
      w.on("message", (r: Reply) => {
        const resolve = this.pending.get(r.id);
        this.pending.delete(r.id);
        resolve?.(r);
      });
    }
  }

  /** Starts `threads` workers (default: one per core) with copies of `tokenizer`. */
  static async create(tokenizer: Tokenizer, threads = availableParallelism()): Promise<ParallelTokenizer> {
    const url = new URL("./parallel-worker.ts", import.meta.url);
    const workers = Array.from({ length: Math.max(1, threads) }, () => new Worker(url, { workerData: tokenizer.spec }));
    await Promise.all(workers.map((w) => new Promise<void>((resolve, reject) => {
      w.once("message", () => resolve());
      w.once("error", reject);
    })));
    return new ParallelTokenizer(workers);
  }

  get threads(): number {
    return this.workers.length;
  }

  private run(w: Worker, texts: readonly string[], options: EncodeOptions): Promise<Reply> {
    const id = this.next++;
    return new Promise((resolve) => {
      this.pending.set(id, resolve);
      // one joined string plus offsets clones far faster than an array of many small strings
      const offsets = new Int32Array(texts.length + 1);
      for (let i = 0; i < texts.length; i++) offsets[i + 1] = offsets[i] + texts[i].length;
      w.postMessage({ id, joined: texts.join(""), offsets, options }, [offsets.buffer]);
    });
  }

  /** Like Tokenizer.encodeBatch, with the texts split evenly (by characters) across the workers. */
  async encodeBatch(texts: readonly string[], options: EncodeOptions = {}): Promise<Int32Array[]> {
    const parts: string[][] = this.workers.map(() => []);
    let total = 0;
    for (const t of texts) total += t.length;
    let acc = 0;
    for (const t of texts) {
      parts[Math.min(this.workers.length - 1, Math.floor((acc * this.workers.length) / Math.max(1, total)))].push(t);
      acc += t.length;
    }
    const replies = await Promise.all(parts.map((p, i) => this.run(this.workers[i], p, options)));
    const out: Int32Array[] = [];
    for (const r of replies) for (let k = 0; k + 1 < r.offsets.length; k++) out.push(r.ids.subarray(r.offsets[k], r.offsets[k + 1]));
    return out;
  }

  /**
   * Encodes a text file line by line (each line as its own text). Each worker reads the file itself and encodes
   * the lines that start in its share of the bytes, so no text crosses between threads; only ids come back.
   */
  async encodeFile(path: string, options: EncodeOptions = {}): Promise<Int32Array[]> {
    const size = statSync(path).size;
    const n = this.workers.length;
    const replies = await Promise.all(
      this.workers.map((w, i) => {
        const id = this.next++;
        return new Promise<Reply>((resolve) => {
          this.pending.set(id, resolve);
          w.postMessage({ id, file: path, from: Math.floor((size * i) / n), to: Math.floor((size * (i + 1)) / n), last: i === n - 1, options });
        });
      }),
    );
    const out: Int32Array[] = [];
    for (const r of replies) for (let k = 0; k + 1 < r.offsets.length; k++) out.push(r.ids.subarray(r.offsets[k], r.offsets[k + 1]));
    return out;
  }

  async close(): Promise<void> {
    await Promise.all(this.workers.map((w) => w.terminate()));
  }
}

/** One-shot: encode a file's lines on all cores, then stop the workers. */
export async function encodeFileParallel(tokenizer: Tokenizer, path: string, options: EncodeOptions = {}): Promise<Int32Array[]> {
  const pool = await ParallelTokenizer.create(tokenizer);
  try {
    return await pool.encodeFile(path, options);
  } finally {
    await pool.close();
  }
}
