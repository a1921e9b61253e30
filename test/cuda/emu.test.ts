/**
 * The real kernels/cuda sources, run on the CPU by the CUDA emulator (kernels/cuda/emu), against
 * float64 references: catches indexing, masking, tiling, reduction and barrier bugs on machines
 * without a GPU (the emulator reports a __syncthreads or shuffle that not every thread reaches).
 * Missing barriers show up only under another thread order (TL_EMU_SCHEDULE=reverse|shuffle|ahead,
 * kernels/cuda/emu/README.md); it cannot see races inside a stretch between barriers, memory-model
 * or performance problems, tensor-core or cuBLASLt behaviour — test/cuda/parity.test.ts on a GPU
 * covers those. Needs g++ only.
 */
import { beforeAll, describe, expect, test } from "bun:test";
import { ptr } from "bun:ffi";
import { Backend, type Tensor } from "@tinyllama/kernels";
import { mulberry32, randn, relErr } from "@tinyllama/testing";
import { opsOf, put, type Ops } from "./harness.ts";
import { buildEmulatedCudaLibrary } from "./emu.ts";

const hasCxx = !!(process.env.CXX ?? Bun.which("g++"));
if (!hasCxx) console.log("skipped: CUDA emulator tests (no g++)");

let be: Backend;
let ops: Ops;
const p = (t: Tensor) => t.ptr("emu");
const rnd = (n: number, seed: number, scale = 1) => randn(n, mulberry32(seed), scale);
const ok = (op: string, rc: number) => be.check(op, rc);
const rd = (t: Tensor) => t.read() as Float32Array;
const minus = (a: Float32Array, b: Float32Array) => a.map((v, i) => v - b[i]!);

