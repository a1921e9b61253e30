/**
 * xoshiro128** (Blackman & Vigna): a small, fast generator whose whole state is four uint32s, so
 * a loader's position in its random stream is a JSON-serialisable array.
 */
export type RngState = [number, number, number, number];

function rotl(x: number, k: number): number {
  return ((x << k) | (x >>> (32 - k))) >>> 0;
}

/** splitmix32: spreads a seed over the state so nearby seeds give unrelated streams. */
function splitmix32(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x9e3779b9) >>> 0;
    let z = s;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
    return (z ^ (z >>> 16)) >>> 0;
  };
}

export class Xoshiro128 {
  #s: RngState;

  constructor(state: RngState) {
    if (!Array.isArray(state) || state.length !== 4 || state.some((x) => !Number.isInteger(x) || x < 0 || x > 0xffffffff))
      throw new RangeError(`Xoshiro128: state must be four uint32 integers, got ${JSON.stringify(state)}`);
    if (state.every((x) => x === 0)) throw new RangeError("Xoshiro128: the all-zero state is invalid");
    this.#s = [...state] as RngState;
  }

  /** A generator from any safe integer seed and a stream number (e.g. the data-parallel rank). */
  static seeded(seed: number, stream = 0): Xoshiro128 {
    if (!Number.isSafeInteger(seed)) throw new RangeError(`seed must be a safe integer, got ${seed}`);
    const hi = Math.floor(seed / 2 ** 32) >>> 0, lo = seed >>> 0;
    const sm = splitmix32(lo ^ Math.imul(hi, 0x27d4eb2f) ^ Math.imul(stream + 1, 0x165667b1));
    const st: RngState = [sm(), sm(), sm(), sm()];
    if (st.every((x) => x === 0)) st[0] = 1;
    return new Xoshiro128(st);
  }

  get state(): RngState {
    return [...this.#s] as RngState;
  }

  /** Next uint32. */
  next(): number {
    const s = this.#s;
    const result = Math.imul(rotl(Math.imul(s[1], 5) >>> 0, 7), 9) >>> 0;
    const t = (s[1] << 9) >>> 0;
    s[2] = (s[2] ^ s[0]) >>> 0;
    s[3] = (s[3] ^ s[1]) >>> 0;
    s[1] = (s[1] ^ s[2]) >>> 0;
    s[0] = (s[0] ^ s[3]) >>> 0;
    s[2] = (s[2] ^ t) >>> 0;
    s[3] = rotl(s[3], 11);
    return result;
  }

  /** Uniform integer in [0, n), unbiased (rejection sampling), for n up to 2^53. */
  below(n: number): number {
    if (!Number.isSafeInteger(n) || n < 1) throw new RangeError(`below: n must be a positive safe integer, got ${n}`);
    if (n <= 2 ** 32) {
      const limit = 2 ** 32 - (2 ** 32 % n);
      for (;;) {
        const x = this.next();
        if (x < limit) return x % n;
      }
    }
    const limit = 2 ** 53 - (2 ** 53 % n);
    for (;;) {
      const x = (this.next() >>> 11) * 2 ** 32 + this.next();
      if (x < limit) return x % n;
    }
  }
}
