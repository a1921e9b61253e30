/**
 * The window loader's logic, independent of where tokens come from: given token arrays (shards)
 * forming one concatenated stream, it yields batches of B windows of T+1 tokens, as Int32Array
 * (B, T+1) row-major: inputs = window[:, :T], targets = window[:, 1:].
 */
import type { TokenArray } from "./format.ts";
import { Xoshiro128, type RngState } from "./rng.ts";

export type LoaderMode = "random" | "sequential";

export interface LoaderOptions {
  /** Windows per batch. */
  B: number;
  /** Sequence length; each window holds T+1 tokens. */
  T: number;
  /**
   * "random": window starts drawn uniformly (seeded) over this rank's slice of the stream.
   * "sequential": windows at starts 0, T, 2T, ... (each token is a target exactly once, as llm.c);
   * a window that would run past the end starts again from the first token. Default "random".
   */
  mode?: LoaderMode;
  /** Seed of the random mode (default 0). Each rank draws from its own stream. */
  seed?: number;
  /** Data-parallel rank in [0, worldSize); each rank reads a disjoint contiguous slice of the stream. */
  rank?: number;
  worldSize?: number;
}

/** Everything needed to continue a loader exactly where it was (JSON-serialisable). */
export interface LoaderState {
  version: 1;
  mode: LoaderMode;
  /** Tokens in this rank's slice (a changed corpus is refused on load). */
  tokens: number;
  rank: number;
  worldSize: number;
  /** Sequential: the next window's start within the slice. */
  position: number;
  /** Sequential: how many times the stream wrapped around. */
  epoch: number;
  /** Random: generator state. */
  rng: RngState;
  /** Batches served so far. */
  batches: number;
}

function posInt(what: string, v: number | undefined, min: number): number {
  if (typeof v !== "number" || !Number.isSafeInteger(v) || v < min)
    throw new RangeError(`DataLoader: '${what}' must be an integer >= ${min}, got ${v}`);
  return v;
}

export class WindowLoader {
  readonly B: number;
  readonly T: number;
  readonly mode: LoaderMode;
  readonly rank: number;
  readonly worldSize: number;
  /** First token of this rank's slice in the concatenated stream, and the slice length. */
  readonly sliceStart: number;
  readonly tokens: number;
  /** Tokens in the whole corpus (all ranks). */
  readonly totalTokens: number;
  readonly #segments: readonly TokenArray[];
  readonly #starts: number[]; // cumulative start of each segment in the stream
  #rng: Xoshiro128;
  #position = 0;
  #epoch = 0;
  #batches = 0;

  constructor(segments: readonly TokenArray[], opts: LoaderOptions, describe = "corpus") {
    if (opts === null || typeof opts !== "object") throw new TypeError("DataLoader: options { B, T, ... } are required");
    this.B = posInt("B", opts.B, 1);
    this.T = posInt("T", opts.T, 1);
    this.mode = opts.mode ?? "random";
    if (this.mode !== "random" && this.mode !== "sequential") throw new RangeError(`DataLoader: mode must be "random" or "sequential", got '${String(this.mode)}'`);
    this.worldSize = posInt("worldSize", opts.worldSize ?? 1, 1);
    this.rank = posInt("rank", opts.rank ?? 0, 0);
    if (this.rank >= this.worldSize) throw new RangeError(`DataLoader: rank ${this.rank} is outside [0, worldSize = ${this.worldSize})`);
    const seed = opts.seed ?? 0;
    if (!Number.isSafeInteger(seed)) throw new RangeError(`DataLoader: 'seed' must be a safe integer, got ${seed}`);

    this.#segments = segments.filter((s) => s.length > 0);
    this.#starts = [];
    let total = 0;
    for (const s of this.#segments) {
      this.#starts.push(total);
      total += s.length;
    }
    this.totalTokens = total;
    if (total === 0) throw new Error(`DataLoader: ${describe} holds no tokens`);
    this.sliceStart = Math.floor((this.rank * total) / this.worldSize);
    this.tokens = Math.floor(((this.rank + 1) * total) / this.worldSize) - this.sliceStart;
    if (this.tokens < this.T + 1)
      throw new Error(
        this.worldSize === 1
          ? `DataLoader: ${describe} holds ${total} tokens, fewer than one window of T+1 = ${this.T + 1}; use a smaller T or more data`
          : `DataLoader: rank ${this.rank}'s slice of ${describe} holds ${this.tokens} tokens (of ${total}, split over ${this.worldSize} ranks), fewer than one window of T+1 = ${this.T + 1}; use a smaller T, fewer ranks or more data`,
      );
    this.#rng = Xoshiro128.seeded(seed, this.rank);
  }

