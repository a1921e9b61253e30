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

// Shapes that are and are not multiples of any tile size, including 1-row (decode) and 1-column.
const SHAPES: [number, number, number][] = [
  [1, 1, 1], [1, 288, 768], [3, 17, 5], [37, 64, 96], [64, 288, 288], [129, 100, 33], [16, 513, 7], [250, 31, 130],
];

describe("matmul", () => {
  test("forward and backward match a float64 reference (native build)", () => {
    checkShapes(getBackend(), SHAPES, 1);
  });
  test("the portable (non-AVX-512) build is also correct", () => {
    checkShapes(openBackend({ device: "cpu", arch: "x86-64" }), SHAPES, 2);
  });
  test("null gradients are skipped", () => {
    const be = getBackend();
    const x = be.fromArray(randn(12, mulberry32(3)), [3, 4]), w = be.fromArray(randn(8, mulberry32(4)), [2, 4]);
    const dw = be.tensor([2, 4]);
    matmulBackward({ dweight: dw }, be.fromArray(new Float32Array(6).fill(1), [3, 2]), x, w);
    expect(dw.read().some((v) => v !== 0)).toBe(true);
  });
});
