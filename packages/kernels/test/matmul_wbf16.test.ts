import { describe, expect, test } from "bun:test";
import {
  ShapeError,
  bf16ToNumber,
  getBackend,
  matmulForward,
  matmulForwardWbf16,
  numberToBf16,
  openBackend,
  type Backend,
} from "@tinyllama/kernels";
import { mulberry32, randn, relErr } from "@tinyllama/testing";

// The first test of a build compiles the kernel library (tens of seconds on a busy machine).
const BUILD_TIMEOUT = 300_000;
const BUILDS: [string, () => Backend][] = [
  ["native", () => getBackend()],
  ["AVX2 x86-64-v3", () => openBackend({ device: "cpu", arch: "x86-64-v3" })],
  ["portable x86-64", () => openBackend({ device: "cpu", arch: "x86-64" })],
];

/** Weights as bf16 bits and the same values widened back to f32 (what the kernel must multiply by). */
function bf16Weights(w: Float32Array): { bits: Uint16Array; rounded: Float32Array } {
  const bits = Uint16Array.from(w, (v) => numberToBf16(v));
  return { bits, rounded: Float32Array.from(bits, (b) => bf16ToNumber(b)) };
}

/** float64 reference of inp @ rounded^T. */
function reference(x: Float32Array, w: Float32Array, N: number, C: number, OC: number): Float64Array {
  const out = new Float64Array(N * OC);
  for (let n = 0; n < N; n++)
    for (let o = 0; o < OC; o++) {
      let acc = 0;
      for (let c = 0; c < C; c++) acc += x[n * C + c]! * w[o * C + c]!;
      out[n * OC + o] = acc;
    }
  return out;
}

// N = 1..4 take the matrix-vector path (C >= 1024 groups rows by 4), larger N the packed GEMM;
// odd sizes hit every masked tail (C % 16, OC % 4, OC % NR, N % MR).
const SHAPES: [number, number, number][] = [
  [1, 1, 1], [1, 37, 5], [1, 288, 768], [1, 1030, 13], [2, 1024, 70], [3, 17, 33], [4, 1100, 9],
  [5, 64, 64], [7, 300, 45], [15, 288, 288], [29, 513, 97], [32, 256, 1000], [170, 40, 33],
];

for (const [name, open] of BUILDS) {
  describe(`matmul_forward_wbf16 (${name} build)`, () => {
    test("equals the fp32 matmul on bf16-rounded weights (< 1e-6) and a float64 reference (< 1e-5)", () => {
      const be = open();
      const rng = mulberry32(7);
      for (const [N, C, OC] of SHAPES) {
        const x = randn(N * C, rng), w = randn(OC * C, rng, 0.5);
        const { bits, rounded } = bf16Weights(w);
        const inp = be.fromArray(x, [N, C]), wb = be.tensor([OC, C], "bf16").write(bits), wf = be.fromArray(rounded, [OC, C]);
        const out = be.tensor([N, OC]), want = be.tensor([N, OC]);
        matmulForwardWbf16(out, inp, wb);
        matmulForward(want, inp, wf);
        const got = out.read();
        expect(relErr(got, want.read())).toBeLessThan(1e-6);
        expect(relErr(got, reference(x, rounded, N, C, OC))).toBeLessThan(1e-5);
        // The test can fail: the unrounded weights give a result ~1e-3 away.
        if (C > 16) expect(relErr(got, reference(x, w, N, C, OC))).toBeGreaterThan(1e-4);
        for (const t of [inp, wb, wf, out, want]) t.buffer.free();
      }
    }, BUILD_TIMEOUT);

    test("is deterministic across thread counts (1 vs 2 threads, bit for bit)", () => {
      const be = open();
      const before = be.threads;
      const [N, C, OC] = [9, 1040, 300];
      const x = randn(N * C, mulberry32(3)), { bits } = bf16Weights(randn(OC * C, mulberry32(4)));
      const inp = be.fromArray(x, [N, C]), wb = be.tensor([OC, C], "bf16").write(bits);
      const runs: Float32Array[] = [];
      for (const threads of [1, 2])
        for (const rows of [1, N]) {
          be.threads = threads;
          const out = be.tensor([rows, OC]);
          matmulForwardWbf16(out, inp.view([N, C]).rows(0, rows), wb);
          runs.push(out.read());
          out.buffer.free();
        }
      be.threads = before;
      expect(Array.from(runs[2]!)).toEqual(Array.from(runs[0]!));
      expect(Array.from(runs[3]!)).toEqual(Array.from(runs[1]!));
    }, BUILD_TIMEOUT);
  });
}

describe("matmul_forward_wbf16 misuse", () => {
  const be = getBackend();
  const inp = be.tensor([2, 8]), out = be.tensor([2, 4]), w = be.tensor([4, 8], "bf16");
  test("wrong dtypes name the tensor and the dtype", () => {
    expect(() => matmulForwardWbf16(out, inp, be.tensor([4, 8]))).toThrow(/'weight' must be bf16.*matmulForward/);
    expect(() => matmulForwardWbf16(out, be.tensor([2, 8], "bf16"), w)).toThrow(/'inp' must be f32/);
    expect(() => matmulForwardWbf16(be.tensor([2, 4], "bf16"), inp, w)).toThrow(/'out' must be f32/);
  });
  test("wrong shapes throw ShapeError naming the op and both shapes", () => {
    expect(() => matmulForwardWbf16(out, be.tensor([2, 7]), w)).toThrow(ShapeError);
    expect(() => matmulForwardWbf16(out, be.tensor([2, 7]), w)).toThrow(/matmul_forward_wbf16: 'inp' \[2, 7\].*'weight' \[4, 8\]/);
    expect(() => matmulForwardWbf16(be.tensor([2, 5]), inp, w)).toThrow(/'out' must have shape \[2, 4\], got \[2, 5\]/);
    expect(() => matmulForwardWbf16(out, inp, be.tensor([32], "bf16"))).toThrow(/'weight' must be 2-D/);
  });
  test("a freed buffer and another backend are errors, not crashes", () => {
    const dead = be.tensor([4, 8], "bf16");
    dead.buffer.free();
    expect(() => matmulForwardWbf16(out, inp, dead)).toThrow(/freed/);
    const other = openBackend({ device: "cpu", arch: "x86-64" });
    expect(() => matmulForwardWbf16(out, inp, other.tensor([4, 8], "bf16"))).toThrow(/another backend/);
  }, BUILD_TIMEOUT);
  test("the C kernel rejects NULL pointers and non-positive sizes with an error code", () => {
    const lib = be.lib;
    expect(lib.tl_matmul_forward_wbf16(null, inp.ptr(), w.ptr(), 2, 8, 4)).toBe(1);
    expect(String(lib.tl_last_error())).toMatch(/NULL pointer/);
    expect(lib.tl_matmul_forward_wbf16(out.ptr(), inp.ptr(), w.ptr(), 0, 8, 4)).toBe(1);
    expect(String(lib.tl_last_error())).toMatch(/sizes must be positive/);
  });
  test("empty shapes are no-ops; C = 0 gives zeros", () => {
    matmulForwardWbf16(be.tensor([0, 4]), be.tensor([0, 8]), w);
    const o = be.fromArray(new Float32Array(6).fill(5), [2, 3]);
    matmulForwardWbf16(o, be.tensor([2, 0]), be.tensor([3, 0], "bf16"));
    expect(Array.from(o.read())).toEqual([0, 0, 0, 0, 0, 0]);
  });
});
