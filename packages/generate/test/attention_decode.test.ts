import { afterAll, describe, expect, test } from "bun:test";
import { attentionDecode, attentionForward, getBackend, openBackend, type Backend, type Tensor } from "@tinyllama/kernels";
import { mulberry32, randn, relErr } from "@tinyllama/testing";

const be = getBackend();
const owned: Tensor[] = [];
const t = (shape: number[], data?: Float32Array): Tensor => {
  const x = be.tensor(shape);
  if (data) x.write(data);
  owned.push(x);
  return x;
};
afterAll(() => {
  for (const x of owned) x.buffer.free();
});

/** float64 reference: out[b,h] = softmax(q k[0..pos]^T / sqrt(HD)) v[0..pos], kv head h / (NH/NKV). */
function reference(q: Float32Array, k: Float32Array, v: Float32Array, B: number, NH: number, NKV: number, HD: number, maxT: number, pos: number): Float64Array {
  const out = new Float64Array(B * NH * HD), G = NH / NKV, scale = 1 / Math.sqrt(HD);
  for (let b = 0; b < B; b++)
    for (let h = 0; h < NH; h++) {
      const g = Math.floor(h / G), s = new Float64Array(pos + 1);
      let m = -Infinity;
      for (let j = 0; j <= pos; j++) {
        let d = 0;
        for (let i = 0; i < HD; i++) d += q[(b * NH + h) * HD + i]! * k[((b * maxT + j) * NKV + g) * HD + i]!;
        s[j] = d * scale;
        m = Math.max(m, s[j]!);
      }
      let sum = 0;
      for (let j = 0; j <= pos; j++) sum += s[j] = Math.exp(s[j]! - m);
      for (let j = 0; j <= pos; j++)
        for (let i = 0; i < HD; i++) out[(b * NH + h) * HD + i] += (s[j]! / sum) * v[((b * maxT + j) * NKV + g) * HD + i]!;
    }
  return out;
}

function setup(B: number, NH: number, NKV: number, HD: number, maxT: number, seed: number) {
  const rng = mulberry32(seed);
  const q = randn(B * NH * HD, rng), k = randn(B * maxT * NKV * HD, rng), v = randn(B * maxT * NKV * HD, rng);
  return { q, k, v, tq: t([B, NH, HD], q), tk: t([B, maxT, NKV, HD], k), tv: t([B, maxT, NKV, HD], v), out: t([B, NH, HD]) };
}

