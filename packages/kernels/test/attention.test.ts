import { describe, expect, setDefaultTimeout, test } from "bun:test";
import { attentionBackward, attentionForward, getBackend, openBackend, ShapeError, type Backend } from "@tinyllama/kernels";
import { dot, finiteDiff, mulberry32, randn, relErr } from "@tinyllama/testing";

// The first test compiles the kernel library (twice with the portable build): far beyond bun's 5 s default on a busy machine.
setDefaultTimeout(300_000);

type Dims = [B: number, T: number, NH: number, NKV: number, HD: number];

/** float64 causal GQA attention: out (B,T,NH,HD), lse (B,NH,T), and the probabilities per (b,h). */
function attnRef(q: ArrayLike<number>, k: ArrayLike<number>, v: ArrayLike<number>, [B, T, NH, NKV, HD]: Dims) {
  const out = new Float64Array(B * T * NH * HD), lse = new Float64Array(B * NH * T);
  const P = new Float64Array(B * NH * T * T);
  const scale = 1 / Math.sqrt(HD), G = NH / NKV;
  const qi = (b: number, t: number, h: number) => ((b * T + t) * NH + h) * HD;
  const ki = (b: number, t: number, h: number) => ((b * T + t) * NKV + h) * HD;
  for (let b = 0; b < B; b++)
    for (let h = 0; h < NH; h++) {
      const kh = Math.floor(h / G);
      for (let i = 0; i < T; i++) {
        const s = new Float64Array(i + 1);
        let mx = -Infinity;
        for (let j = 0; j <= i; j++) {
          let acc = 0;
          for (let d = 0; d < HD; d++) acc += q[qi(b, i, h) + d]! * k[ki(b, j, kh) + d]!;
          s[j] = acc * scale;
          mx = Math.max(mx, s[j]!);
        }
        let sum = 0;
        for (let j = 0; j <= i; j++) sum += Math.exp(s[j]! - mx);
        lse[(b * NH + h) * T + i] = mx + Math.log(sum);
        const prow = ((b * NH + h) * T + i) * T;
        for (let j = 0; j <= i; j++) {
          const p = Math.exp(s[j]! - mx) / sum;
          P[prow + j] = p;
          for (let d = 0; d < HD; d++) out[qi(b, i, h) + d] += p * v[ki(b, j, kh) + d]!;
        }
      }
    }
  return { out, lse, P };
}

/** Analytic float64 backward (itself checked against finite differences below). */
function attnBackwardRef(dout: ArrayLike<number>, q: ArrayLike<number>, k: ArrayLike<number>, v: ArrayLike<number>, dims: Dims) {
  const [B, T, NH, NKV, HD] = dims;
  const { P } = attnRef(q, k, v, dims);
  const dq = new Float64Array(q.length), dk = new Float64Array(k.length), dv = new Float64Array(v.length);
  const scale = 1 / Math.sqrt(HD), G = NH / NKV;
  const qi = (b: number, t: number, h: number) => ((b * T + t) * NH + h) * HD;
  const ki = (b: number, t: number, h: number) => ((b * T + t) * NKV + h) * HD;
  for (let b = 0; b < B; b++)
    for (let h = 0; h < NH; h++) {
      const kh = Math.floor(h / G);
      for (let i = 0; i < T; i++) {
        const prow = ((b * NH + h) * T + i) * T;
        const dP = new Float64Array(i + 1);
        let Di = 0;
        for (let j = 0; j <= i; j++) {
          let acc = 0;
          for (let d = 0; d < HD; d++) acc += dout[qi(b, i, h) + d]! * v[ki(b, j, kh) + d]!;
          dP[j] = acc;
          Di += P[prow + j]! * acc;
        }
        for (let j = 0; j <= i; j++) {
          const p = P[prow + j]!, dS = p * (dP[j]! - Di);
          for (let d = 0; d < HD; d++) {
            dv[ki(b, j, kh) + d] += p * dout[qi(b, i, h) + d]!;
            dq[qi(b, i, h) + d] += scale * dS * k[ki(b, j, kh) + d]!;
            dk[ki(b, j, kh) + d] += scale * dS * q[qi(b, i, h) + d]!;
          }
        }
      }
    }
  return { dq, dk, dv };
}

function inputs(dims: Dims, seed: number) {
  const [B, T, NH, NKV, HD] = dims, rng = mulberry32(seed);
  return {
    q: randn(B * T * NH * HD, rng), k: randn(B * T * NKV * HD, rng), v: randn(B * T * NKV * HD, rng), dout: randn(B * T * NH * HD, rng),
  };
}

