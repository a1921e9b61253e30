import { describe, expect, test } from "bun:test";
import {
  ShapeError,
  adamwStepBf16,
  bf16ToNumber,
  castBf16ToF32,
  castF32ToBf16,
  getBackend,
  matmulBackwardBf16,
  matmulBackwardBf16FromF32,
  matmulForward,
  openBackend,
  matmulForwardBf16,
  numberToBf16,
  type Backend,
  type Tensor,
} from "@tinyllama/kernels";
import { mulberry32, randn, relErr } from "@tinyllama/testing";

function bf16Tensor(be: Backend, bits: Uint16Array, shape: number[]): Tensor {
  return be.tensor(shape, "bf16").write(bits);
}
function toBf16(x: Float32Array): Uint16Array {
  return Uint16Array.from(x, (v) => numberToBf16(v));
}
function fromBf16(bits: Uint16Array): Float64Array {
  return Float64Array.from(bits, (b) => bf16ToNumber(b));
}

describe("bf16 casts", () => {
  test("fp32 -> bf16 rounds to nearest even, keeps NaN/inf, and bf16 -> fp32 is exact", () => {
    const be = getBackend();
    // 1 + 2^-8 is exactly halfway between bf16 1 and 1 + 2^-7: ties go to the even mantissa (1).
    // 1 + 3*2^-8 is halfway between 1 + 2^-7 (odd) and 1 + 2^-6 (even): rounds up.
    const cases: [number, number][] = [
      [1, 0x3f80], [1 + 2 ** -8, 0x3f80], [1 + 3 * 2 ** -8, 0x3f82], [1 + 2 ** -8 + 2 ** -20, 0x3f81],
      [-2.5, 0xc020], [0, 0], [-0, 0x8000], [Infinity, 0x7f80], [-Infinity, 0xff80], [NaN, 0x7fff],
      [3.4e38, 0x7f80] /* rounds past the largest bf16 to inf */, [1e-40, 0x0001] /* fp32 subnormal */,
    ];
    const inp = be.fromArray(Float32Array.from(cases, (c) => c[0]));
    const out = be.tensor([cases.length], "bf16");
    castF32ToBf16(out, inp);
    expect(Array.from(out.read())).toEqual(cases.map((c) => c[1]));
    // random values agree with the TypeScript reference bit for bit, and widen back exactly
    const x = randn(4099, mulberry32(5), 3);
    const xt = be.fromArray(x), bt = be.tensor([4099], "bf16"), back = be.tensor([4099]);
    castF32ToBf16(bt, xt);
    const bits = bt.read() as Uint16Array;
    expect(Array.from(bits)).toEqual(Array.from(toBf16(x)));
    castBf16ToF32(back, bt);
    expect(Array.from(back.read())).toEqual(Array.from(fromBf16(bits)));
    expect(relErr(back.read(), x)).toBeLessThan(4e-3); // bf16 keeps 8 significant bits
  });

  test("wrappers reject wrong dtypes and lengths", () => {
    const be = getBackend();
    expect(() => castF32ToBf16(be.tensor([4]), be.tensor([4]))).toThrow(ShapeError);
    expect(() => castF32ToBf16(be.tensor([3], "bf16"), be.tensor([4]))).toThrow(ShapeError);
    expect(() => castBf16ToF32(be.tensor([4]), be.tensor([4]))).toThrow(ShapeError);
  });
});

