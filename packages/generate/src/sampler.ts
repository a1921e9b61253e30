/**
 * Choosing the next token from logits, deterministically for a seed. The order of the filters is
 * Hugging Face's (TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper):
 *
 *   temperature == 0 (or topK == 1)  greedy: the first index of the largest logit
 *   z = logits / temperature
 *   top-k   keep the tokens whose z >= the k-th largest z (ties with it are kept)
 *   p = softmax(z) over the kept tokens (float64)
 *   top-p   sort descending; keep a token while the mass of the tokens before it is < topP
 *           (the smallest prefix holding at least topP of the mass; never empty)
 *   draw    one uniform u in [0,1) from the seeded RNG; the token where the running sum of the
 *           renormalised kept probabilities (descending order) first exceeds u
 */
export interface SamplingOptions {
  /** 0 = greedy (default). */
  temperature?: number;
  /** Keep the k most likely tokens; 0 = off (default). */
  topK?: number;
  /** Nucleus mass in (0, 1]; 1 = off (default). */
  topP?: number;
  /** RNG seed (default 0): the same seed and logits give the same tokens. */
  seed?: number;
}

/** mulberry32: a 32-bit state, uniform in [0, 1); small, fast, and the same everywhere. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function argmax(logits: ArrayLike<number>): number {
  let best = 0, bv = -Infinity;
  for (let i = 0; i < logits.length; i++) {
    const v = logits[i]!;
    if (v > bv) {
      bv = v;
      best = i;
    }
  }
  return best;
}

export interface Candidate {
  id: number;
  /** probability after all filters, renormalised */
  p: number;
}

export class Sampler {
  readonly temperature: number;
  readonly topK: number;
  readonly topP: number;
  readonly seed: number;
  readonly #rng: () => number;
  #z = new Float64Array(0);

  constructor(opts: SamplingOptions = {}) {
    const temperature = opts.temperature ?? 0, topK = opts.topK ?? 0, topP = opts.topP ?? 1, seed = opts.seed ?? 0;
    if (typeof temperature !== "number" || !Number.isFinite(temperature) || temperature < 0)
      throw new RangeError(`Sampler: temperature must be a finite number >= 0 (0 = greedy), got ${temperature}`);
    if (!Number.isInteger(topK) || topK < 0) throw new RangeError(`Sampler: topK must be an integer >= 0 (0 = off), got ${topK}`);
    if (typeof topP !== "number" || !(topP > 0 && topP <= 1)) throw new RangeError(`Sampler: topP must be in (0, 1] (1 = off), got ${topP}`);
    if (!Number.isInteger(seed)) throw new RangeError(`Sampler: seed must be an integer, got ${seed}`);
    this.temperature = temperature;
    this.topK = topK;
    this.topP = topP;
    this.seed = seed;
    this.#rng = seededRandom(seed);
  }

  get greedy(): boolean {
    return this.temperature === 0 || this.topK === 1;
  }

  /** The tokens that may be drawn and their renormalised probabilities, most likely first. */
  candidates(logits: ArrayLike<number>): Candidate[] {
    const V = logits.length;
    if (V === 0) throw new RangeError("Sampler: empty logits");
    if (this.greedy) return [{ id: argmax(logits), p: 1 }];
    if (this.#z.length !== V) this.#z = new Float64Array(V);
    const z = this.#z, invT = 1 / this.temperature;
    let max = -Infinity;
    for (let i = 0; i < V; i++) {
      z[i] = logits[i]! * invT;
      if (z[i]! > max) max = z[i]!;
    }
    if (!Number.isFinite(max)) throw new RangeError(`Sampler: logits are not finite (max ${max})`);
    // top-k: threshold at the k-th largest value (ties with it survive, as in Hugging Face)
    let floor = -Infinity;
    if (this.topK > 0 && this.topK < V) floor = kthLargest(z, this.topK);
    let sum = 0;
    for (let i = 0; i < V; i++) sum += z[i]! >= floor ? Math.exp(z[i]! - max) : 0;
    // top-p: a token below (1 - topP) / (V - 1) of the mass can never be in the nucleus (the mass
    // at or below it is < 1 - topP), so only the others need sorting (llama2.c's cut).
    const cut = this.topP < 1 ? ((1 - this.topP) / Math.max(1, V - 1)) * sum : 0;
    const cands: Candidate[] = [];
    for (let i = 0; i < V; i++) {
      if (z[i]! < floor) continue;
      const e = Math.exp(z[i]! - max);
      if (e >= cut) cands.push({ id: i, p: e / sum });
    }
    cands.sort((a, b) => b.p - a.p || a.id - b.id);
    let keep = cands.length;
    if (this.topP < 1) {
      let mass = 0;
      for (keep = 0; keep < cands.length && mass < this.topP; keep++) mass += cands[keep]!.p;
      keep = Math.max(1, keep);
    }
    const kept = cands.slice(0, keep);
    let total = 0;
    for (const c of kept) total += c.p;
    for (const c of kept) c.p /= total;
    return kept;
  }

  /** The next token id (consumes one uniform from the RNG unless greedy). */
  sample(logits: ArrayLike<number>): number {
    const cands = this.candidates(logits);
    if (cands.length === 1) {
      if (!this.greedy) this.#rng(); // keep the stream aligned with the number of draws
      return cands[0]!.id;
    }
    const u = this.#rng();
    let acc = 0;
    for (const c of cands) {
      acc += c.p;
      if (u < acc) return c.id;
    }
    return cands[cands.length - 1]!.id; // u within rounding of 1
  }
}

/** The k-th largest value of z (1-based), by quickselect on a copy. */
function kthLargest(z: Float64Array, k: number): number {
  const a = Float64Array.from(z);
  let lo = 0, hi = a.length - 1;
  const target = k - 1; // index in descending order
  while (lo < hi) {
    const pivot = a[(lo + hi) >>> 1]!;
    let i = lo, j = hi;
    while (i <= j) {
      while (a[i]! > pivot) i++;
      while (a[j]! < pivot) j--;
      if (i <= j) {
        const t = a[i]!;
        a[i] = a[j]!;
        a[j] = t;
        i++;
        j--;
      }
    }
    if (target <= j) hi = j;
    else if (target >= i) lo = i;
    else return a[target]!;
  }
  return a[target]!;
}
