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

const REFS: RefJob["ref"][] = ["llama-tokenizer-js", "hf-llama2", "hf-mistral"];
const HEAVY = 100_000; // characters: such a text is a job of its own, so the two workers stay balanced
const results = new Map<string, Promise<Map<number, [number, number]>>>();

function collect(jobs: { indices: number[]; done: Promise<Uint32Array> }[]): Promise<Map<number, [number, number]>> {
  return Promise.all(jobs.map((j) => j.done)).then((outs) => {
    const m = new Map<number, [number, number]>();
    jobs.forEach((j, k) => j.indices.forEach((idx, p) => m.set(idx, [outs[k][2 * p], outs[k][2 * p + 1]])));
    return m;
  });
}

/**
 * Queues every reference job (all references, corpus and adversarial set) on the two workers, heaviest first,
 * so that they run back to back while the tests compare; later calls are free.
 */
export function prefetchReferences(): void {
  if (results.size > 0) return;
  const adv = adversarial();
  const heavy = adv.flatMap((c, i) => (c.text.length > HEAVY ? [i] : []));
  const light = adv.flatMap((c, i) => (c.text.length > HEAVY ? [] : [i]));
  const nCorpus = corpusSentences().length;
  const halves = (idx: number[]): number[][] => [idx.filter((_, k) => k % 2 === 0), idx.filter((_, k) => k % 2 === 1)];
  const plan = new Map<string, { indices: number[]; done: Promise<Uint32Array> }[]>();
  const add = (ref: RefJob["ref"], source: RefJob["source"], indices: number[]): void => {
    const key = `${ref}/${source}`;
    const list = plan.get(key) ?? [];
    list.push({ indices, done: runJob({ ref, source, indices }) });
    plan.set(key, list);
  };
  // longest first: the 1 MB words, then the corpus halves, then the rest of the adversarial set
  for (const ref of REFS) for (const i of heavy) add(ref, "adversarial", [i]);
  for (const ref of REFS) for (const h of halves(Array.from({ length: nCorpus }, (_, i) => i))) add(ref, "corpus", h);
  for (const ref of REFS) add(ref, "adversarial", light);
  for (const [key, jobs] of plan) results.set(key, collect(jobs));
}

/** [count, hash] per text of `source` from a reference tokenizer, computed in two worker threads. */
export async function referenceHashes(ref: RefJob["ref"], source: RefJob["source"], total: number): Promise<(i: number) => [number, number]> {
  prefetchReferences();
  const m = await (results.get(`${ref}/${source}`) as Promise<Map<number, [number, number]>>);
  if (m.size !== total) throw new Error(`reference ${ref}/${source}: ${m.size} results for ${total} texts`);
  return (i) => m.get(i) as [number, number];
}
