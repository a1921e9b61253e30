import { describe, expect, setDefaultTimeout, test } from "bun:test";
import { getBackend, openBackend, ropeBackward, ropeForward, ropeTables, ShapeError, type Backend } from "@tinyllama/kernels";
import { dot, finiteDiff, mulberry32, randn, relErr } from "@tinyllama/testing";

// The first test compiles the kernel library (twice with the portable build): far beyond bun's 5 s default on a busy machine.
setDefaultTimeout(300_000);

/** The tables exactly as Hugging Face builds them in fp32 (each rounding where PyTorch rounds). */
function tablesRef(maxT: number, HD: number, theta: number): { cos: Float32Array; sin: Float32Array } {
  const H2 = HD / 2, f = Math.fround;
  const cos = new Float32Array(maxT * H2), sin = new Float32Array(maxT * H2);
  for (let i = 0; i < H2; i++) {
    const inv = f(1 / f(Math.pow(theta, f((2 * i) / HD))));
    for (let t = 0; t < maxT; t++) {
      const a = f(t * inv);
      cos[t * H2 + i] = Math.cos(a);
      sin[t * H2 + i] = Math.sin(a);
    }
  }
  return { cos, sin };
}

/** float64 rotate-half RoPE over (B,T,NH,HD) at positions pos0.. */
function ropeRef(x: ArrayLike<number>, cos: ArrayLike<number>, sin: ArrayLike<number>, B: number, T: number, NH: number, HD: number, pos0: number): Float64Array {
  const H2 = HD / 2, out = new Float64Array(B * T * NH * HD);
  for (let b = 0; b < B; b++)
    for (let t = 0; t < T; t++)
      for (let h = 0; h < NH; h++) {
        const o = ((b * T + t) * NH + h) * HD, r = (pos0 + t) * H2;
        for (let i = 0; i < H2; i++) {
          const x1 = x[o + i]!, x2 = x[o + i + H2]!, c = cos[r + i]!, s = sin[r + i]!;
          out[o + i] = x1 * c - x2 * s;
          out[o + i + H2] = x2 * c + x1 * s;
        }
      }
  return out;
}

function checkRope(be: Backend, seed: number) {
  const rng = mulberry32(seed);
  for (const [B, T, NH, HD, pos0, maxT] of [
    [1, 1, 1, 2, 0, 1], [2, 7, 3, 8, 0, 7], [2, 5, 4, 48, 11, 16], [1, 33, 2, 64, 0, 2048], [3, 4, 5, 6, 2044, 2048],
  ] as const) {
    const cos = be.tensor([maxT, HD / 2]), sin = be.tensor([maxT, HD / 2]);
    ropeTables(cos, sin, 10000);
    const ref = tablesRef(maxT, HD, 10000);
    expect(relErr(cos.read(), ref.cos)).toBeLessThan(1e-7);
    expect(relErr(sin.read(), ref.sin)).toBeLessThan(1e-7);
    const n = B * T * NH * HD;
    const x = randn(n, rng), dout = randn(n, rng);
    const tx = be.fromArray(x, [B, T, NH, HD]), out = be.tensor([B, T, NH, HD]);
    ropeForward(out, tx, cos, sin, pos0);
    const want = ropeRef(x, ref.cos, ref.sin, B, T, NH, HD, pos0);
    expect(relErr(out.read(), want)).toBeLessThan(1e-6);
    // in place (out aliases inp) gives the same result
    ropeForward(tx, tx, cos, sin, pos0);
    expect(relErr(tx.read(), want)).toBeLessThan(1e-6);
    // backward accumulates R^T dout on top of what dinp holds
    const dinp = be.fromArray(new Float32Array(n).fill(0.5), [B, T, NH, HD]);
    ropeBackward(dinp, be.fromArray(dout, [B, T, NH, HD]), cos, sin, pos0);
    const fd = finiteDiff((xx) => dot(ropeRef(xx, ref.cos, ref.sin, B, T, NH, HD, pos0), dout), x, 1e-3);
    expect(relErr(dinp.read().map((v) => v - 0.5), fd)).toBeLessThan(1e-5);
  }
}