  /** Elements of one batch: B * (T+1). */
  get batchSize(): number {
    return this.B * (this.T + 1);
  }

  /** Fills `out` (or a new array) with the next B windows, row-major (B, T+1). */
  next(out?: Int32Array): Int32Array {
    const W = this.T + 1;
    const buf = out ?? new Int32Array(this.B * W);
    if (!(buf instanceof Int32Array) || buf.length !== this.B * W)
      throw new RangeError(`DataLoader.next: 'out' must be an Int32Array of B*(T+1) = ${this.B * W} elements, got ${buf instanceof Int32Array ? buf.length : String(buf)}`);
    for (let b = 0; b < this.B; b++) {
      let start: number;
      if (this.mode === "random") start = this.#rng.below(this.tokens - W + 1);
      else {
        if (this.#position + W > this.tokens) {
          this.#position = 0;
          this.#epoch++;
        }
        start = this.#position;
        this.#position += this.T;
      }
      this.#copy(buf, b * W, this.sliceStart + start, W);
    }
    this.#batches++;
    return buf;
  }

  /** Copies stream[from, from+n) into dst at offset, across segment boundaries. */
  #copy(dst: Int32Array, offset: number, from: number, n: number): void {
    // binary search: the last segment starting at or before `from`
    let lo = 0, hi = this.#starts.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (this.#starts[mid]! <= from) lo = mid;
      else hi = mid - 1;
    }
    let seg = lo, at = from - this.#starts[seg]!, done = 0;
    while (done < n) {
      const s = this.#segments[seg]!;
      const k = Math.min(n - done, s.length - at);
      dst.set(s.subarray(at, at + k), offset + done);
      done += k;
      seg++;
      at = 0;
    }
  }

  *[Symbol.iterator](): Iterator<Int32Array> {
    for (;;) yield this.next();
  }

  get epoch(): number {
    return this.#epoch;
  }
  get batches(): number {
    return this.#batches;
  }

  state(): LoaderState {
    return {
      version: 1,
      mode: this.mode,
      tokens: this.tokens,
      rank: this.rank,
      worldSize: this.worldSize,
      position: this.#position,
      epoch: this.#epoch,
      rng: this.#rng.state,
      batches: this.#batches,
    };
  }

  /** Continues from `state()`; the corpus slice, mode, rank and world size must be the same. B may differ. */
  loadState(s: LoaderState): void {
    if (s === null || typeof s !== "object" || s.version !== 1) throw new TypeError(`DataLoader.loadState: expected a version-1 loader state, got ${JSON.stringify(s)?.slice(0, 80)}`);
    const same = (k: "mode" | "rank" | "worldSize" | "tokens", what: string) => {
      if (s[k] !== this[k]) throw new Error(`DataLoader.loadState: the state was saved with ${what} ${String(s[k])}, this loader has ${String(this[k])}`);
    };
    same("mode", "mode");
    same("rank", "rank");
    same("worldSize", "worldSize");
    same("tokens", "a corpus slice of (tokens)");
    if (!Number.isSafeInteger(s.position) || s.position < 0 || s.position > this.tokens)
      throw new RangeError(`DataLoader.loadState: position ${s.position} is outside the slice [0, ${this.tokens}]`);
    const rng = new Xoshiro128(s.rng);
    this.#rng = rng;
    this.#position = s.position;
    this.#epoch = posInt("epoch", s.epoch, 0);
    this.#batches = posInt("batches", s.batches, 0);
  }
}

/** Splits (B, T+1) windows into inputs (B, T) and targets (B, T), into the given arrays if any. */
export function splitWindows(
  windows: Int32Array,
  B: number,
  T: number,
  inputs: Int32Array = new Int32Array(B * T),
  targets: Int32Array = new Int32Array(B * T),
): { inputs: Int32Array; targets: Int32Array } {
  if (windows.length !== B * (T + 1)) throw new RangeError(`splitWindows: windows hold ${windows.length} ids, expected B*(T+1) = ${B * (T + 1)}`);
  if (inputs.length !== B * T || targets.length !== B * T) throw new RangeError(`splitWindows: inputs and targets must hold B*T = ${B * T} ids`);
  for (let b = 0; b < B; b++) {
    const w = b * (T + 1);
    inputs.set(windows.subarray(w, w + T), b * T);
    targets.set(windows.subarray(w + 1, w + T + 1), b * T);
  }
  return { inputs, targets };
}
