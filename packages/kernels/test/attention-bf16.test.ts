/**
 * tl_attention_forward_bf16 on the CPU (the twin the CUDA tensor-core kernel is checked against in
 * test/cuda/parity.test.ts): against a float64 reference on the same bf16 inputs, and misuse.
 */
import { describe, expect, test } from "bun:test";
import { attentionBackwardBf16, attentionForwardBf16, bf16ToNumber, getBackend, numberToBf16, ShapeError } from "@tinyllama/kernels";
import { mulberry32, randn, relErr } from "@tinyllama/testing";

const toBits = (xs: Float32Array) => Uint16Array.from(xs, (x) => numberToBf16(x));

/** float64 forward and, given dO (the bf16 values the kernel sees) and O (the kernel's bf16 output), backward. */
function reference(Q: Uint16Array, K: Uint16Array, V: Uint16Array, B: number, T: number, NH: number, NKV: number, HD: number, DO?: Uint16Array, O?: Uint16Array) {
  const q = Float64Array.from(Q, bf16ToNumber), k = Float64Array.from(K, bf16ToNumber), v = Float64Array.from(V, bf16ToNumber);
  const out = new Float64Array(q.length), lse = new Float64Array(B * NH * T), scale = 1 / Math.sqrt(HD);
  const dO = DO ? Float64Array.from(DO, bf16ToNumber) : null, o = O ? Float64Array.from(O, bf16ToNumber) : null;
  const dq = new Float64Array(q.length), dk = new Float64Array(k.length), dv = new Float64Array(v.length);
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
        const qi = ((b * T + t) * NH + h) * HD;
        for (let j = 0; j <= t; j++)
          for (let e = 0; e < HD; e++) out[qi + e] += (w[j]! / l) * v[((b * T + j) * NKV + g) * HD + e]!;
        if (!dO || !o) continue;
        let D = 0; // rowsum(dO * O) with the output the backward is given, as the kernels use it
        for (let e = 0; e < HD; e++) D += dO[qi + e]! * o[qi + e]!;
        for (let j = 0; j <= t; j++) {
          const ki = ((b * T + j) * NKV + g) * HD, P = w[j]! / l;
          let dP = 0;
          for (let e = 0; e < HD; e++) dP += dO[qi + e]! * v[ki + e]!;
          const dS = P * (dP - D);
          for (let e = 0; e < HD; e++) {
            dq[qi + e] += scale * dS * k[ki + e]!;
            dk[ki + e] += scale * dS * q[qi + e]!;
            dv[ki + e] += P * dO[qi + e]!;
          }
        }
      }
    }
  return { out, lse, dq, dk, dv };
}

describe("attention forward, bf16 inputs and output", () => {
  test("matches float64 on the same bf16 inputs: out to bf16 rounding, lse and gradients to fp32", () => {
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
      // backward: gradients accumulate into random starting values (the += rule)
      const DO = toBits(randn(B * T * NH * HD, rng)), dout = be.tensor([B, T, NH, HD], "bf16").write(DO);
      const G = { dq: randn(B * T * NH * HD, rng), dk: randn(B * T * NKV * HD, rng), dv: randn(B * T * NKV * HD, rng) };
      const dq = be.tensor([B, T, NH, HD]).write(G.dq), dk = be.tensor([B, T, NKV, HD]).write(G.dk), dv = be.tensor([B, T, NKV, HD]).write(G.dv);
      attentionBackwardBf16({ dq, dk, dv }, dout, q, k, v, out, lse);
      const g = reference(Q, K, V, B, T, NH, NKV, HD, DO, out.read() as Uint16Array);
      const minus = (a: Float32Array, b: Float32Array) => a.map((x, i) => x - b[i]!);
      expect(relErr(minus(dq.read() as Float32Array, G.dq), g.dq)).toBeLessThan(1e-4);
      expect(relErr(minus(dk.read() as Float32Array, G.dk), g.dk)).toBeLessThan(1e-4);
      expect(relErr(minus(dv.read() as Float32Array, G.dv), g.dv)).toBeLessThan(1e-4);
      for (const t of [q, k, v, out, lse, dout, dq, dk, dv]) t.buffer.free();
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
    const dq = be.tensor([1, 4, 2, 16]), dk = be.tensor([1, 4, 1, 16]), dv = be.tensor([1, 4, 1, 16]);
    expect(() => attentionBackwardBf16({ dq, dk, dv }, f32q, q, k, v, out, lse)).toThrow(/attention_backward_bf16: 'dout' must be bf16/);
    expect(() => attentionBackwardBf16({ dq: out, dk, dv }, out, q, k, v, out, lse)).toThrow(/'dq' must be f32/);
    expect(() => attentionBackwardBf16({ dq, dk: dv, dv }, out, q, k, v, out, lse)).toThrow(/overlap/);
  });
});
