/** Small deterministic helpers for kernel tests. */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function randn(n: number, rng: () => number, scale = 1): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const u = Math.max(rng(), 1e-12), v = rng();
    out[i] = scale * Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
  }
  return out;
}

/** ‖a−b‖/‖b‖ (‖a‖ when b is all zero). */
export function relErr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`relErr: lengths differ (${a.length} vs ${b.length})`);
  let num = 0, den = 0;
  for (let i = 0; i < a.length; i++) {
    const d = a[i]! - b[i]!;
    num += d * d;
    den += b[i]! * b[i]!;
  }
  return den === 0 ? Math.sqrt(num) : Math.sqrt(num / den);
}

export { finiteDiff, dot } from "./fd.ts";
export { readSafetensors, type FixtureTensor } from "./safetensors.ts";

/**
 * A learnable token stream for training tests: runs of an arithmetic sequence (step 3, mod 500)
 * restarting every 37 tokens, as uint16 (the raw llama2.c / nanoGPT .bin layout). Ids stay below
 * 500, so it fits the micro preset's vocabulary.
 */
export function syntheticTokens(n: number): Uint16Array {
  const a = new Uint16Array(n);
  let x = 1;
  for (let i = 0; i < n; i++) {
    if (i % 37 === 0) x = (i * 7919) % 500;
    a[i] = x;
    x = (x + 3) % 500;
  }
  return a;
}
