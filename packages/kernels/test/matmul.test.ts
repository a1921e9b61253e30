import { describe, expect, test } from "bun:test";
import { getBackend, matmulBackward, matmulForward, openBackend, type Backend } from "@tinyllama/kernels";
import { mulberry32, randn, relErr } from "@tinyllama/testing";

/** float64 reference for out = inp @ W^T + b and the three gradients. */
function reference(x: Float32Array, w: Float32Array, b: Float32Array | null, dout: Float32Array, N: number, C: number, OC: number) {
  const out = new Float64Array(N * OC), dx = new Float64Array(N * C), dw = new Float64Array(OC * C), db = new Float64Array(OC);
  for (let n = 0; n < N; n++)
    for (let o = 0; o < OC; o++) {
      let acc = b ? b[o]! : 0;
      for (let c = 0; c < C; c++) acc += x[n * C + c]! * w[o * C + c]!;
      out[n * OC + o] = acc;
      const g = dout[n * OC + o]!;
      db[o] += g;
      for (let c = 0; c < C; c++) {
        dx[n * C + c] += g * w[o * C + c]!;
        dw[o * C + c] += g * x[n * C + c]!;
      }
    }
  return { out, dx, dw, db };
}

function checkShapes(be: Backend, shapes: [number, number, number][], seed: number) {
  const rng = mulberry32(seed);
  for (const [N, C, OC] of shapes) {
    const x = randn(N * C, rng), w = randn(OC * C, rng), b = randn(OC, rng), dout = randn(N * OC, rng);
    const ref = reference(x, w, b, dout, N, C, OC);
    const tx = be.fromArray(x, [N, C]), tw = be.fromArray(w, [OC, C]), tb = be.fromArray(b, [OC]);
    const out = be.tensor([N, OC]);
    matmulForward(out, tx, tw, tb);
    expect(relErr(out.read(), ref.out)).toBeLessThan(1e-5);
    // backward accumulates: start from a known non-zero value and subtract it afterwards
    const dx = be.fromArray(new Float32Array(N * C).fill(1), [N, C]);
    const dw = be.tensor([OC, C]), db = be.tensor([OC]);
    matmulBackward({ dinp: dx, dweight: dw, dbias: db }, be.fromArray(dout, [N, OC]), tx, tw);
    expect(relErr(dx.read().map((v) => v - 1), ref.dx)).toBeLessThan(1e-5);
    expect(relErr(dw.read(), ref.dw)).toBeLessThan(1e-5);
    expect(relErr(db.read(), ref.db)).toBeLessThan(1e-5);
  }
}

// Shapes that are and are not multiples of any tile size (MR 14/6/4, NR 32/16), including 1-row
// (decode) and 1-column, and ones that cross the K blocking (KC = 256) of each product: C for the
// forward, OC for dinp, N for dweight; 169 rows cross MC = 168 of the AVX-512 build; decode rows
// with C >= 1024 take the 4-rows-at-a-time matrix-vector path, including a partial last group.
const SHAPES: [number, number, number][] = [
  [1, 1, 1], [1, 288, 768], [1, 700, 3], [3, 17, 5], [37, 64, 96], [64, 288, 288], [129, 100, 33], [16, 513, 7],
  [250, 31, 130], [2, 600, 530], [600, 40, 50], [169, 260, 70], [1, 1030, 7], [1, 2048, 33],
];

/** Bit patterns, so "equal" means bit-for-bit. */
const bits = (a: Float32Array): Uint32Array => new Uint32Array(a.buffer, a.byteOffset, a.length);

/** Forward + all three gradients from fixed inputs, on `be` with `threads` threads. */
function runAll(be: Backend, threads: number, N: number, C: number, OC: number, seed: number) {
  const saved = be.threads;
  be.threads = threads;
  try {
    const rng = mulberry32(seed);
    const x = be.fromArray(randn(N * C, rng), [N, C]), w = be.fromArray(randn(OC * C, rng), [OC, C]);
    const b = be.fromArray(randn(OC, rng), [OC]), dout = be.fromArray(randn(N * OC, rng), [N, OC]);
    const out = be.tensor([N, OC]), dx = be.tensor([N, C]), dw = be.tensor([OC, C]), db = be.tensor([OC]);
    matmulForward(out, x, w, b);
    matmulBackward({ dinp: dx, dweight: dw, dbias: db }, dout, x, w);
    return [out, dx, dw, db].map((t) => t.read());
  } finally {
    be.threads = saved;
  }
}

// The first test of each build compiles the kernel library: allow for a slow, busy machine.
const BUILD_TIMEOUT_MS = 180_000;

