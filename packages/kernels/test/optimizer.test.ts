import { describe, expect, test } from "bun:test";
import { adamwStep, getBackend, openBackend, sumsq, type AdamWStepOptions, type Backend, type Tensor } from "@tinyllama/kernels";
import { mulberry32, randn, relErr } from "@tinyllama/testing";

function sumsq64(x: Float32Array): number {
  let s = 0;
  for (let i = 0; i < x.length; i++) s += x[i]! * x[i]!;
  return s;
}

/** float64 AdamW in PyTorch's order of operations. */
function adamwRef(p: Float64Array, g: Float32Array, m: Float64Array, v: Float64Array, o: AdamWStepOptions): void {
  const bc1 = 1 - o.beta1 ** o.step, bc2 = 1 - o.beta2 ** o.step;
  for (let i = 0; i < p.length; i++) {
    const gi = g[i]! * o.gradScale;
    p[i] = p[i]! * (1 - o.lr * o.weightDecay);
    m[i] = o.beta1 * m[i]! + (1 - o.beta1) * gi;
    v[i] = o.beta2 * v[i]! + (1 - o.beta2) * gi * gi;
    p[i] = p[i]! - (o.lr / bc1) * m[i]! / (Math.sqrt(v[i]!) / Math.sqrt(bc2) + o.eps);
  }
}

const OPTS: AdamWStepOptions = { lr: 1e-2, beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1, gradScale: 0.7, step: 1 };
// Sizes around the 16/32-lane vectors, the 4096-element adamw chunk and the 65536-element sumsq block.
const SIZES = [1, 15, 16, 17, 31, 32, 33, 4095, 4097, 65535, 65536, 65537, 200003];

function runAdamw(be: Backend, n: number, seed: number, steps: number) {
  const rng = mulberry32(seed);
  const p0 = randn(n, rng), grads = Array.from({ length: steps }, () => randn(n, rng));
  const p = be.fromArray(p0), g = be.tensor([n]), m = be.tensor([n]), v = be.tensor([n]);
  const rp = Float64Array.from(p0), rm = new Float64Array(n), rv = new Float64Array(n);
  for (let t = 1; t <= steps; t++) {
    g.write(grads[t - 1]!);
    adamwStep(p, g, m, v, { ...OPTS, step: t });
    adamwRef(rp, grads[t - 1]!, rm, rv, { ...OPTS, step: t });
  }
  return { p: p.read(), m: m.read(), v: v.read(), rp, rm, rv };
}

describe("sumsq", () => {
  test("matches a float64 sum on sizes around every vector, chunk and block boundary", () => {
    const be = getBackend();
    for (const n of SIZES) {
      const x = randn(n, mulberry32(n), 3);
      const got = sumsq(be.fromArray(x));
      expect(Math.abs(got - sumsq64(x)) / sumsq64(x)).toBeLessThan(1e-13);
    }
  });
  test("is bit-identical across thread counts and between the AVX-512 and portable builds", () => {
    const x = randn(300_001, mulberry32(7));
    const native = getBackend(), portable = openBackend({ device: "cpu", arch: "x86-64" });
    const before = native.threads;
    const results: number[] = [];
    for (const th of [1, 2, 3]) {
      native.threads = th;
      results.push(sumsq(native.fromArray(x)));
    }
    native.threads = before;
    results.push(sumsq(portable.fromArray(x)));
    for (const r of results) expect(r).toBe(results[0]!);
  });
  test("empty tensors give 0; non-f32 is an error", () => {
    const be = getBackend();
    expect(sumsq(be.tensor([0]))).toBe(0);
    expect(() => sumsq(be.tensor([4], "i32"))).toThrow(/sumsq: 'x' must be f32/);
  });
  test("a freed buffer is an error, not a crash", () => {
    const t = getBackend().tensor([8]);
    t.buffer.free();
    expect(() => sumsq(t)).toThrow(/freed/);
  });
});

describe("adamw_step", () => {
  test("matches a float64 PyTorch-order reference over 5 steps (native and portable builds)", () => {
    for (const be of [getBackend(), openBackend({ device: "cpu", arch: "x86-64" })])
      for (const n of [1, 17, 4097, 65537]) {
        const r = runAdamw(be, n, n + 11, 5);
        expect(relErr(r.p, r.rp)).toBeLessThan(1e-6);
        expect(relErr(r.m, r.rm)).toBeLessThan(1e-6);
        expect(relErr(r.v, r.rv)).toBeLessThan(1e-6);
      }
  });
  test("with zero gradient and zero state only the decoupled weight decay acts", () => {
    const be = getBackend();
    const p = be.fromArray(new Float32Array([1, -2, 3])), g = be.tensor([3]), m = be.tensor([3]), v = be.tensor([3]);
    adamwStep(p, g, m, v, { ...OPTS, lr: 0.5, weightDecay: 0.2 });
    // fp32 p * fp32(1 - lr*wd), exactly
    expect(Array.from(p.read())).toEqual([1, -2, 3].map((x) => Math.fround(x * Math.fround(0.9))));
  });
  test("gradScale multiplies the gradient before the moments", () => {
    const be = getBackend();
    const run = (grad: number, scale: number) => {
      const p = be.fromArray(new Float32Array([1])), g = be.fromArray(new Float32Array([grad])), m = be.tensor([1]), v = be.tensor([1]);
      adamwStep(p, g, m, v, { ...OPTS, gradScale: scale });
      return [m.read()[0], v.read()[0]];
    };
    expect(run(4, 0.25)).toEqual(run(1, 1));
  });
  test("is deterministic: two identical runs give identical bits", () => {
    const a = runAdamw(getBackend(), 70_001, 3, 3), b = runAdamw(getBackend(), 70_001, 3, 3);
    expect(Buffer.from(a.p.buffer).equals(Buffer.from(b.p.buffer))).toBe(true);
  });
  test("misuse is a ShapeError naming the op, before any C call", () => {
    const be = getBackend();
    const t = () => be.tensor([4]);
    const [p, g, m, v] = [t(), t(), t(), t()] as [Tensor, Tensor, Tensor, Tensor];
    expect(() => adamwStep(p, be.tensor([5]), m, v, OPTS)).toThrow(/adamw_step: 'grad' must have shape \[4\], got \[5\]/);
    expect(() => adamwStep(p, g, be.tensor([4], "i32"), v, OPTS)).toThrow(/'m' must be f32/);
    expect(() => adamwStep(p, g, m, p, OPTS)).toThrow(/'param' and 'v' .* overlap/);
    for (const bad of [{ step: 0 }, { step: 1.5 }, { beta1: 1 }, { beta2: -0.1 }, { lr: NaN }, { lr: -1 }, { eps: Infinity }, { weightDecay: -0.1 }, { gradScale: NaN }])
      expect(() => adamwStep(p, g, m, v, { ...OPTS, ...bad })).toThrow(/adamw_step: '(step|beta1|beta2|lr|eps|weightDecay|gradScale)'/);
    v.buffer.free();
    expect(() => adamwStep(p, g, m, v, OPTS)).toThrow(/freed/);
  });
  test("the C kernel rejects a bad step number itself (raw FFI)", () => {
    const be = getBackend();
    const x = be.tensor([4]);
    const p = x.ptr();
    expect(be.lib.tl_adamw_step(p, p, p, p, 4, 0.1, 0.9, 0.95, 1e-8, 0, 1, 0)).toBe(1);
    expect(be.lib.tl_last_error()).toContain("step t must be >= 1");
  });
});