describe("bf16 matmul", () => {
  const SHAPES: [number, number, number][] = [[1, 1, 1], [3, 17, 5], [37, 64, 96], [16, 513, 7]];
  test("forward and backward match a float64 reference on the bf16 inputs", () => {
    const be = getBackend();
    const rng = mulberry32(11);
    for (const [N, C, OC] of SHAPES) {
      const x = toBf16(randn(N * C, rng)), w = toBf16(randn(OC * C, rng)), dout = toBf16(randn(N * OC, rng));
      const dinp0 = toBf16(randn(N * C, rng));
      const xd = fromBf16(x), wd = fromBf16(w), dd = fromBf16(dout), d0 = fromBf16(dinp0);
      const ref = new Float64Array(N * OC), rdx = new Float64Array(N * C), rdw = new Float64Array(OC * C);
      for (let n = 0; n < N; n++)
        for (let o = 0; o < OC; o++) {
          let acc = 0;
          for (let c = 0; c < C; c++) acc += xd[n * C + c]! * wd[o * C + c]!;
          ref[n * OC + o] = acc;
          const g = dd[n * OC + o]!;
          for (let c = 0; c < C; c++) {
            rdx[n * C + c] += g * wd[o * C + c]!;
            rdw[o * C + c] += g * xd[n * C + c]!;
          }
        }
      for (let i = 0; i < rdx.length; i++) rdx[i] += d0[i]!;
      const tx = bf16Tensor(be, x, [N, C]), tw = bf16Tensor(be, w, [OC, C]), out = be.tensor([N, OC], "bf16");
      matmulForwardBf16(out, tx, tw);
      // fp32 accumulation, one rounding to bf16: error ~2^-9 relative; 5e-3 is tight enough to catch a bf16 accumulator
      expect(relErr(fromBf16(out.read() as Uint16Array), ref)).toBeLessThan(5e-3);
      const dx = bf16Tensor(be, dinp0, [N, C]);
      const dw = be.fromArray(new Float32Array(OC * C).fill(0.5), [OC, C]);
      matmulBackwardBf16({ dinp: dx, dweight: dw }, bf16Tensor(be, dout, [N, OC]), tx, tw);
      expect(relErr(fromBf16(dx.read() as Uint16Array), rdx)).toBeLessThan(5e-3);
      // products of bf16 values are exact in fp32, so the fp32 master gradient is fp32-accurate
      expect(relErr(Float64Array.from(dw.read(), (v) => v - 0.5), rdw)).toBeLessThan(1e-5);
    }
  });

  test("null gradients are skipped and bad shapes throw", () => {
    const be = getBackend();
    const x = bf16Tensor(be, toBf16(randn(12, mulberry32(3))), [3, 4]), w = bf16Tensor(be, toBf16(randn(8, mulberry32(4))), [2, 4]);
    const dw = be.tensor([2, 4]);
    matmulBackwardBf16({ dweight: dw }, bf16Tensor(be, toBf16(new Float32Array(6).fill(1)), [3, 2]), x, w);
    expect(dw.read().some((v) => v !== 0)).toBe(true);
    expect(() => matmulForwardBf16(be.tensor([3, 3], "bf16"), x, w)).toThrow(ShapeError);
    expect(() => matmulForwardBf16(be.tensor([3, 2], "i32"), x, w)).toThrow(/'out' must be bf16 or f32/);
    expect(() => matmulForwardBf16(be.tensor([3, 3]), x, w)).toThrow(ShapeError); // f32 out, wrong shape
    expect(() => matmulBackwardBf16({ dinp: be.tensor([3, 4], "i32") }, be.tensor([3, 2], "bf16"), x, w)).toThrow(/'dinp' must be bf16 or f32/);
    expect(() => matmulBackwardBf16({ dweight: be.tensor([2, 4], "bf16") }, be.tensor([3, 2], "bf16"), x, w)).toThrow(ShapeError);
  });
});