describe("matmul", () => {
  test("forward and backward match a float64 reference (native build)", () => {
    checkShapes(getBackend(), SHAPES, 1);
  }, BUILD_TIMEOUT_MS);
  test("the portable (non-AVX-512) build is also correct", () => {
    checkShapes(openBackend({ device: "cpu", arch: "x86-64" }), SHAPES, 2);
  }, BUILD_TIMEOUT_MS);
  test("the AVX2 (x86-64-v3) build is also correct", () => {
    checkShapes(openBackend({ device: "cpu", arch: "x86-64-v3" }), SHAPES, 5);
  }, BUILD_TIMEOUT_MS);

  test("LM-head sized product (256, 288, 32000): sampled rows and columns match float64", () => {
    // Crosses the NC = 4096 column blocking and splits 32000 columns across threads. A full float64
    // reference would take minutes in JS, so check 6 rows of out and dinp, 6 rows of dweight, all of dbias.
    const be = getBackend();
    const [N, C, OC] = [256, 288, 32000];
    const rng = mulberry32(7);
    const x = randn(N * C, rng), w = randn(OC * C, rng, 0.05), b = randn(OC, rng), dout = randn(N * OC, rng);
    const tx = be.fromArray(x, [N, C]), tw = be.fromArray(w, [OC, C]), tdout = be.fromArray(dout, [N, OC]);
    const out = be.tensor([N, OC]), dx = be.tensor([N, C]), dw = be.tensor([OC, C]), db = be.tensor([OC]);
    matmulForward(out, tx, tw, be.fromArray(b, [OC]));
    matmulBackward({ dinp: dx, dweight: dw, dbias: db }, tdout, tx, tw);
    const [o, gx, gw, gb] = [out.read(), dx.read(), dw.read(), db.read()];
    for (const n of [0, 13, 14, 127, 200, 255]) {
      const ref = new Float64Array(OC), refDx = new Float64Array(C);
      for (let j = 0; j < OC; j++) {
        let acc = b[j]!;
        for (let c = 0; c < C; c++) acc += x[n * C + c]! * w[j * C + c]!;
        ref[j] = acc;
        const g = dout[n * OC + j]!;
        for (let c = 0; c < C; c++) refDx[c] += g * w[j * C + c]!;
      }
      expect(relErr(o.subarray(n * OC, (n + 1) * OC), ref)).toBeLessThan(1e-5);
      expect(relErr(gx.subarray(n * C, (n + 1) * C), refDx)).toBeLessThan(1e-5);
    }
    for (const j of [0, 31, 4095, 4096, 16000, 31999]) {
      const ref = new Float64Array(C);
      for (let n = 0; n < N; n++) for (let c = 0; c < C; c++) ref[c] += dout[n * OC + j]! * x[n * C + c]!;
      expect(relErr(gw.subarray(j * C, (j + 1) * C), ref)).toBeLessThan(1e-5);
    }
    const refDb = new Float64Array(OC);
    for (let n = 0; n < N; n++) for (let j = 0; j < OC; j++) refDb[j] += dout[n * OC + j]!;
    expect(relErr(gb, refDb)).toBeLessThan(1e-5);
    for (const t of [tx, tw, tdout, out, dx, dw, db]) t.buffer.free();
  }, 60_000);

  test("results are bit-for-bit identical across repeats and thread counts", () => {
    // Every element of C is produced by one thread in a fixed k order, so even the thread count does
    // not change a bit (a stronger promise than the ABI's "deterministic for a fixed thread count").
    const be = getBackend();
    for (const [N, C, OC] of [[300, 288, 700], [1, 600, 300], [1, 1100, 301], [64, 1000, 96]] as [number, number, number][]) {
      const one = runAll(be, 1, N, C, OC, 11), two = runAll(be, 2, N, C, OC, 11), again = runAll(be, 2, N, C, OC, 11);
      const three = runAll(be, 3, N, C, OC, 11);
      for (let i = 0; i < one.length; i++) {
        expect(bits(two[i]!)).toEqual(bits(one[i]!));
        expect(bits(again[i]!)).toEqual(bits(two[i]!));
        expect(bits(three[i]!)).toEqual(bits(one[i]!));
      }
    }
  }, 60_000);

  test("null gradients are skipped", () => {
    const be = getBackend();
    const x = be.fromArray(randn(12, mulberry32(3)), [3, 4]), w = be.fromArray(randn(8, mulberry32(4)), [2, 4]);
    const dw = be.tensor([2, 4]);
    matmulBackward({ dweight: dw }, be.fromArray(new Float32Array(6).fill(1), [3, 2]), x, w);
    expect(dw.read().some((v) => v !== 0)).toBe(true);
  });
});
