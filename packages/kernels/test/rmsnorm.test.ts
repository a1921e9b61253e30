import { describe, expect, test } from "bun:test";
import { ShapeError, getBackend, openBackend, rmsnormBackward, rmsnormForward, type Backend } from "@tinyllama/kernels";
import { mulberry32, readSafetensors, finiteDiff, randn, relErr } from "@tinyllama/testing";
import { join } from "node:path";

const OPS = () => readSafetensors(join(import.meta.dir, "../../../test/fixtures/ops_layers.safetensors"));
const f32 = (m: ReturnType<typeof OPS>, k: string) => m.get(k)!.data as Float32Array;

const BACKENDS: [string, () => Backend][] = [
  ["native", () => getBackend()],
  ["portable x86-64", () => openBackend({ device: "cpu", arch: "x86-64" })],
];

/** float64 forward: out, rstd. */
function ref(x: ArrayLike<number>, w: ArrayLike<number>, N: number, C: number, eps: number) {
  const out = new Float64Array(N * C), rstd = new Float64Array(N);
  for (let n = 0; n < N; n++) {
    let ss = 0;
    for (let c = 0; c < C; c++) ss += x[n * C + c]! ** 2;
    const r = 1 / Math.sqrt(ss / C + eps);
    rstd[n] = r;
    for (let c = 0; c < C; c++) out[n * C + c] = x[n * C + c]! * r * w[c]!;
  }
  return { out, rstd };
}

/** Runs the kernels; gradients start from known values to prove they accumulate. */
function run(be: Backend, x: Float32Array, w: Float32Array, dout: Float32Array, N: number, C: number, eps: number) {
  const tx = be.fromArray(x, [N, C]), tw = be.fromArray(w, [C]), out = be.tensor([N, C]), rstd = be.tensor([N]);
  rmsnormForward(out, rstd, tx, tw, eps);
  const dinp = be.fromArray(new Float32Array(N * C).fill(1), [N, C]), dw = be.fromArray(new Float32Array(C).fill(0.5), [C]);
  rmsnormBackward({ dinp, dweight: dw }, be.fromArray(dout, [N, C]), tx, tw, rstd);
  return { out: out.read(), rstd: rstd.read(), dx: dinp.read().map((v) => v - 1), dw: dw.read().map((v) => v - 0.5) };
}