describe("bf16 matmul with fp32 results (the model's bf16 mode)", () => {
  // Crossing the AVX512_BF16 kernel's edges: 12-row / 32-column tiles, 512-deep k slices, odd k.
  const SHAPES: [number, number, number][] = [[1, 1, 1], [2, 3, 1], [13, 33, 31], [25, 513, 65], [40, 1100, 70], [7, 64, 2000]];
  function refs(N: number, C: number, OC: number, seed: number) {
    const rng = mulberry32(seed);
    const x = toBf16(randn(N * C, rng)), w = toBf16(randn(OC * C, rng)), dout = toBf16(randn(N * OC, rng));
    const xd = fromBf16(x), wd = fromBf16(w), dd = fromBf16(dout);
    const out = new Float64Array(N * OC), dx = new Float64Array(N * C).fill(0.25), dw = new Float64Array(OC * C).fill(-0.5);
    for (let n = 0; n < N; n++)
      for (let o = 0; o < OC; o++) {
        let acc = 0;
        const g = dd[n * OC + o]!;
        for (let c = 0; c < C; c++) {
          acc += xd[n * C + c]! * wd[o * C + c]!;
          dx[n * C + c] += g * wd[o * C + c]!;
          dw[o * C + c] += g * xd[n * C + c]!;
        }
        out[n * OC + o] = acc;
      }
    return { x, w, dout, out, dx, dw };
  }
  function run(be: Backend, N: number, C: number, OC: number, r: ReturnType<typeof refs>) {
    const tx = bf16Tensor(be, r.x, [N, C]), tw = bf16Tensor(be, r.w, [OC, C]), out = be.tensor([N, OC]);
    matmulForwardBf16(out, tx, tw);
    const dx = be.fromArray(new Float32Array(N * C).fill(0.25), [N, C]), dw = be.fromArray(new Float32Array(OC * C).fill(-0.5), [OC, C]);
    matmulBackwardBf16({ dinp: dx, dweight: dw }, bf16Tensor(be, r.dout, [N, OC]), tx, tw);
    const res = { out: out.read() as Float32Array, dx: dx.read() as Float32Array, dw: dw.read() as Float32Array };
    for (const t of [tx, tw, out, dx, dw]) t.buffer.free();
    return res;
  }

  test("forward, dinp (+=) and dweight (+=) match a float64 reference on the bf16 inputs to fp32 accuracy", () => {
    const be = getBackend();
    SHAPES.forEach(([N, C, OC], i) => {
      const r = refs(N, C, OC, 100 + i);
      const got = run(be, N, C, OC, r);
      // fp32 accumulation of exact products: ~1e-7 relative; a bf16 rounding anywhere would be ~1e-3
      expect(relErr(got.out, r.out)).toBeLessThan(1e-5);
      expect(relErr(got.dx, r.dx)).toBeLessThan(1e-5);
      expect(relErr(got.dw, r.dw)).toBeLessThan(1e-5);
    });
  });

  test("this CPU's kernel (AVX512_BF16 where the CPU has it) agrees with the portable build and the fp32 GEMM on widened inputs", () => {
    const native = getBackend(), portable = openBackend({ device: "cpu", arch: "x86-64" });
    const [N, C, OC] = [50, 700, 90];
    const r = refs(N, C, OC, 7);
    const a = run(native, N, C, OC, r), b = run(portable, N, C, OC, r);
    for (const k of ["out", "dx", "dw"] as const) expect(relErr(a[k], b[k])).toBeLessThan(1e-6);
    // the fp32 matmul on the widened operands is the same math
    const xf = native.tensor([N, C]), wf = native.tensor([OC, C]), of = native.tensor([N, OC]);
    castBf16ToF32(xf, bf16Tensor(native, r.x, [N, C]));
    castBf16ToF32(wf, bf16Tensor(native, r.w, [OC, C]));
    matmulForward(of, xf, wf);
    expect(relErr(a.out, of.read())).toBeLessThan(1e-6);
  });

  test("bit-for-bit identical for 1 and 2 threads", () => {
    const be = getBackend();
    const before = be.threads;
    const [N, C, OC] = [61, 530, 77];
    const r = refs(N, C, OC, 9);
    try {
      be.threads = 1;
      const one = run(be, N, C, OC, r);
      be.threads = 2;
      const two = run(be, N, C, OC, r);
      for (const k of ["out", "dx", "dw"] as const) expect(Buffer.from(one[k].buffer).equals(Buffer.from(two[k].buffer))).toBe(true);
    } finally {
      be.threads = before;
    }
  });
});