describe("rope", () => {
  test("tables match HF's fp32 construction; forward, in-place forward and backward (vs float64 finite differences)", () => {
    checkRope(getBackend(), 1);
  });
  test("the portable (non-AVX-512) build is also correct", () => {
    checkRope(openBackend({ device: "cpu", arch: "x86-64" }), 2);
  });
  test("tables agree with the exact double formula at small positions", () => {
    const be = getBackend();
    const cos = be.tensor([8, 4]), sin = be.tensor([8, 4]);
    ropeTables(cos, sin, 10000);
    const c = cos.read(), s = sin.read();
    for (let t = 0; t < 8; t++)
      for (let i = 0; i < 4; i++) {
        expect(Math.abs(c[t * 4 + i]! - Math.cos(t * Math.pow(10000, -(2 * i) / 8)))).toBeLessThan(1e-6);
        expect(Math.abs(s[t * 4 + i]! - Math.sin(t * Math.pow(10000, -(2 * i) / 8)))).toBeLessThan(1e-6);
      }
  });
  test("misuse throws a ShapeError naming the op, never crashes", () => {
    const be = getBackend();
    const cos = be.tensor([16, 4]), sin = be.tensor([16, 4]);
    ropeTables(cos, sin, 10000);
    const x = be.tensor([1, 4, 2, 8]), out = be.tensor([1, 4, 2, 8]);
    expect(() => ropeForward(out, x, cos, sin, 13)).toThrow(/rope_forward.*exceed/);
    expect(() => ropeForward(out, x, cos, sin, -1)).toThrow(ShapeError);
    expect(() => ropeForward(out, be.tensor([1, 4, 2, 6]), cos, sin)).toThrow(/rope_forward.*\[16, 4\]/);
    expect(() => ropeForward(be.tensor([1, 4, 3, 8]), x, cos, sin)).toThrow(/rope_forward.*\[1, 4, 3, 8\].*\[1, 4, 2, 8\]/);
    expect(() => ropeForward(out, be.tensor([4, 2, 8]), cos, sin)).toThrow(/4-D/);
    expect(() => ropeForward(out, x, cos, be.tensor([16, 3]))).toThrow(ShapeError);
    expect(() => ropeTables(be.tensor([4, 3]), be.tensor([4, 3]), 0)).toThrow(/theta/);
    expect(() => ropeBackward(x, x, cos, sin)).toThrow(/overlaps/);
    const big = be.tensor([2, 4, 2, 8]);
    expect(() => ropeForward(big.view([4, 4, 2, 4]).rows(1, 2).view([1, 4, 2, 8]), big.view([8, 1, 2, 8]).rows(0, 4).view([1, 4, 2, 8]), cos, sin)).toThrow(/partly overlaps/);
    expect(() => ropeForward(out, be.tensor([1, 4, 2, 8], "i32"), cos, sin)).toThrow(/f32/);
    const freed = be.tensor([1, 4, 2, 8]);
    freed.buffer.free();
    expect(() => ropeForward(out, freed, cos, sin)).toThrow(/freed/);
    expect(() => ropeBackward(freed, out, cos, sin)).toThrow(/freed/);
  });
  test("the C kernel validates its arguments too", () => {
    const be = getBackend();
    const t = be.tensor([64]);
    expect(be.lib.tl_rope_forward(t.ptr(), t.ptr(), t.ptr(), t.ptr(), 1, 2, 1, 3, 0, 8)).not.toBe(0); // odd HD
    expect(be.lib.tl_rope_forward(t.ptr(), t.ptr(), t.ptr(), t.ptr(), 1, 4, 1, 4, 6, 8)).not.toBe(0); // pos0+T > maxT
    expect(be.lib.tl_rope_forward(t.ptr(), t.ptr(), t.ptr(), t.ptr(), 0, 4, 1, 4, 0, 8)).not.toBe(0); // B = 0
    expect(be.lib.tl_rope_tables(t.ptr(), t.ptr(), 4, 4, -1)).not.toBe(0);
    expect(be.lib.tl_rope_forward(t.ptr(), t.ptr(), t.ptr(), t.ptr(), 1, 2, 1, 4, 0, 8)).toBe(0);
  });
});