function run(be: Backend, dims: Dims, x: ReturnType<typeof inputs>, init = 0) {
  const [B, T, NH, NKV, HD] = dims;
  const q = be.fromArray(x.q, [B, T, NH, HD]), k = be.fromArray(x.k, [B, T, NKV, HD]), v = be.fromArray(x.v, [B, T, NKV, HD]);
  const out = be.tensor([B, T, NH, HD]), lse = be.tensor([B, NH, T]);
  attentionForward(out, lse, q, k, v);
  const dq = be.fromArray(new Float32Array(q.numel).fill(init), q.shape), dk = be.fromArray(new Float32Array(k.numel).fill(init), k.shape);
  const dv = be.fromArray(new Float32Array(v.numel).fill(init), v.shape);
  attentionBackward({ dq, dk, dv }, be.fromArray(x.dout, q.shape), q, k, v, out, lse);
  const res = { out: out.read(), lse: lse.read(), dq: dq.read(), dk: dk.read(), dv: dv.read() };
  for (const t of [q, k, v, out, lse, dq, dk, dv]) t.buffer.free();
  return res;
}

// T values below, at, and above the 64-row tiles, not multiples of them; GQA groups of 1, 2, 3, 8; HD with and without a 16-wide tail.
const SHAPES: Dims[] = [
  [1, 1, 1, 1, 1], [2, 5, 4, 2, 6], [1, 64, 2, 2, 64], [1, 70, 6, 2, 48], [2, 130, 3, 1, 16], [1, 129, 8, 1, 32], [1, 200, 4, 4, 20],
  [1, 70, 2, 1, 100], [1, 65, 2, 2, 128], // HD beyond one 64-wide register block, with and without a tail
];

function checkAgainstReference(be: Backend, shapes: Dims[], seed: number) {
  for (const dims of shapes) {
    const x = inputs(dims, seed++);
    const ref = attnRef(x.q, x.k, x.v, dims), g = attnBackwardRef(x.dout, x.q, x.k, x.v, dims);
    const got = run(be, dims, x, 0.25); // gradients accumulate on top of 0.25
    expect(relErr(got.out, ref.out)).toBeLessThan(1e-5);
    expect(relErr(got.lse, ref.lse)).toBeLessThan(1e-5);
    expect(relErr(got.dq.map((a) => a - 0.25), g.dq)).toBeLessThan(1e-4);
    expect(relErr(got.dk.map((a) => a - 0.25), g.dk)).toBeLessThan(1e-4);
    expect(relErr(got.dv.map((a) => a - 0.25), g.dv)).toBeLessThan(1e-4);
  }
}