describe("attention_decode (tl_attention_decode)", () => {
  for (const [B, NH, NKV, HD, maxT, pos] of [
    [1, 4, 2, 12, 20, 0],
    [2, 4, 2, 12, 20, 7],
    [3, 6, 2, 48, 40, 39],
    [2, 8, 8, 16, 300, 299], // MHA, more keys than one 256-key block
    [1, 32, 4, 64, 600, 513], // TinyLlama's heads, three blocks
  ] as const) {
    test(`matches a float64 reference: B=${B} NH=${NH} NKV=${NKV} HD=${HD} maxT=${maxT} pos=${pos}`, () => {
      const s = setup(B, NH, NKV, HD, maxT, 7 + pos);
      attentionDecode(s.out, s.tq, s.tk, s.tv, pos);
      expect(relErr(s.out.read(), reference(s.q, s.k, s.v, B, NH, NKV, HD, maxT, pos))).toBeLessThan(1e-6);
    }, 120_000);
  }

  test("ignores cache rows after pos (they are not yet written)", () => {
    const B = 2, NH = 4, NKV = 2, HD = 8, maxT = 16, pos = 5;
    const s = setup(B, NH, NKV, HD, maxT, 3);
    attentionDecode(s.out, s.tq, s.tk, s.tv, pos);
    const before = s.out.read();
    const k = s.k.slice(), v = s.v.slice();
    for (let b = 0; b < B; b++)
      for (let j = pos + 1; j < maxT; j++)
        for (let i = 0; i < NKV * HD; i++) k[(b * maxT + j) * NKV * HD + i] = v[(b * maxT + j) * NKV * HD + i] = 1e30;
    s.tk.write(k);
    s.tv.write(v);
    attentionDecode(s.out, s.tq, s.tk, s.tv, pos);
    expect(s.out.read()).toEqual(before);
    // ... while changing a row at or before pos changes the output
    k[(0 * maxT + pos) * NKV * HD] += 1;
    s.tk.write(k);
    attentionDecode(s.out, s.tq, s.tk, s.tv, pos);
    expect(s.out.read()).not.toEqual(before);
  });

  test("equals the last row of the batched causal attention over the same keys", () => {
    const B = 2, T = 37, NH = 6, NKV = 3, HD = 16;
    const rng = mulberry32(11);
    const q = t([B, T, NH, HD], randn(B * T * NH * HD, rng)), k = t([B, T, NKV, HD], randn(B * T * NKV * HD, rng)), v = t([B, T, NKV, HD], randn(B * T * NKV * HD, rng));
    const full = t([B, T, NH, HD]), lse = t([B, NH, T]);
    attentionForward(full, lse, q, k, v);
    const qa = q.read(), fa = full.read();
    const qLast = new Float32Array(B * NH * HD), want = new Float32Array(B * NH * HD);
    for (let b = 0; b < B; b++) {
      qLast.set(qa.subarray(((b * T + T - 1) * NH) * HD, ((b * T + T) * NH) * HD), b * NH * HD);
      want.set(fa.subarray(((b * T + T - 1) * NH) * HD, ((b * T + T) * NH) * HD), b * NH * HD);
    }
    const out = t([B, NH, HD]);
    attentionDecode(out, t([B, NH, HD], qLast), k, v, T - 1);
    expect(relErr(out.read(), want)).toBeLessThan(1e-6);
  });

  test("bit-identical for 1, 2 and 3 threads and across repeats", () => {
    const s = setup(2, 8, 2, 64, 400, 5);
    const results: Float32Array[] = [];
    const before = be.threads;
    try {
      for (const n of [1, 2, 3, 2]) {
        be.threads = n;
        attentionDecode(s.out, s.tq, s.tk, s.tv, 390);
        results.push(s.out.read() as Float32Array);
      }
    } finally {
      be.threads = before;
    }
    for (const r of results) expect(r).toEqual(results[0]!);
  });

  test("portable (x86-64) build agrees with the native one", () => {
    let portable: Backend | null = null;
    try {
      portable = openBackend({ device: "cpu", arch: "x86-64" });
    } catch (e) {
      throw new Error(`could not build the portable library: ${(e as Error).message}`);
    }
    const B = 2, NH = 4, NKV = 2, HD = 20, maxT = 300, pos = 280;
    const rng = mulberry32(5);
    const q = randn(B * NH * HD, rng), k = randn(B * maxT * NKV * HD, rng), v = randn(B * maxT * NKV * HD, rng);
    const pt = (shape: number[], d?: Float32Array): Tensor => {
      const x = portable!.tensor(shape);
      if (d) x.write(d);
      return x;
    };
    const out = pt([B, NH, HD]), tq = pt([B, NH, HD], q), tk = pt([B, maxT, NKV, HD], k), tv = pt([B, maxT, NKV, HD], v);
    try {
      attentionDecode(out, tq, tk, tv, pos);
      expect(relErr(out.read(), reference(q, k, v, B, NH, NKV, HD, maxT, pos))).toBeLessThan(1e-6);
    } finally {
      for (const x of [out, tq, tk, tv]) x.buffer.free();
    }
  }, 300_000);

  test("misuse is a ShapeError naming the op, never a crash", () => {
    const s = setup(2, 4, 2, 8, 10, 1);
    expect(() => attentionDecode(s.out, s.tq, s.tk, s.tv, 10)).toThrow(/attention_decode: pos=10 must be an integer in \[0, maxT\) = \[0, 10\)/);
    expect(() => attentionDecode(s.out, s.tq, s.tk, s.tv, -1)).toThrow(/pos=-1/);
    expect(() => attentionDecode(s.out, s.tq, s.tk, s.tv, 1.5)).toThrow(/pos=1.5/);
    expect(() => attentionDecode(s.out, s.tq.view([2, 32]), s.tk, s.tv, 0)).toThrow(/'q' must be 3-D \(B, NH, HD\), got \[2, 32\]/);
    expect(() => attentionDecode(s.out, s.tq, t([1, 10, 2, 8]), s.tv, 0)).toThrow(/'kCache' \[1, 10, 2, 8\] must match 'q' \[2, 4, 8\] in B and HD/);
    expect(() => attentionDecode(s.out, s.tq, s.tk, t([2, 9, 2, 8]), 0)).toThrow(/'vCache' must have shape \[2, 10, 2, 8\], got \[2, 9, 2, 8\]/);
    expect(() => attentionDecode(t([2, 4, 8]), t([2, 4, 8]), t([2, 10, 3, 8]), t([2, 10, 3, 8]), 0)).toThrow(/NH=4 .* must be a multiple of kv heads NKV=3/);
    expect(() => attentionDecode(s.tq, s.tq, s.tk, s.tv, 0)).toThrow(/'out' \[2, 4, 8\] overlaps the input 'q'/);
    const i32 = be.tensor([2, 4, 8], "i32");
    owned.push(i32);
    expect(() => attentionDecode(s.out, i32, s.tk, s.tv, 0)).toThrow(/'q' must be f32, got i32/);
    const dead = be.tensor([2, 4, 8]);
    dead.buffer.free();
    expect(() => attentionDecode(dead, s.tq, s.tk, s.tv, 0)).toThrow(/freed/);
    // The C kernel checks too: a raw call with pos out of range returns TL_ERR_OUT_OF_RANGE.
    expect(be.lib.tl_attention_decode(s.out.ptr(), s.tq.ptr(), s.tk.ptr(), s.tv.ptr(), 2, 4, 2, 8, 10, 10)).toBe(3);
    expect(be.lib.tl_attention_decode(s.out.ptr(), s.tq.ptr(), s.tk.ptr(), s.tv.ptr(), 2, 4, 3, 8, 10, 0)).toBe(1);
  });
});
