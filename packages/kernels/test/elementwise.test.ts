import { describe, expect, test } from "bun:test";
import { accumulate, add, getBackend, openBackend, scale, type Backend } from "@tinyllama/kernels";
import { mulberry32, finiteDiff, randn, relErr } from "@tinyllama/testing";

const BACKENDS: [string, () => Backend][] = [
  ["native", () => getBackend()],
  ["portable x86-64", () => openBackend({ device: "cpu", arch: "x86-64" })],
];

describe("elementwise", () => {
  for (const [label, open] of BACKENDS) {
    test(`${label}: add / accumulate / scale are exact, aliasing allowed`, () => {
      const be = open();
      for (const N of [1, 17, 300_001]) {
        const rng = mulberry32(N);
        const a = randn(N, rng), b = randn(N, rng);
        const ta = be.fromArray(a), tb = be.fromArray(b), out = be.tensor([N]);
        add(out, ta, tb);
        expect(out.read()).toEqual(a.map((v, i) => v + b[i]!));
        add(ta, ta, tb); // out aliases a
        expect(ta.read()).toEqual(a.map((v, i) => v + b[i]!));
        accumulate(tb, out);
        expect(tb.read()).toEqual(b.map((v, i) => v + Math.fround(a[i]! + b[i]!)));
        scale(out, 0.5);
        expect(out.read()).toEqual(a.map((v, i) => Math.fround(v + b[i]!) * 0.5));
      }
    }, 300_000);

    test(`${label}: the residual's backward (accumulate) matches finite differences of add`, () => {
      const be = open();
      const N = 9, rng = mulberry32(4);
      const a = randn(N, rng), b = randn(N, rng), dout = randn(N, rng);
      // L = sum((a + b) * dout): dL/da = dout; the model's residual backward is accumulate(da, dout)
      const L = (x: Float64Array) => x.reduce((s, v, i) => s + (v + b[i]!) * dout[i]!, 0);
      const da = be.tensor([N]);
      accumulate(da, be.fromArray(dout));
      expect(relErr(da.read(), finiteDiff(L, a))).toBeLessThan(1e-4);
      // scale's gradient is itself scaled: d/dx sum(s*x*dout) = s*dout
      const g = be.fromArray(dout);
      scale(g, 3);
      const Ls = (x: Float64Array) => x.reduce((s, v, i) => s + 3 * v * dout[i]!, 0);
      expect(relErr(g.read(), finiteDiff(Ls, a))).toBeLessThan(1e-4);
    }, 300_000);
  }

  test("misuse throws a ShapeError naming the op", () => {
    const be = getBackend();
    expect(() => add(be.tensor([4]), be.tensor([4]), be.tensor([5]))).toThrow(/add: 'b'/);
    expect(() => accumulate(be.tensor([4]), be.tensor([3]))).toThrow(/accumulate: 'src'/);
    expect(() => scale(be.tensor([4], "i32"), 2)).toThrow(/scale: 'x' must be f32/);
    expect(() => scale(be.tensor([4]), Number.NaN)).toThrow(/scale/);
  }, 300_000);
});
