/**
 * Mean next-token cross-entropy over non-overlapping windows of T+1 tokens: window w is
 * tokens[w(T+1), (w+1)(T+1)); its first T tokens are the input and its last T the targets. A
 * trailing partial window is dropped. Losses are summed in float64 in window order.
 */
import { ShapeError } from "@tinyllama/kernels";
import type { InferenceSession } from "./session.ts";

export interface EvalResult {
  loss: number;
  perplexity: number;
  /** Targets counted (windows * T). */
  tokens: number;
  windows: number;
}

/** A token stream made of one or more arrays (e.g. shards), read as one concatenation. */
export type TokenStream = ArrayLike<number> | readonly ArrayLike<number>[];

function parts(s: TokenStream): readonly ArrayLike<number>[] {
  return Array.isArray(s) ? (s as readonly ArrayLike<number>[]) : [s as ArrayLike<number>];
}

export function evaluateWindows(session: InferenceSession, stream: TokenStream, T: number, onProgress?: (done: number, total: number) => void): EvalResult {
  if (session.B !== 1) throw new ShapeError(`evaluate: the session has B=${session.B}; use a B=1 session`);
  if (!Number.isInteger(T) || T < 1) throw new ShapeError(`evaluate: T must be a positive integer, got ${T}`);
  if (T > session.maxT) throw new ShapeError(`evaluate: T=${T} exceeds the context ${session.maxT}; use --seq <= ${session.maxT}`);
  const ps = parts(stream);
  const total = ps.reduce((n, p) => n + p.length, 0);
  const windows = Math.floor(total / (T + 1));
  if (windows === 0) throw new ShapeError(`evaluate: the data has ${total} tokens, fewer than one window of T+1 = ${T + 1}; use a smaller --seq`);
  const w = new Int32Array(T + 1);
  let part = 0, off = 0, sum = 0, count = 0;
  for (let k = 0; k < windows; k++) {
    for (let i = 0; i <= T; i++) {
      while (off >= ps[part]!.length) {
        part++;
        off = 0;
      }
      w[i] = ps[part]![off++]!;
    }
    const r = session.loss(w.subarray(0, T), w.subarray(1));
    sum += r.sum;
    count += r.count;
    onProgress?.(k + 1, windows);
  }
  const loss = sum / count;
  return { loss, perplexity: Math.exp(loss), tokens: count, windows };
}
