import { readFileSync } from "node:fs";

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

/**
 * Central-difference gradient of a scalar function of a float64 vector: the float64 "truth" that
 * every backward is checked against. f may read x freely; x is restored after each probe.
 */
export function numericalGrad(f: (x: Float64Array) => number, x: Float64Array, h = 1e-5): Float64Array {
  const g = new Float64Array(x.length);
  for (let i = 0; i < x.length; i++) {
    const xi = x[i]!;
    x[i] = xi + h;
    const fp = f(x);
    x[i] = xi - h;
    const fm = f(x);
    x[i] = xi;
    g[i] = (fp - fm) / (2 * h);
  }
  return g;
}

export type FixtureTensor =
  | { dtype: "F32"; shape: number[]; data: Float32Array }
  | { dtype: "I32"; shape: number[]; data: Int32Array };

/**
 * Reads a safetensors file holding F32/I32 tensors (the fixtures in test/fixtures): an 8-byte
 * little-endian header length, a JSON header {name: {dtype, shape, data_offsets}}, raw data.
 */
export function readSafetensors(path: string): Map<string, FixtureTensor> {
  const bytes = new Uint8Array(readFileSync(path));
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const n = Number(view.getBigUint64(0, true));
  const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + n))) as Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] }>;
  const out = new Map<string, FixtureTensor>();
  for (const [name, h] of Object.entries(header)) {
    if (name === "__metadata__") continue;
    const [a, b] = h.data_offsets;
    const raw = bytes.slice(8 + n + a, 8 + n + b).buffer; // copy: typed arrays need aligned offsets
    if (h.dtype === "F32") out.set(name, { dtype: "F32", shape: h.shape, data: new Float32Array(raw) });
    else if (h.dtype === "I32") out.set(name, { dtype: "I32", shape: h.shape, data: new Int32Array(raw) });
    else throw new Error(`readSafetensors(${path}): tensor '${name}' has dtype ${h.dtype}; only F32 and I32 are supported`);
  }
  return out;
}