describe.skipIf(!hasCxx)("CUDA kernels on the CPU emulator vs float64 references", () => {
  beforeAll(() => {
    be = new Backend("cuda", buildEmulatedCudaLibrary());
    ops = opsOf(be, [
      "tl_backend", "tl_embedding_forward", "tl_embedding_backward", "tl_rmsnorm_forward", "tl_rmsnorm_backward", "tl_rope_tables",
      "tl_rope_forward", "tl_rope_backward", "tl_attention_forward", "tl_attention_backward", "tl_attention_decode", "tl_swiglu_forward", "tl_swiglu_backward",
      "tl_add", "tl_accumulate", "tl_scale", "tl_crossentropy_forward_backward", "tl_sumsq", "tl_adamw_step", "tl_adamw_step_bf16",
      "tl_cast_f32_to_bf16", "tl_cast_bf16_to_f32", "tl_matmul_forward", "tl_matmul_backward", "tl_matmul_forward_wbf16",
    ]);
  }, 300_000);

  test("attention forward/backward (GQA, ragged T, head dims 8..160)", () => {
    const shapes: [number, number, number, number, number][] = [[1, 1, 1, 1, 8], [2, 37, 4, 2, 16], [1, 33, 2, 1, 64], [1, 20, 2, 2, 160], [1, 70, 4, 1, 32]];
    shapes.forEach(([B, T, NH, NKV, HD], si) => {
      const Q = rnd(B * T * NH * HD, si + 1), K = rnd(B * T * NKV * HD, si + 11), V = rnd(B * T * NKV * HD, si + 21), DO = rnd(B * T * NH * HD, si + 31);
      const scale = 1 / Math.sqrt(HD), rep = NH / NKV;
      const out = new Float64Array(Q.length), lse = new Float64Array(B * NH * T);
      const dq = new Float64Array(Q.length), dk = new Float64Array(K.length), dv = new Float64Array(V.length);
      const qi = (b: number, t: number, h: number) => ((b * T + t) * NH + h) * HD;
      const ki = (b: number, t: number, g: number) => ((b * T + t) * NKV + g) * HD;
      for (let b = 0; b < B; b++)
        for (let h = 0; h < NH; h++) {
          const g = Math.floor(h / rep);
          for (let t = 0; t < T; t++) {
            const s: number[] = [];
            for (let j = 0; j <= t; j++) {
              let d = 0;
              for (let e = 0; e < HD; e++) d += Q[qi(b, t, h) + e]! * K[ki(b, j, g) + e]!;
              s.push(d * scale);
            }
            const m = Math.max(...s);
            const w = s.map((x) => Math.exp(x - m));
            const l = w.reduce((a, c) => a + c, 0);
            lse[(b * NH + h) * T + t] = m + Math.log(l);
            for (let j = 0; j <= t; j++) for (let e = 0; e < HD; e++) out[qi(b, t, h) + e] += (w[j]! / l) * V[ki(b, j, g) + e]!;
            // backward for this row
            let D = 0;
            for (let e = 0; e < HD; e++) D += DO[qi(b, t, h) + e]! * out[qi(b, t, h) + e]!;
            for (let j = 0; j <= t; j++) {
              const P = w[j]! / l;
              let dP = 0;
              for (let e = 0; e < HD; e++) dP += DO[qi(b, t, h) + e]! * V[ki(b, j, g) + e]!;
              const dS = P * (dP - D);
              for (let e = 0; e < HD; e++) {
                dq[qi(b, t, h) + e] += scale * dS * K[ki(b, j, g) + e]!;
                dk[ki(b, j, g) + e] += scale * dS * Q[qi(b, t, h) + e]!;
                dv[ki(b, j, g) + e] += P * DO[qi(b, t, h) + e]!;
              }
            }
          }
        }
      const q = put(be, Q), k = put(be, K), v = put(be, V), o = be.tensor([Q.length]), L = be.tensor([B * NH * T]);
      ok("attention_forward", ops.tl_attention_forward(p(o), p(L), p(q), p(k), p(v), B, T, NH, NKV, HD));
      expect(relErr(rd(o), out)).toBeLessThan(1e-5);
      expect(relErr(rd(L), lse)).toBeLessThan(1e-5);
      const one = (n: number) => put(be, new Float32Array(n).fill(1));
      const tq = one(Q.length), tk = one(K.length), tv = one(V.length);
      ok("attention_backward", ops.tl_attention_backward(p(tq), p(tk), p(tv), p(put(be, DO)), p(q), p(k), p(v), p(o), p(L), B, T, NH, NKV, HD));
      const ones = (n: number) => new Float32Array(n).fill(1);
      expect(relErr(minus(rd(tq), ones(Q.length)), dq)).toBeLessThan(1e-4);
      expect(relErr(minus(rd(tk), ones(K.length)), dk)).toBeLessThan(1e-4);
      expect(relErr(minus(rd(tv), ones(V.length)), dv)).toBeLessThan(1e-4);
    });
  }, 300_000);

  test("attention decode over a KV cache (GQA), and pos outside the cache", () => {
    for (const [B, NH, NKV, HD, maxT, pos] of [[2, 4, 2, 16, 40, 37], [1, 2, 1, 64, 8, 0], [1, 2, 2, 160, 5, 4]] as number[][]) {
      const Q = rnd(B! * NH! * HD!, 200 + HD!), K = rnd(B! * maxT! * NKV! * HD!, 201), V = rnd(B! * maxT! * NKV! * HD!, 202);
      const ref = new Float64Array(Q.length), scale = 1 / Math.sqrt(HD!);
      for (let b = 0; b < B!; b++)
        for (let h = 0; h < NH!; h++) {
          const g = Math.floor(h / (NH! / NKV!)), qo = (b * NH! + h) * HD!;
          const s = Array.from({ length: pos! + 1 }, (_, j) => {
            let d = 0;
            for (let e = 0; e < HD!; e++) d += Q[qo + e]! * K[((b * maxT! + j) * NKV! + g) * HD! + e]!;
            return d * scale;
          });
          const m = Math.max(...s), w = s.map((x) => Math.exp(x - m)), l = w.reduce((a, c) => a + c, 0);
          for (let j = 0; j <= pos!; j++) for (let e = 0; e < HD!; e++) ref[qo + e] += (w[j]! / l) * V[((b * maxT! + j) * NKV! + g) * HD! + e]!;
        }
      const o = be.tensor([Q.length]), q = put(be, Q), k = put(be, K), v = put(be, V);
      ok("attention_decode", ops.tl_attention_decode(p(o), p(q), p(k), p(v), B!, NH!, NKV!, HD!, maxT!, pos!));
      expect(relErr(rd(o), ref)).toBeLessThan(1e-5);
      expect(ops.tl_attention_decode(p(o), p(q), p(k), p(v), B!, NH!, NKV!, HD!, maxT!, maxT!)).toBe(3);
    }
  });

  test("rmsnorm forward/backward", () => {
    // not C = 1: there dinp is a catastrophic cancellation (1 - x^2/(x^2+eps)) in any fp32 implementation
    for (const [N, C] of [[2, 3], [5, 300], [3, 1024]] as [number, number][]) {
      const X = rnd(N * C, 40), W = rnd(C, 41), DY = rnd(N * C, 42), eps = 1e-5;
      const out = new Float64Array(N * C), rs = new Float64Array(N), dx = new Float64Array(N * C), dw = new Float64Array(C);
      for (let n = 0; n < N; n++) {
        let ss = 0;
        for (let c = 0; c < C; c++) ss += X[n * C + c]! ** 2;
        const r = 1 / Math.sqrt(ss / C + eps);
        rs[n] = r;
        let dot = 0;
        for (let c = 0; c < C; c++) dot += DY[n * C + c]! * W[c]! * X[n * C + c]!;
        for (let c = 0; c < C; c++) {
          out[n * C + c] = X[n * C + c]! * r * W[c]!;
          dx[n * C + c] = r * W[c]! * DY[n * C + c]! - ((r ** 3) / C) * X[n * C + c]! * dot;
          dw[c] += DY[n * C + c]! * X[n * C + c]! * r;
        }
      }
      const x = put(be, X), w = put(be, W), o = be.tensor([N * C]), r = be.tensor([N]), gx = be.tensor([N * C]), gw = be.tensor([C]);
      ok("rmsnorm_forward", ops.tl_rmsnorm_forward(p(o), p(r), p(x), p(w), N, C, eps));
      ok("rmsnorm_backward", ops.tl_rmsnorm_backward(p(gx), p(gw), p(put(be, DY)), p(x), p(w), p(r), N, C));
      expect([relErr(rd(o), out), relErr(rd(r), rs)].every((e) => e < 1e-5)).toBe(true);
      expect([relErr(rd(gx), dx), relErr(rd(gw), dw)].every((e) => e < 1e-4)).toBe(true);
    }
  }, 60_000);

  test("rope tables, forward (in place too) and backward; positions past the tables are rejected", () => {
    const B = 2, T = 5, NH = 3, HD = 8, maxT = 16, pos0 = 4, half = HD / 2;
    const c = be.tensor([maxT * half]), s = be.tensor([maxT * half]);
    ok("rope_tables", ops.tl_rope_tables(p(c), p(s), maxT, HD, 10000));
    const cr = new Float64Array(maxT * half), sr = new Float64Array(maxT * half);
    for (let t = 0; t < maxT; t++) for (let i = 0; i < half; i++) { const a = t * 10000 ** (-2 * i / HD); cr[t * half + i] = Math.cos(a); sr[t * half + i] = Math.sin(a); }
    expect(relErr(rd(c), cr)).toBeLessThan(1e-6);
    expect(relErr(rd(s), sr)).toBeLessThan(1e-6);
    const X = rnd(B * T * NH * HD, 50), DY = rnd(X.length, 51);
    const out = new Float64Array(X.length), dx = new Float64Array(X.length);
    for (let row = 0; row < B * T * NH; row++) {
      const t = Math.floor(row / NH) % T, base = row * HD;
      for (let i = 0; i < half; i++) {
        const co = cr[(pos0 + t) * half + i]!, si = sr[(pos0 + t) * half + i]!;
        const x1 = X[base + i]!, x2 = X[base + i + half]!, d1 = DY[base + i]!, d2 = DY[base + i + half]!;
        out[base + i] = x1 * co - x2 * si; out[base + i + half] = x2 * co + x1 * si;
        dx[base + i] = d1 * co + d2 * si; dx[base + i + half] = -d1 * si + d2 * co;
      }
    }
    const x = put(be, X), o = be.tensor([X.length]), g = be.tensor([X.length]);
    ok("rope_forward", ops.tl_rope_forward(p(o), p(x), p(c), p(s), B, T, NH, HD, pos0, maxT));
    ok("rope_forward", ops.tl_rope_forward(p(x), p(x), p(c), p(s), B, T, NH, HD, pos0, maxT));
    ok("rope_backward", ops.tl_rope_backward(p(g), p(put(be, DY)), p(c), p(s), B, T, NH, HD, pos0, maxT));
    expect(relErr(rd(o), out)).toBeLessThan(1e-5);
    expect(relErr(rd(x), out)).toBeLessThan(1e-5);
    expect(relErr(rd(g), dx)).toBeLessThan(1e-5);
    expect(ops.tl_rope_forward(p(o), p(x), p(c), p(s), B, T, NH, HD, maxT - T + 1, maxT)).toBe(1);
  });

  test("embedding forward/backward (repeated tokens, in token order) and a bad id", () => {
    const N = 40, C = 7, V = 9, rng = mulberry32(60);
    const tok = Int32Array.from({ length: N }, () => Math.floor(rng() * V));
    const W = rnd(V * C, 61), DY = rnd(N * C, 62), D0 = rnd(V * C, 63);
    const out = new Float64Array(N * C), dw = Float64Array.from(D0);
    for (let n = 0; n < N; n++) for (let c = 0; c < C; c++) { out[n * C + c] = W[tok[n]! * C + c]!; dw[tok[n]! * C + c] += DY[n * C + c]!; }
    const t = put(be, tok), o = be.tensor([N * C]), g = put(be, D0);
    ok("embedding_forward", ops.tl_embedding_forward(p(o), p(t), p(put(be, W)), N, C, V));
    ok("embedding_backward", ops.tl_embedding_backward(p(g), p(put(be, DY)), p(t), N, C, V));
    expect(relErr(rd(o), out)).toBe(0);
    expect(relErr(rd(g), dw)).toBeLessThan(1e-6);
    expect(ops.tl_embedding_forward(p(o), p(put(be, Int32Array.from([0, -1]))), p(put(be, W)), 2, C, V)).toBe(3);
    expect(ops.tl_embedding_backward(p(g), p(put(be, DY)), p(put(be, Int32Array.from([V]))), 1, C, V)).toBe(3);
  });

  test("swiglu, add, accumulate, scale", () => {
    const N = 1000;
    const G = rnd(N, 70, 4), U = rnd(N, 71), DY = rnd(N, 72);
    const sig = (x: number) => 1 / (1 + Math.exp(-x));
    const out = Float64Array.from(G, (g, i) => g * sig(g) * U[i]!);
    const dg = Float64Array.from(G, (g, i) => DY[i]! * U[i]! * sig(g) * (1 + g * (1 - sig(g))));
    const du = Float64Array.from(G, (g, i) => DY[i]! * g * sig(g));
    const g = put(be, G), u = put(be, U), o = be.tensor([N]), tg = be.tensor([N]), tu = be.tensor([N]);
    ok("swiglu_forward", ops.tl_swiglu_forward(p(o), p(g), p(u), N));
    ok("swiglu_backward", ops.tl_swiglu_backward(p(tg), p(tu), p(put(be, DY)), p(g), p(u), N));
    expect([relErr(rd(o), out), relErr(rd(tg), dg), relErr(rd(tu), du)].every((e) => e < 1e-5)).toBe(true);
    const a = put(be, G);
    ok("add", ops.tl_add(p(a), p(a), p(u), N));
    ok("accumulate", ops.tl_accumulate(p(a), p(u), N));
    ok("scale", ops.tl_scale(p(a), 0.5, N));
    expect(relErr(rd(a), Float64Array.from(G, (x, i) => (x + 2 * U[i]!) * 0.5))).toBeLessThan(1e-6);
  });

  test("cross-entropy (ignored rows, in place) and a bad target", () => {
    const N = 6, V = 300, IGN = -100, rng = mulberry32(80);
    const tgt = Int32Array.from({ length: N }, (_, i) => (i === 3 ? IGN : Math.floor(rng() * V)));
    const L = rnd(N * V, 81, 4), gs = 0.2;
    const loss = new Float64Array(N), dl = new Float64Array(N * V);
    for (let n = 0; n < N; n++) {
      if (tgt[n] === IGN) continue;
      const row = Array.from(L.subarray(n * V, n * V + V));
      const m = Math.max(...row), z = row.reduce((a, x) => a + Math.exp(x - m), 0);
      loss[n] = Math.log(z) + m - row[tgt[n]!]!;
      for (let i = 0; i < V; i++) dl[n * V + i] = (Math.exp(row[i]! - m) / z - (i === tgt[n] ? 1 : 0)) * gs;
    }
    const lg = put(be, L), ls = be.tensor([N]);
    ok("crossentropy", ops.tl_crossentropy_forward_backward(p(ls), p(lg), p(lg), p(put(be, tgt)), N, V, IGN, gs));
    expect(relErr(rd(ls), loss)).toBeLessThan(1e-5);
    expect(relErr(rd(lg), dl)).toBeLessThan(1e-5);
    expect(ops.tl_crossentropy_forward_backward(p(ls), null, p(put(be, L)), p(put(be, Int32Array.from([V]))), 1, V, IGN, 1)).toBe(3);
  });

  test("sumsq and AdamW (fp32 and bf16 master-weight variants)", () => {
    const X = rnd(10_007, 90);
    const out = new Float64Array(1);
    ok("sumsq", ops.tl_sumsq(ptr(out), p(put(be, X)), X.length));
    const ref = X.reduce((a, x) => a + x * x, 0);
    expect(Math.abs(out[0]! - ref) / ref).toBeLessThan(1e-12);
    const M = 500, P0 = rnd(M, 91), G = rnd(M, 92);
    const o = { lr: 1e-2, b1: 0.9, b2: 0.95, eps: 1e-8, wd: 0.1, gs: 0.5 };
    const pr = Float64Array.from(P0), m = new Float64Array(M), v = new Float64Array(M);
    for (let t = 1; t <= 2; t++)
      for (let i = 0; i < M; i++) {
        const g = G[i]! * o.gs;
        m[i] = o.b1 * m[i]! + (1 - o.b1) * g; v[i] = o.b2 * v[i]! + (1 - o.b2) * g * g;
        pr[i] -= o.lr * o.wd * pr[i]!;
        pr[i] -= (o.lr * (m[i]! / (1 - o.b1 ** t))) / (Math.sqrt(v[i]! / (1 - o.b2 ** t)) + o.eps);
      }
    for (const bf16 of [false, true]) {
      const prm = put(be, P0), tm = be.tensor([M]), tv = be.tensor([M]), pb = be.tensor([M], "bf16"), g = put(be, G);
      for (let t = 1; t <= 2; t++)
        ok("adamw", bf16
          ? ops.tl_adamw_step_bf16(p(prm), p(pb), p(g), p(tm), p(tv), M, o.lr, o.b1, o.b2, o.eps, o.wd, o.gs, t)
          : ops.tl_adamw_step(p(prm), p(g), p(tm), p(tv), M, o.lr, o.b1, o.b2, o.eps, o.wd, o.gs, t));
      expect([relErr(rd(prm), pr), relErr(rd(tm), m), relErr(rd(tv), v)].every((e) => e < 1e-5)).toBe(true);
      if (bf16) {
        const again = be.tensor([M], "bf16");
        ok("cast", ops.tl_cast_f32_to_bf16(p(again), p(prm), M));
        expect(Array.from(pb.read())).toEqual(Array.from(again.read()));
      }
    }
  }, 60_000);

  test("matmul dbias (a column sum, no cuBLASLt) and bf16 casts", () => {
    const N = 37, OC = 45;
    const DY = rnd(N * OC, 100), B0 = rnd(OC, 101);
    const ref = Float64Array.from(B0);
    for (let n = 0; n < N; n++) for (let o = 0; o < OC; o++) ref[o] += DY[n * OC + o]!;
    const db = put(be, B0), a = put(be, rnd(4, 1));
    ok("matmul_backward", ops.tl_matmul_backward(null, null, p(db), p(put(be, DY)), p(a), p(a), N, 2, OC));
    expect(relErr(rd(db), ref)).toBeLessThan(1e-6);
    const X = Float32Array.from([1, 1 + 2 ** -8, 1 + 3 * 2 ** -8, -2.5, Infinity, NaN, 3.4e38]);
    const b = be.tensor([X.length], "bf16"), back = be.tensor([X.length]);
    ok("cast", ops.tl_cast_f32_to_bf16(p(b), p(put(be, X)), X.length));
    ok("cast", ops.tl_cast_bf16_to_f32(p(back), p(b), X.length));
    expect(Array.from(b.read())).toEqual([0x3f80, 0x3f80, 0x3f82, 0xc020, 0x7f80, 0x7fff, 0x7f80]);
    expect(Array.from(rd(back)).slice(0, 4)).toEqual([1, 1, 1 + 2 ** -6, -2.5]);
  });

  test("matmuls run the emulator's reference kernel in place of cuBLASLt (forward + bias, dinp, dweight, dbias += )", () => {
    // (a real GPU without cuBLASLt gets TL_ERR_UNSUPPORTED instead: test/cuda/abi.test.ts)
    const N = 3, C = 5, OC = 4;
    const X = rnd(N * C, 1), W = rnd(OC * C, 2), Bi = rnd(OC, 3), DO = rnd(N * OC, 4);
    const out = new Float64Array(N * OC), dx = new Float64Array(N * C).fill(0.5), dw = new Float64Array(OC * C).fill(-0.25), db = new Float64Array(OC).fill(1);
    for (let n = 0; n < N; n++)
      for (let o = 0; o < OC; o++) {
        let acc = Bi[o]!;
        for (let c = 0; c < C; c++) {
          acc += X[n * C + c]! * W[o * C + c]!;
          dx[n * C + c] += DO[n * OC + o]! * W[o * C + c]!;
          dw[o * C + c] += DO[n * OC + o]! * X[n * C + c]!;
        }
        out[n * OC + o] = acc;
        db[o] += DO[n * OC + o]!;
      }
    const x = put(be, X), w = put(be, W), o = be.tensor([N * OC]);
    ok("matmul_forward", ops.tl_matmul_forward(p(o), p(x), p(w), p(put(be, Bi)), N, C, OC));
    const tdx = put(be, new Float32Array(N * C).fill(0.5)), tdw = put(be, new Float32Array(OC * C).fill(-0.25)), tdb = put(be, new Float32Array(OC).fill(1));
    ok("matmul_backward", ops.tl_matmul_backward(p(tdx), p(tdw), p(tdb), p(put(be, DO)), p(x), p(w), N, C, OC));
    expect(relErr(rd(o), out)).toBeLessThan(1e-6);
    expect(relErr(rd(tdx), dx)).toBeLessThan(1e-6);
    expect(relErr(rd(tdw), dw)).toBeLessThan(1e-6);
    expect(relErr(rd(tdb), db)).toBeLessThan(1e-6);
  });

  test("matmul with bf16-stored weights (no cuBLASLt: its own kernel) and its bad arguments", () => {
    for (const [N, C, OC] of [[1, 1, 1], [1, 70, 13], [3, 33, 9], [2, 300, 17]] as [number, number, number][]) {
      const X = rnd(N * C, 60), W = rnd(OC * C, 61);
      const WB = Uint16Array.from(W, (v) => new Uint32Array(new Float32Array([v]).buffer)[0]! >>> 16); // any bits will do
      const ref = new Float64Array(N * OC);
      for (let n = 0; n < N; n++)
        for (let o = 0; o < OC; o++) {
          let acc = 0;
          for (let c = 0; c < C; c++) acc += X[n * C + c]! * new Float32Array(new Uint32Array([WB[o * C + c]! << 16]).buffer)[0]!;
          ref[n * OC + o] = acc;
        }
      const out = be.tensor([N * OC]), x = put(be, X), w = put(be, WB);
      ok("matmul_forward_wbf16", ops.tl_matmul_forward_wbf16(p(out), p(x), p(w), N, C, OC));
      expect(relErr(rd(out), ref)).toBeLessThan(1e-6);
      expect(ops.tl_matmul_forward_wbf16(p(out), p(x), p(w), 0, C, OC)).toBe(1);
      expect(ops.tl_matmul_forward_wbf16(null, p(x), p(w), N, C, OC)).toBe(1);
    }
  });
});