describe("attention", () => {
  test("the float64 analytic backward matches float64 finite differences (tiny GQA shape)", () => {
    const dims: Dims = [2, 5, 4, 2, 3];
    const x = inputs(dims, 7);
    const g = attnBackwardRef(x.dout, x.q, x.k, x.v, dims);
    const loss = (q: ArrayLike<number>, k: ArrayLike<number>, v: ArrayLike<number>) => dot(attnRef(q, k, v, dims).out, x.dout);
    expect(relErr(g.dq, finiteDiff((q) => loss(q, x.k, x.v), x.q))).toBeLessThan(1e-7);
    expect(relErr(g.dk, finiteDiff((k) => loss(x.q, k, x.v), x.k))).toBeLessThan(1e-7);
    expect(relErr(g.dv, finiteDiff((v) => loss(x.q, x.k, v), x.v))).toBeLessThan(1e-7);
  });
  test("kernel backward matches float64 finite differences (tiny GQA shape)", () => {
    const dims: Dims = [1, 6, 6, 2, 4];
    const x = inputs(dims, 8);
    const got = run(getBackend(), dims, x);
    const loss = (q: ArrayLike<number>, k: ArrayLike<number>, v: ArrayLike<number>) => dot(attnRef(q, k, v, dims).out, x.dout);
    expect(relErr(got.dq, finiteDiff((q) => loss(q, x.k, x.v), x.q))).toBeLessThan(1e-4);
    expect(relErr(got.dk, finiteDiff((k) => loss(x.q, k, x.v), x.k))).toBeLessThan(1e-4);
    expect(relErr(got.dv, finiteDiff((v) => loss(x.q, x.k, v), x.v))).toBeLessThan(1e-4);
  });
  test("forward, lse and accumulated gradients match a float64 reference (native build)", () => {
    checkAgainstReference(getBackend(), SHAPES, 1);
  });
  test("the portable (non-AVX-512) build is also correct", () => {
    checkAgainstReference(openBackend({ device: "cpu", arch: "x86-64" }), SHAPES, 100);
  });
  test("both backward schedules (fused per kv head, split by blocks) at 1, 3 and 4 threads", () => {
    // B*NKV = 1 or 2: one thread runs the fused schedule, 3 and 4 threads the split one.
    const be = getBackend();
    const saved = be.threads;
    try {
      for (const threads of [1, 3, 4]) {
        be.threads = threads;
        checkAgainstReference(be, [[1, 130, 4, 1, 16], [2, 70, 6, 1, 48], [1, 200, 6, 2, 20]], 50 + threads);
      }
    } finally {
      be.threads = saved;
    }
  });
  test("causal: changing a future token leaves earlier outputs bit-identical", () => {
    const be = getBackend();
    const dims: Dims = [1, 150, 4, 2, 16];
    const x = inputs(dims, 3);
    const a = run(be, dims, x);
    const t0 = 97, row = 4 * 16, krow = 2 * 16;
    const y = { ...x, q: x.q.slice(), k: x.k.slice(), v: x.v.slice() };
    for (let i = t0 * row; i < y.q.length; i++) y.q[i] = y.q[i]! + 1;
    for (let i = t0 * krow; i < y.k.length; i++) {
      y.k[i] = y.k[i]! * 3;
      y.v[i] = y.v[i]! - 2;
    }
    const b = run(be, dims, y);
    expect(b.out.subarray(0, t0 * row)).toEqual(a.out.subarray(0, t0 * row));
    expect(relErr(b.out.subarray(t0 * row), a.out.subarray(t0 * row))).toBeGreaterThan(1e-2); // the future did change
  });
  test("deterministic: two runs give bit-identical results (both schedules, dynamic task hand-out)", () => {
    const be = getBackend();
    const saved = be.threads;
    try {
      for (const [threads, dims] of [[2, [2, 100, 6, 2, 48]], [3, [1, 300, 4, 1, 32]]] as [number, Dims][]) {
        be.threads = threads;
        const x = inputs(dims, 4);
        const a = run(be, dims, x), b = run(be, dims, x);
        expect(b.dq).toEqual(a.dq);
        expect(b.dk).toEqual(a.dk);
        expect(b.dv).toEqual(a.dv);
        expect(b.out).toEqual(a.out);
        expect(b.lse).toEqual(a.lse);
      }
    } finally {
      be.threads = saved;
    }
  });
  test("misuse throws a ShapeError naming the op and shapes, never crashes", () => {
    const be = getBackend();
    const q = be.tensor([1, 8, 4, 16]), k = be.tensor([1, 8, 2, 16]), v = be.tensor([1, 8, 2, 16]);
    const out = be.tensor([1, 8, 4, 16]), lse = be.tensor([1, 4, 8]);
    const dq = be.tensor([1, 8, 4, 16]), dk = be.tensor([1, 8, 2, 16]), dv = be.tensor([1, 8, 2, 16]);
    attentionForward(out, lse, q, k, v);
    expect(() => attentionForward(out, lse, q, be.tensor([1, 8, 3, 16]), be.tensor([1, 8, 3, 16]))).toThrow(/attention_forward.*NH=4.*\[1, 8, 4, 16\].*NKV=3.*\[1, 8, 3, 16\]/);
    expect(() => attentionForward(out, lse, q, be.tensor([1, 7, 2, 16]), v)).toThrow(/attention_forward: 'k' \[1, 7, 2, 16\].*'q' \[1, 8, 4, 16\]/);
    expect(() => attentionForward(out, lse, q, k, be.tensor([1, 8, 2, 8]))).toThrow(/'v' \[1, 8, 2, 8\].*'k' \[1, 8, 2, 16\]/);
    expect(() => attentionForward(out, be.tensor([1, 8, 4]), q, k, v)).toThrow(/'lse' \[1, 8, 4\].*\[1, 4, 8\]/);
    expect(() => attentionForward(be.tensor([1, 8, 2, 16]), lse, q, k, v)).toThrow(/'out'/);
    expect(() => attentionForward(out, lse, be.tensor([8, 4, 16]), k, v)).toThrow(/4-D/);
    expect(() => attentionForward(out, lse, q, k, be.tensor([1, 8, 2, 16], "i32"))).toThrow(/f32/);
    expect(() => attentionForward(q, lse, q, k, v)).toThrow(/overlap/);
    expect(() => attentionForward(out, out.view([16, 4, 8]).rows(0, 1), q, k, v)).toThrow(/'out'.*'lse'.*overlap/);
    expect(() => attentionBackward({ dq, dk: be.tensor([1, 8, 4, 16]), dv }, out, q, k, v, out, lse)).toThrow(/attention_backward.*'dk'/);
    expect(() => attentionBackward({ dq, dk, dv }, be.tensor([1, 8, 4, 15]), q, k, v, out, lse)).toThrow(/'dout'/);
    expect(() => attentionBackward({ dq, dk, dv: dk }, out, q, k, v, out, lse)).toThrow(/overlap/);
    expect(() => attentionBackward({ dq: q, dk, dv }, out, q, k, v, out, lse)).toThrow(/overlap/);
    const freed = be.tensor([1, 8, 2, 16]);
    freed.buffer.free();
    expect(() => attentionForward(out, lse, q, freed, v)).toThrow(/freed/);
    expect(() => attentionBackward({ dq, dk, dv: freed }, out, q, k, v, out, lse)).toThrow(/freed/);
    // the C side validates as well
    expect(be.lib.tl_attention_forward(out.ptr(), lse.ptr(), q.ptr(), k.ptr(), v.ptr(), 1, 8, 4, 3, 16)).not.toBe(0);
    expect(be.lib.tl_attention_forward(out.ptr(), lse.ptr(), q.ptr(), k.ptr(), v.ptr(), 1, 0, 4, 2, 16)).not.toBe(0);
    expect(be.lib.tl_attention_backward(null, dk.ptr(), dv.ptr(), out.ptr(), q.ptr(), k.ptr(), v.ptr(), out.ptr(), lse.ptr(), 1, 8, 4, 2, 16)).not.toBe(0);
    expect(String(be.lib.tl_last_error())).toMatch(/dq/);
  });
});