describe("rmsnorm", () => {
  for (const [label, open] of BACKENDS) {
    test(`${label}: backward matches float64 finite differences`, () => {
      const be = open();
      const N = 3, C = 19, eps = 1e-5, rng = mulberry32(11);
      const x = randn(N * C, rng), w = randn(C, rng), dout = randn(N * C, rng);
      const got = run(be, x, w, dout, N, C, eps);
      const loss = (xx: ArrayLike<number>, ww: ArrayLike<number>) => ref(xx, ww, N, C, eps).out.reduce((s, v, i) => s + v * dout[i]!, 0);
      const w64 = Float64Array.from(w), x64 = Float64Array.from(x);
      expect(relErr(got.dx, finiteDiff((v) => loss(v, w64), x))).toBeLessThan(1e-4);
      expect(relErr(got.dw, finiteDiff((v) => loss(x64, v), w))).toBeLessThan(1e-4);
      const r = ref(x, w, N, C, eps);
      expect(relErr(got.out, r.out)).toBeLessThan(1e-5);
      expect(relErr(got.rstd, r.rstd)).toBeLessThan(1e-5);
    }, 300_000);

    test(`${label}: larger shapes match the float64 reference (incl. ragged C)`, () => {
      const be = open();
      // (C = 1 is left out: its input gradient is eps-small, all rounding noise.)
      for (const [N, C] of [[1, 5], [37, 288], [5, 2051], [64, 64]] as const) {
        const rng = mulberry32(N * 1000 + C);
        const x = randn(N * C, rng, 3), w = randn(C, rng), dout = randn(N * C, rng), eps = 1e-6;
        const got = run(be, x, w, dout, N, C, eps);
        const r = ref(x, w, N, C, eps);
        expect(relErr(got.out, r.out)).toBeLessThan(1e-5);
        // analytic float64 gradients (the formulas the finite-difference test validates)
        const dx = new Float64Array(N * C), dw = new Float64Array(C);
        for (let n = 0; n < N; n++) {
          const rs = r.rstd[n]!;
          let dot = 0;
          for (let c = 0; c < C; c++) dot += w[c]! * dout[n * C + c]! * x[n * C + c]!;
          for (let c = 0; c < C; c++) {
            dx[n * C + c] = rs * w[c]! * dout[n * C + c]! - (rs ** 3 * dot * x[n * C + c]!) / C;
            dw[c] += dout[n * C + c]! * x[n * C + c]! * rs;
          }
        }
        expect(relErr(got.dx, dx)).toBeLessThan(1e-5);
        expect(relErr(got.dw, dw)).toBeLessThan(1e-5);
      }
    }, 300_000);
  }

  test("results are bit-identical for 1 and 2 threads", () => {
    const be = getBackend();
    const before = be.threads;
    const N = 50, C = 200, rng = mulberry32(5);
    const x = randn(N * C, rng), w = randn(C, rng), dout = randn(N * C, rng);
    try {
      be.threads = 1;
      const a = run(be, x, w, dout, N, C, 1e-5);
      be.threads = 2;
      const b = run(be, x, w, dout, N, C, 1e-5);
      expect(Buffer.from(a.dw.buffer).equals(Buffer.from(b.dw.buffer))).toBe(true);
      expect(Buffer.from(a.dx.buffer).equals(Buffer.from(b.dx.buffer))).toBe(true);
      expect(Buffer.from(a.out.buffer).equals(Buffer.from(b.out.buffer))).toBe(true);
    } finally {
      be.threads = before;
    }
  }, 300_000);

  test("misuse is a ShapeError naming the op", () => {
    const be = getBackend();
    const x = be.tensor([4, 8]), w = be.tensor([8]), out = be.tensor([4, 8]), rstd = be.tensor([4]);
    expect(() => rmsnormForward(out, rstd, x, be.tensor([7]), 1e-5)).toThrow(/rmsnorm_forward: 'weight'/);
    expect(() => rmsnormForward(out, be.tensor([3]), x, w, 1e-5)).toThrow(ShapeError);
    expect(() => rmsnormForward(be.tensor([4, 9]), rstd, x, w, 1e-5)).toThrow(/'out'/);
    expect(() => rmsnormForward(out, rstd, x, w, Number.NaN)).toThrow(/eps/);
    expect(() => rmsnormBackward({ dinp: x }, x, x, w, rstd)).toThrow(/alias/);
    const freed = be.tensor([4, 8]);
    freed.buffer.free();
    expect(() => rmsnormForward(out, rstd, freed, w, 1e-5)).toThrow(/freed/);
  }, 300_000);
  test("matches the PyTorch fixture (tools/reference/model_fixtures.py)", () => {
    const be = getBackend(), m = OPS();
    const [N, C] = m.get("rmsnorm.inp")!.shape as [number, number];
    const got = run(be, f32(m, "rmsnorm.inp"), f32(m, "rmsnorm.weight"), f32(m, "rmsnorm.dout"), N, C, 1e-5);
    expect(relErr(got.out, f32(m, "rmsnorm.out"))).toBeLessThan(1e-5);
    expect(relErr(got.rstd, f32(m, "rmsnorm.rstd"))).toBeLessThan(1e-5);
    expect(relErr(got.dx, f32(m, "rmsnorm.dinp"))).toBeLessThan(1e-4);
    expect(relErr(got.dw, f32(m, "rmsnorm.dweight"))).toBeLessThan(1e-4);
  }, 300_000);
});
