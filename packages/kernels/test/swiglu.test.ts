import { describe, expect, test } from "bun:test";
import { getBackend, openBackend, swigluBackward, swigluForward, type Backend } from "@tinyllama/kernels";
import { mulberry32, readSafetensors, finiteDiff, randn, relErr } from "@tinyllama/testing";
import { join } from "node:path";

const OPS = () => readSafetensors(join(import.meta.dir, "../../../test/fixtures/ops_layers.safetensors"));
const f32 = (m: ReturnType<typeof OPS>, k: string) => m.get(k)!.data as Float32Array;

const BACKENDS: [string, () => Backend][] = [
  ["native", () => getBackend()],
  ["portable x86-64", () => openBackend({ device: "cpu", arch: "x86-64" })],
];

const silu = (g: number) => g / (1 + Math.exp(-g));

/** Gradients start at `pre` (checks accumulation; use 0 where tiny values must survive exactly). */
function run(be: Backend, g: Float32Array, u: Float32Array, dout: Float32Array, pre = 1) {
  const N = g.length;
  const tg = be.fromArray(g), tu = be.fromArray(u), out = be.tensor([N]);
  swigluForward(out, tg, tu);
  const dg = be.fromArray(new Float32Array(N).fill(pre)), du = be.fromArray(new Float32Array(N).fill(-2 * pre));
  swigluBackward({ dgate: dg, dup: du }, be.fromArray(dout), tg, tu);
  return { out: out.read(), dg: dg.read().map((v) => v - pre), du: du.read().map((v) => v + 2 * pre) };
}

describe("swiglu", () => {
  for (const [label, open] of BACKENDS) {
    test(`${label}: backward matches float64 finite differences`, () => {
      const be = open();
      const N = 37, rng = mulberry32(3);
      const g = randn(N, rng, 3), u = randn(N, rng), dout = randn(N, rng);
      const got = run(be, g, u, dout);
      const L = (gg: ArrayLike<number>, uu: ArrayLike<number>) => {
        let s = 0;
        for (let i = 0; i < N; i++) s += silu(gg[i]!) * uu[i]! * dout[i]!;
        return s;
      };
      const g64 = Float64Array.from(g), u64 = Float64Array.from(u);
      expect(relErr(got.dg, finiteDiff((v) => L(v, u64), g))).toBeLessThan(1e-4);
      expect(relErr(got.du, finiteDiff((v) => L(g64, v), u))).toBeLessThan(1e-4);
      expect(relErr(got.out, Float64Array.from(g, (x, i) => silu(x) * u[i]!))).toBeLessThan(1e-5);
    }, 300_000);

    test(`${label}: large ragged sizes and extreme gates match float64 elementwise`, () => {
      const be = open();
      for (const N of [1, 15, 16, 17, 100_003]) {
        const rng = mulberry32(N);
        const g = randn(N, rng, 4), u = randn(N, rng), dout = randn(N, rng);
        if (N > 10) [g[0], g[1], g[2], g[3]] = [-120, 120, -30, 95]; // exp overflow / underflow edges
        const got = run(be, g, u, dout, 0);
        const out = new Float64Array(N), dg = new Float64Array(N), du = new Float64Array(N), dgScale = new Float64Array(N);
        for (let i = 0; i < N; i++) {
          const x = g[i]!, s = 1 / (1 + Math.exp(-x));
          out[i] = x * s * u[i]!;
          du[i] = dout[i]! * x * s;
          dg[i] = dout[i]! * u[i]! * s * (1 + x * (1 - s));
          // silu'(g) = s + g s (1-s) cancels near g = -1.28: measure error against its terms' size
          dgScale[i] = Math.abs(dout[i]! * u[i]!) * s * (1 + Math.abs(x) * (1 - s));
        }
        for (const a of [got.out, got.dg, got.du]) expect(a.every(Number.isFinite)).toBe(true);
        // elementwise relative error (not just the norm): every element is computed independently
        for (let i = 0; i < N; i++) {
          expect(Math.abs(got.out[i]! - out[i]!)).toBeLessThanOrEqual(2e-6 * Math.abs(out[i]!) + 1e-37);
          expect(Math.abs(got.du[i]! - du[i]!)).toBeLessThanOrEqual(2e-6 * Math.abs(du[i]!) + 1e-37);
          expect(Math.abs(got.dg[i]! - dg[i]!)).toBeLessThanOrEqual(2e-6 * dgScale[i]! + 1e-37);
        }
      }
    }, 300_000);
  }

  test("NaN gates propagate to out and both gradients", () => {
    for (const be of [getBackend(), openBackend({ device: "cpu", arch: "x86-64" })]) {
      const g = randn(40, mulberry32(8));
      g[5] = Number.NaN; // vector body
      g[39] = Number.NaN; // scalar tail
      const got = run(be, g, randn(40, mulberry32(9)), randn(40, mulberry32(10)), 0);
      for (const i of [5, 39]) for (const a of [got.out, got.dg, got.du]) expect(Number.isNaN(a[i]!)).toBe(true);
      expect(Number.isFinite(got.out[6]!)).toBe(true);
    }
  }, 300_000);

  test("omitting one gradient leaves it alone; misuse throws", () => {
    const be = getBackend();
    const g = be.fromArray(randn(20, mulberry32(1))), u = be.fromArray(randn(20, mulberry32(2)));
    const dup = be.tensor([20]);
    swigluBackward({ dup }, be.fromArray(new Float32Array(20).fill(1)), g, u);
    expect(dup.read().some((v) => v !== 0)).toBe(true);
    expect(() => swigluForward(be.tensor([21]), g, u)).toThrow(/swiglu_forward: 'out'/);
    expect(() => swigluForward(be.tensor([20]), g, be.tensor([20], "i32"))).toThrow(/f32/);
  }, 300_000);
  test("matches the PyTorch fixture (tools/reference/model_fixtures.py)", () => {
    const m = OPS();
    const got = run(getBackend(), f32(m, "swiglu.gate"), f32(m, "swiglu.up"), f32(m, "swiglu.dout"));
    expect(relErr(got.out, f32(m, "swiglu.out"))).toBeLessThan(1e-5);
    expect(relErr(got.dg, f32(m, "swiglu.dgate"))).toBeLessThan(1e-4);
    expect(relErr(got.du, f32(m, "swiglu.dup"))).toBeLessThan(1e-4);
  }, 300_000);
});