describe("bf16 Linear backward from an fp32 output gradient", () => {
  test("equals rounding dout to bf16 and calling matmulBackwardBf16; a short or fp32 scratch throws", () => {
    const be = getBackend();
    const N = 5, C = 33, OC = 7, rng = mulberry32(77);
    const x = bf16Tensor(be, toBf16(randn(N * C, rng)), [N, C]), w = bf16Tensor(be, toBf16(randn(OC * C, rng)), [OC, C]);
    const G = randn(N * OC, rng), dout = be.fromArray(G, [N, OC]);
    const dx = be.fromArray(new Float32Array(N * C).fill(0.5), [N, C]), dw = be.fromArray(new Float32Array(OC * C), [OC, C]);
    matmulBackwardBf16FromF32({ dinp: dx, dweight: dw }, dout, x, w, be.tensor([2 * N * OC], "bf16"));
    const dx2 = be.fromArray(new Float32Array(N * C).fill(0.5), [N, C]), dw2 = be.fromArray(new Float32Array(OC * C), [OC, C]);
    matmulBackwardBf16({ dinp: dx2, dweight: dw2 }, bf16Tensor(be, toBf16(G), [N, OC]), x, w);
    expect(Array.from(dx.read() as Float32Array)).toEqual(Array.from(dx2.read() as Float32Array));
    expect(Array.from(dw.read() as Float32Array)).toEqual(Array.from(dw2.read() as Float32Array));
    expect(() => matmulBackwardBf16FromF32({ dinp: dx }, dout, x, w, be.tensor([N * OC - 1], "bf16"))).toThrow(/'scratch' .* fewer than the 35 elements/);
    expect(() => matmulBackwardBf16FromF32({ dinp: dx }, dout, x, w, be.tensor([N * OC]))).toThrow(ShapeError);
  });
});

describe("bf16 AdamW", () => {
  test("updates fp32 master weights like PyTorch AdamW and writes their bf16 copy", () => {
    const be = getBackend();
    const N = 1000, rng = mulberry32(21);
    const p0 = randn(N, rng), grads = [randn(N, rng), randn(N, rng), randn(N, rng)];
    const o = { lr: 1e-2, beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1, gradScale: 0.5 };
    // float64 reference
    const p = Float64Array.from(p0), m = new Float64Array(N), v = new Float64Array(N);
    const param = be.fromArray(p0), pb = be.tensor([N], "bf16"), mt = be.tensor([N]), vt = be.tensor([N]);
    for (let t = 1; t <= 3; t++) {
      const g32 = grads[t - 1]!;
      for (let i = 0; i < N; i++) {
        const g = g32[i]! * o.gradScale;
        m[i] = o.beta1 * m[i]! + (1 - o.beta1) * g;
        v[i] = o.beta2 * v[i]! + (1 - o.beta2) * g * g;
        p[i] -= o.lr * o.weightDecay * p[i]!;
        p[i] -= (o.lr * (m[i]! / (1 - o.beta1 ** t))) / (Math.sqrt(v[i]! / (1 - o.beta2 ** t)) + o.eps);
      }
      adamwStepBf16(param, pb, be.fromArray(g32), mt, vt, { ...o, step: t });
    }
    const got = param.read() as Float32Array;
    expect(relErr(got, p)).toBeLessThan(1e-5);
    expect(relErr(mt.read(), m)).toBeLessThan(1e-5);
    expect(relErr(vt.read(), v)).toBeLessThan(1e-5);
    expect(Array.from(pb.read())).toEqual(Array.from(toBf16(got)));
  });

  test("rejects a bad step, mismatched lengths and dtypes", () => {
    const be = getBackend();
    const a = () => be.tensor([4]);
    const o = { lr: 1e-3, beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0 };
    expect(() => adamwStepBf16(a(), be.tensor([4], "bf16"), a(), a(), a(), { ...o, step: 0 })).toThrow(ShapeError);
    expect(() => adamwStepBf16(a(), be.tensor([3], "bf16"), a(), a(), a(), { ...o, step: 1 })).toThrow(ShapeError);
    expect(() => adamwStepBf16(a(), a(), a(), a(), a(), { ...o, step: 1 })).toThrow(ShapeError);
  });
});
