/**
 * A small seeded Gaussian source for parameter initialisation: mulberry32 uniforms and the
 * Box-Muller transform, in float64, rounded to float32 once. Pure TypeScript, so the same seed
 * gives the same weights on every backend and platform.
 */

/** 32-bit state → uniform in [0, 1). */
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

/** Mixes a seed and a stream index into a new 32-bit seed (so each tensor gets its own stream). */
export function deriveSeed(seed: number, stream: number): number {
  let h = (Math.imul(seed >>> 0, 0x9e3779b1) ^ Math.imul((stream + 1) >>> 0, 0x85ebca77)) >>> 0;
  h = Math.imul(h ^ (h >>> 16), 0x7feb352d) >>> 0;
  h = Math.imul(h ^ (h >>> 15), 0x846ca68b) >>> 0;
  return (h ^ (h >>> 16)) >>> 0;
}

/** n samples of normal(0, std) from `seed`, into `out` if given. */
export function gaussian(n: number, std: number, seed: number, out: Float32Array = new Float32Array(n)): Float32Array {
  const rng = mulberry32(seed);
  for (let i = 0; i < n; i += 2) {
    const u = 1 - rng(); // (0, 1]: log is finite
    const v = rng();
    const r = std * Math.sqrt(-2 * Math.log(u));
    out[i] = r * Math.cos(2 * Math.PI * v);
    if (i + 1 < n) out[i + 1] = r * Math.sin(2 * Math.PI * v);
  }
  return out;
}
