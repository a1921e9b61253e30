// Shared test inputs: the nlp-corpus sentences and the committed adversarial set.
import corpus from "nlp-corpus";
import { readFileSync } from "node:fs";

type Case = string | { name: string; repeat: string; count: number };

export function adversarial(): { name: string; text: string }[] {
  const raw = JSON.parse(readFileSync(new URL("./fixtures/adversarial.json", import.meta.url), "utf8")) as Case[];
  return raw.map((c) => (typeof c === "string" ? { name: JSON.stringify(c.slice(0, 40)), text: c } : { name: c.name, text: c.repeat.repeat(c.count) }));
}

let sentences: string[] | undefined;
export function corpusSentences(): string[] {
  sentences ??= corpus.all();
  return sentences;
}

export function sameIds(a: ArrayLike<number>, b: ArrayLike<number>): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** First differing index, for readable failure messages. */
export function describeMismatch(text: string, ours: ArrayLike<number>, ref: ArrayLike<number>): string {
  let i = 0;
  while (i < ours.length && i < ref.length && ours[i] === ref[i]) i++;
  return `${JSON.stringify(text.slice(0, 120))}: first difference at token ${i}: ours ${JSON.stringify(Array.from(ours).slice(i, i + 8))} ref ${JSON.stringify(Array.from(ref).slice(i, i + 8))}`;
}

/** FNV-1a over token ids (as uint32), the hash the SentencePiece fixtures store too. */
export function fnvIds(ids: ArrayLike<number>): number {
  let h = 2166136261;
  for (let i = 0; i < ids.length; i++) h = Math.imul(h ^ ids[i], 16777619) >>> 0;
  return h >>> 0;
}

export interface RefJob {
  ref: "llama-tokenizer-js" | "hf-llama2" | "hf-mistral";
  source: "corpus" | "adversarial";
  indices: number[];
}

// Two workers, one per core, that run the (slow) reference tokenizers while the main thread runs ours.
type RefWorker = Worker & { ref(): void; unref(): void }; // Bun's Worker can stop holding the process open
const workers: RefWorker[] = [];
const idle: RefWorker[] = [];
const queue: { job: RefJob; resolve: (r: Uint32Array) => void }[] = [];

function pump(): void {
  while (idle.length > 0 && queue.length > 0) {
    const w = idle.pop() as RefWorker;
    const { job, resolve } = queue.shift() as (typeof queue)[number];
    w.onmessage = (e: MessageEvent<Uint32Array>) => {
      idle.push(w);
      resolve(e.data);
      pump();
      if (queue.length === 0 && idle.length === workers.length) for (const x of workers) x.unref();
    };
    w.ref();
    w.postMessage(job);
  }
}

function runJob(job: RefJob): Promise<Uint32Array> {
  if (workers.length === 0) {
    for (let i = 0; i < 2; i++) {
      const w = new Worker(new URL("./ref-worker.ts", import.meta.url).href) as RefWorker;
      workers.push(w);
      idle.push(w);
    }
  }
  return new Promise((resolve) => {
    queue.push({ job, resolve });
    pump();
  });
}

/**
 * [count, hash] per text of `source` from a reference tokenizer, computed in two worker threads.
 * Returns a function from text index to its pair.
 */
export async function referenceHashes(ref: RefJob["ref"], source: RefJob["source"], total: number): Promise<(i: number) => [number, number]> {
  const even: number[] = [];
  const odd: number[] = [];
  for (let i = 0; i < total; i++) (i % 2 ? odd : even).push(i);
  const [a, b] = await Promise.all([runJob({ ref, source, indices: even }), runJob({ ref, source, indices: odd })]);
  return (i) => {
    const r = i % 2 ? b : a;
    const k = i >> 1;
    return [r[2 * k], r[2 * k + 1]];
  };
}
