/**
 * tl_attention_forward_bf16 on the CPU (the twin the CUDA tensor-core kernel is checked against in
 * test/cuda/parity.test.ts): against a float64 reference on the same bf16 inputs, and misuse.
 */
import { describe, expect, test } from "bun:test";
import { attentionForwardBf16, bf16ToNumber, getBackend, numberToBf16, ShapeError } from "@tinyllama/kernels";
import { mulberry32, randn, relErr } from "@tinyllama/testing";

const toBits = (xs: Float32Array) => Uint16Array.from(xs, (x) => numberToBf16(x));

function reference(Q: Uint16Array, K: Uint16Array, V: Uint16Array, B: number, T: number, NH: number, NKV: number, HD: number) {
  const q = Float64Array.from(Q, bf16ToNumber), k = Float64Array.from(K, bf16ToNumber), v = Float64Array.from(V, bf16ToNumber);
  const out = new Float64Array(q.length), lse = new Float64Array(B * NH * T), scale = 1 / Math.sqrt(HD);
  for (let b = 0; b < B; b++)
    for (let h = 0; h < NH; h++) {
      const g = Math.floor(h / (NH / NKV));
      for (let t = 0; t < T; t++) {
        const s: number[] = [];
        for (let j = 0; j <= t; j++) {
          let d = 0;
          for (let e = 0; e < HD; e++) d += q[((b * T + t) * NH + h) * HD + e]! * k[((b * T + j) * NKV + g) * HD + e]!;
          s.push(d * scale);
        }
        const m = Math.max(...s), w = s.map((x) => Math.exp(x - m)), l = w.reduce((a, c) => a + c, 0);
        lse[(b * NH + h) * T + t] = m + Math.log(l);
        for (let j = 0; j <= t; j++)
          for (let e = 0; e < HD; e++) out[((b * T + t) * NH + h) * HD + e] += (w[j]! / l) * v[((b * T + j) * NKV + g) * HD + e]!;
      }
    }
  return { out, lse };
}

describe("attention forward, bf16 inputs and output", () => {
  test("matches float64 on the same bf16 inputs (out to bf16 rounding, lse to fp32)", () => {
    const be = getBackend();
    for (const [B, T, NH, NKV, HD] of [[1, 1, 1, 1, 16], [2, 37, 4, 2, 64], [1, 70, 4, 1, 24]] as [number, number, number, number, number][]) {
      const rng = mulberry32(B * 1000 + T);
      const Q = toBits(randn(B * T * NH * HD, rng, 2)), K = toBits(randn(B * T * NKV * HD, rng, 2)), V = toBits(randn(B * T * NKV * HD, rng));
      const q = be.tensor([B, T, NH, HD], "bf16").write(Q), k = be.tensor([B, T, NKV, HD], "bf16").write(K), v = be.tensor([B, T, NKV, HD], "bf16").write(V);
      const out = be.tensor([B, T, NH, HD], "bf16"), lse = be.tensor([B, NH, T]);
      attentionForwardBf16(out, lse, q, k, v);
      const ref = reference(Q, K, V, B, T, NH, NKV, HD);
      const got = Float64Array.from(out.read() as Uint16Array, bf16ToNumber);
      expect(relErr(got, ref.out)).toBeLessThan(4e-3); // one bf16 rounding (2^-9 relative at most)
      expect(relErr(lse.read() as Float32Array, ref.lse)).toBeLessThan(1e-5);
      for (const t of [q, k, v, out, lse]) t.buffer.free();
    }
  });

  test("wrong dtypes and shapes are ShapeErrors naming the op", () => {
    const be = getBackend();
    const q = be.tensor([1, 4, 2, 16], "bf16"), k = be.tensor([1, 4, 1, 16], "bf16"), v = be.tensor([1, 4, 1, 16], "bf16");
    const out = be.tensor([1, 4, 2, 16], "bf16"), lse = be.tensor([1, 2, 4]);
    const f32q = be.tensor([1, 4, 2, 16]);
    expect(() => attentionForwardBf16(out, lse, f32q, k, v)).toThrow(ShapeError);
    expect(() => attentionForwardBf16(out, lse, f32q, k, v)).toThrow(/attention_forward_bf16: 'q' must be bf16/);
    expect(() => attentionForwardBf16(out, be.tensor([1, 2, 5]), q, k, v)).toThrow(/'lse'/);
    expect(() => attentionForwardBf16(out, lse, q, be.tensor([1, 4, 3, 16], "bf16"), be.tensor([1, 4, 3, 16], "bf16"))).toThrow(/multiple of kv heads/);
    expect(() => attentionForwardBf16(q, lse, q, k, v)).toThrow(/overlap/);
  });
});
