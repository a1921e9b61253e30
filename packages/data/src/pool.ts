/** Worker-thread tokenisation (Web Worker API, as Bun provides it), with an in-thread fallback of the same shape. */
import { encodeBatch, infoOf, type TokenizerInfo, type TokenizerLike, type TokenizerModule } from "./tokenizer.ts";
import type { WorkerReply, WorkerRequest } from "./tokenize-worker.ts";

export interface Encoder {
  readonly info: TokenizerInfo;
  readonly threads: number;
  encode(texts: string[]): Promise<{ flat: Int32Array; lengths: Int32Array }>;
  close(): void;
}

/** Tokenises on the calling thread. */
export function localEncoder(tok: TokenizerLike): Encoder {
  return {
    info: infoOf(tok),
    threads: 0,
    encode: (texts) => {
      try {
        return Promise.resolve(encodeBatch(tok, texts));
      } catch (e) {
        return Promise.reject(e);
      }
    },
    close: () => {},
  };
}

interface Pending {
  resolve: (r: { flat: Int32Array; lengths: Int32Array }) => void;
  reject: (e: Error) => void;
}

/** `threads` workers, each with its own tokenizer built from `source`; batches go round-robin. */
export async function workerEncoder(source: TokenizerModule, threads: number): Promise<Encoder> {
  const url = new URL("./tokenize-worker.ts", import.meta.url).href;
  const workers: Worker[] = [];
  const pending = new Map<number, Pending>();
  let failure: Error | undefined;
  const fail = (e: Error) => {
    failure ??= e;
    for (const p of pending.values()) p.reject(failure);
    pending.clear();
  };
  const ready: Promise<TokenizerInfo>[] = [];
  for (let w = 0; w < threads; w++) {
    const worker = new Worker(url);
    workers.push(worker);
    ready.push(
      new Promise<TokenizerInfo>((resolve, reject) => {
        worker.onmessage = (ev: MessageEvent<WorkerReply>) => {
          const r = ev.data;
          if (r.kind === "ready") resolve(r.info);
          else if (r.kind === "encoded") {
            const p = pending.get(r.id);
            pending.delete(r.id);
            p?.resolve({ flat: r.flat, lengths: r.lengths });
          } else {
            const e = new Error(`tokenizer worker ${w}: ${r.message}`);
            if (r.id === undefined) reject(e);
            fail(e);
          }
        };
        worker.onerror = (ev: ErrorEvent) => {
          const e = new Error(`tokenizer worker ${w} crashed: ${ev.message}`);
          reject(e);
          fail(e);
        };
      }),
    );
    worker.postMessage({ kind: "init", source } satisfies WorkerRequest);
  }
  const close = () => {
    for (const w of workers) w.terminate();
  };
  let infos: TokenizerInfo[];
  try {
    infos = await Promise.all(ready);
  } catch (e) {
    close();
    throw e;
  }
  const info = infos[0]!;
  let next = 0;
  return {
    info,
    threads,
    encode(texts) {
      if (failure) return Promise.reject(failure);
      const id = next++;
      return new Promise((resolve, reject) => {
        pending.set(id, { resolve, reject });
        workers[id % threads]!.postMessage({ kind: "encode", id, texts } satisfies WorkerRequest);
      });
    },
    close,
  };
}
