/**
 * Every op of the ABI on the CUDA backend against the CPU backend, on the same random inputs:
 * fp32 results within 1e-4 relative error (‖cuda−cpu‖/‖cpu‖), bf16 results within 1e-2, casts
 * bit for bit. Gradients start from random values on both sides, so the accumulate (+=) rule is
 * checked too. Without a GPU the same comparisons run on the CUDA emulator (harness.parityTarget),
 * minus what needs cuBLASLt or what the CPU library lacks, each skip printed as a line.
 */
import { describe, expect, test } from "bun:test";
import { ptr } from "bun:ffi";
import { mulberry32, randn, relErr } from "@tinyllama/testing";
import type { Backend, Tensor } from "@tinyllama/kernels";
import { backends, ok, onBoth, opsOf, parityReady, parityTarget, put, setNativeEnv, underEmuSchedule, type AbiName, type Host } from "./harness.ts";

const F32 = 1e-4;
const BF16 = 1e-2;

/** Fails listing every output whose relative error is not below tol. */
function expectClose(res: { cpu: Record<string, Host>; cuda: Record<string, Host> }, tol: number, what: string): void {
  const bad: string[] = [];
  for (const k of Object.keys(res.cpu)) {
    const e = relErr(toF(res.cuda[k]!), toF(res.cpu[k]!));
    if (!(e < tol)) bad.push(`${what} ${k}: rel err ${e.toExponential(2)} >= ${tol}`);
  }
  expect(bad).toEqual([]);
}
function toF(a: Host): Float64Array | Float32Array | Int32Array {
  if (a instanceof Uint16Array) return Float32Array.from(a, (b) => new Float32Array(new Uint32Array([b << 16]).buffer)[0]!);
  return a;
}
const rnd = (n: number, seed: number, scale = 1) => randn(n, mulberry32(seed), scale);
const p = (t: Tensor) => t.ptr("test");

/**
 * A parity test: skipped (with a line) where parityReady says it cannot run; generous timeout for
 * the emulator. gpuOnly: needs cuBLASLt, or is about what only a real GPU can get wrong (repeatability).
 * racy: the kernels exchange data between threads (shared memory, warp shuffles): on the emulator
 * the test runs a second time under TL_EMU_SCHEDULE=ahead (blocks, warps and lanes in random
 * orders, each warp running ahead to its next __syncthreads), where a missing barrier gives wrong
 * results instead of hiding behind the default thread order (kernels/cuda/emu/README.md says why
 * ahead: the round-based orders cannot see a missing __syncthreads with warp barriers, WMMA or
 * mma.sync calls in between, e.g. most of attention_tc.cu's and attention_fa2.cu's). Not when
 * TL_EMU_SCHEDULE is set: then the whole run uses that order, once.
 */
function ptest(name: string, names: AbiName[], gpuOnly: boolean, fn: () => void, racy = false): void {
  const ready = parityReady(name, names, gpuOnly);
  test.skipIf(!ready)(name, fn, 300_000);
  if (racy && parityTarget === "emu" && !process.env.TL_EMU_SCHEDULE)
    test.skipIf(!ready)(`${name} [emulator, schedule ahead]`, () => underEmuSchedule("ahead:1", fn), 300_000);
}

describe.skipIf(parityTarget === null)(`CUDA (${parityTarget ?? "none"}) vs CPU parity`, () => {
  // On the emulator the matmuls run a reference kernel in place of cuBLASLt (matmul.cu, TL_CUDA_EMU):
  // there these tests check the row-major -> column-major operand mapping of every call.
  ptest("matmul forward/backward (fp32, with and without bias, unaligned views)", ["tl_matmul_forward", "tl_matmul_backward"], false, () => {
    const shapes: [number, number, number][] = [[1, 1, 1], [3, 17, 5], [37, 64, 96], [129, 100, 33], [256, 288, 768], [16, 513, 7]];
    shapes.forEach(([N, C, OC], i) => {
      const X = rnd((N + 1) * C, 10 + i), W = rnd(OC * C, 20 + i), B = rnd(OC, 30 + i), DO = rnd(N * OC, 40 + i);
      const DX = rnd(N * C, 50 + i), DW = rnd(OC * C, 60 + i), DB = rnd(OC, 70 + i);
      for (const bias of [true, false]) {
        const res = onBoth(["tl_matmul_forward", "tl_matmul_backward"], (be, ops) => {
          // inp is rows 1..N of an (N+1, C) tensor: with odd C its address is only 4-byte aligned
          const x = put(be, X, [N + 1, C]).rows(1, N), w = put(be, W, [OC, C]), b = put(be, B), out = be.tensor([N, OC]);
          ok(be, "matmul_forward", ops.tl_matmul_forward(p(out), p(x), p(w), bias ? p(b) : null, N, C, OC));
          const dx = put(be, DX), dw = put(be, DW), db = put(be, DB);
          ok(be, "matmul_backward", ops.tl_matmul_backward(p(dx), p(dw), bias ? p(db) : null, p(put(be, DO)), p(x), p(w), N, C, OC));
          return { out, dx, dw, db };
        });
        expectClose(res, F32, `matmul ${N}x${C}x${OC} bias=${bias}`);
      }
    });
  }, true);

  ptest("embedding forward/backward, and an out-of-range token is TL_ERR_OUT_OF_RANGE", ["tl_embedding_forward", "tl_embedding_backward"], false, () => {
    const N = 300, C = 33, V = 50;
    const rng = mulberry32(3);
    const tok = Int32Array.from({ length: N }, () => Math.floor(rng() * V));
    const WTE = rnd(V * C, 4), DO = rnd(N * C, 5), DW = rnd(V * C, 6);
    const res = onBoth(["tl_embedding_forward", "tl_embedding_backward"], (be, ops) => {
      const t = put(be, tok), wte = put(be, WTE, [V, C]), out = be.tensor([N, C]), dwte = put(be, DW, [V, C]);
      ok(be, "embedding_forward", ops.tl_embedding_forward(p(out), p(t), p(wte), N, C, V));
      ok(be, "embedding_backward", ops.tl_embedding_backward(p(dwte), p(put(be, DO)), p(t), N, C, V));
      return { out, dwte };
    });
    expectClose(res, F32, "embedding");
    const { cpu, cuda } = backends();
    for (const be of [cpu, cuda]) {
      const ops = opsOf(be, ["tl_embedding_forward"]);
      const bad = put(be, Int32Array.from([1, V, 2]));
      expect(ops.tl_embedding_forward(p(be.tensor([3, C])), p(bad), p(put(be, WTE)), 3, C, V)).toBe(3);
    }
  }, true);

  ptest("rmsnorm forward/backward", ["tl_rmsnorm_forward", "tl_rmsnorm_backward"], false, () => {
    for (const [N, C] of [[1, 1], [37, 288], [64, 2048], [5, 1000]] as [number, number][]) {
      const X = rnd(N * C, 7), W = rnd(C, 8), DO = rnd(N * C, 9), DX = rnd(N * C, 10), DW = rnd(C, 11);
      const res = onBoth(["tl_rmsnorm_forward", "tl_rmsnorm_backward"], (be, ops) => {
        const x = put(be, X), w = put(be, W), out = be.tensor([N * C]), rstd = be.tensor([N]);
        ok(be, "rmsnorm_forward", ops.tl_rmsnorm_forward(p(out), p(rstd), p(x), p(w), N, C, 1e-5));
        const dx = put(be, DX), dw = put(be, DW);
        ok(be, "rmsnorm_backward", ops.tl_rmsnorm_backward(p(dx), p(dw), p(put(be, DO)), p(x), p(w), p(rstd), N, C));
        return { out, rstd, dx, dw };
      });
      expectClose(res, F32, `rmsnorm ${N}x${C}`);
    }
  }, true);

  ptest("rope tables, forward (also in place) and backward", ["tl_rope_tables", "tl_rope_forward", "tl_rope_backward"], false, () => {
    const B = 2, T = 17, NH = 3, HD = 16, maxT = 64, pos0 = 5;
    const tables = onBoth(["tl_rope_tables"], (be, ops) => {
      const c = be.tensor([maxT, HD / 2]), s = be.tensor([maxT, HD / 2]);
      ok(be, "rope_tables", ops.tl_rope_tables(p(c), p(s), maxT, HD, 10000));
      return { c, s };
    });
    expectClose(tables, F32, "rope tables");
    // the same tables on both sides, so forward/backward are compared on their own
    const COS = tables.cpu.c as Float32Array, SIN = tables.cpu.s as Float32Array;
    const X = rnd(B * T * NH * HD, 12), DO = rnd(B * T * NH * HD, 13), DX = rnd(B * T * NH * HD, 14);
    const res = onBoth(["tl_rope_forward", "tl_rope_backward"], (be, ops) => {
      const c = put(be, COS), s = put(be, SIN), x = put(be, X), out = be.tensor([X.length]), inplace = put(be, X);
      ok(be, "rope_forward", ops.tl_rope_forward(p(out), p(x), p(c), p(s), B, T, NH, HD, pos0, maxT));
      ok(be, "rope_forward", ops.tl_rope_forward(p(inplace), p(inplace), p(c), p(s), B, T, NH, HD, pos0, maxT));
      const dx = put(be, DX);
      ok(be, "rope_backward", ops.tl_rope_backward(p(dx), p(put(be, DO)), p(c), p(s), B, T, NH, HD, pos0, maxT));
      return { out, inplace, dx };
    });
    expectClose(res, F32, "rope");
    expect(relErr(res.cuda.inplace as Float32Array, res.cuda.out as Float32Array)).toBe(0);
  });

  const attention = (shapes: [number, number, number, number, number][]) =>
    shapes.forEach(([B, T, NH, NKV, HD], i) => {
      const Q = rnd(B * T * NH * HD, 100 + i), K = rnd(B * T * NKV * HD, 110 + i), Vv = rnd(B * T * NKV * HD, 120 + i);
      const DO = rnd(B * T * NH * HD, 130 + i);
      const DQ = rnd(Q.length, 140 + i), DK = rnd(K.length, 150 + i), DV = rnd(K.length, 160 + i);
      const res = onBoth(["tl_attention_forward", "tl_attention_backward"], (be, ops) => {
        const q = put(be, Q), k = put(be, K), v = put(be, Vv), out = be.tensor([Q.length]), lse = be.tensor([B * NH * T]);
        ok(be, "attention_forward", ops.tl_attention_forward(p(out), p(lse), p(q), p(k), p(v), B, T, NH, NKV, HD));
        const dq = put(be, DQ), dk = put(be, DK), dv = put(be, DV);
        ok(be, "attention_backward", ops.tl_attention_backward(p(dq), p(dk), p(dv), p(put(be, DO)), p(q), p(k), p(v), p(out), p(lse), B, T, NH, NKV, HD));
        return { out, lse, dq, dk, dv };
      });
      expectClose(res, F32, `attention B${B} T${T} NH${NH} NKV${NKV} HD${HD}`);
    });
  ptest("attention forward/backward (causal GQA; head dims 8..128, ragged T)", ["tl_attention_forward", "tl_attention_backward"], false, () => {
    attention([[1, 1, 1, 1, 8], [2, 37, 4, 2, 16], [1, 70, 8, 2, 64], [2, 65, 4, 4, 32], [1, 33, 2, 1, 128]]);
  }, true);
  ptest("attention with head dim 160 (more than 48 KiB of shared memory: the opt-in path)", ["tl_attention_forward", "tl_attention_backward"], false, () => {
    attention([[1, 40, 2, 1, 160]]);
  }, true);

  // Forward and backward run the register-tiled kernels (attention_fa2.cu; the backward up to HD=64, the WMMA
  // one above) unless TINYLLAMA_ATTENTION_KERNEL=wmma picks attention_tc.cu's WMMA kernels for both. T=200 at HD=64 (TinyLlama's head dim)
  // spans several key tiles and query blocks, so the double-buffered loads and the online rescale are exercised.
  ptest("bf16 attention forward/backward (tensor cores on CUDA; head dims 16..128 and a widened fallback, ragged T, GQA)", ["tl_attention_forward_bf16", "tl_attention_backward_bf16"], false, () => {
    const shapes: [number, number, number, number, number][] = [[1, 1, 1, 1, 16], [2, 37, 4, 2, 64], [1, 130, 2, 1, 48], [1, 70, 4, 4, 128], [1, 65, 2, 2, 32], [1, 29, 2, 1, 24], [1, 200, 4, 2, 64]];
    bf16Attention(shapes, null);
  }, true);
  ptest("bf16 attention forward/backward, the WMMA kernels (TINYLLAMA_ATTENTION_KERNEL=wmma)", ["tl_attention_forward_bf16", "tl_attention_backward_bf16"], false, () => {
    bf16Attention([[2, 37, 4, 2, 64], [1, 70, 4, 4, 128], [1, 130, 2, 1, 48]], "wmma");
  }, true);
  function bf16Attention(shapes: [number, number, number, number, number][], kernel: "wmma" | null): void {
    setNativeEnv("TINYLLAMA_ATTENTION_KERNEL", kernel);
    try {
      bf16AttentionShapes(shapes);
    } finally {
      setNativeEnv("TINYLLAMA_ATTENTION_KERNEL", null);
    }
  }
  function bf16AttentionShapes(shapes: [number, number, number, number, number][]): void {
    shapes.forEach(([B, T, NH, NKV, HD], i) => {
      // bf16 bits of scaled normal values; scale 2 spreads the scores so the online softmax rescales across tiles
      const bits = (n: number, seed: number, scale = 2) => Uint16Array.from(rnd(n, seed, scale), (x) => new Uint32Array(new Float32Array([x]).buffer)[0]! >>> 16);
      const Q = bits(B * T * NH * HD, 200 + i), K = bits(B * T * NKV * HD, 210 + i), Vv = bits(B * T * NKV * HD, 220 + i), DO = bits(B * T * NH * HD, 230 + i, 1);
      const G = { dq: rnd(Q.length, 240 + i), dk: rnd(K.length, 250 + i), dv: rnd(K.length, 260 + i) };
      let cpuOut: Uint16Array | undefined; // onBoth runs the CPU first
      const res = onBoth(["tl_attention_forward_bf16", "tl_attention_backward_bf16"], (be, ops) => {
        const q = put(be, Q), k = put(be, K), v = put(be, Vv), out = be.tensor([Q.length], "bf16"), lse = be.tensor([B * NH * T]);
        ok(be, "attention_forward_bf16", ops.tl_attention_forward_bf16(p(out), p(lse), p(q), p(k), p(v), B, T, NH, NKV, HD));
        // the backward is given the CPU's output on both sides, so only the backward's own differences count
        const outCpu = backends().cpu === be ? out : put(be, cpuOut!);
        const dq = put(be, G.dq), dk = put(be, G.dk), dv = put(be, G.dv);
        ok(be, "attention_backward_bf16", ops.tl_attention_backward_bf16(p(dq), p(dk), p(dv), p(put(be, DO)), p(q), p(k), p(v), p(outCpu), p(lse), B, T, NH, NKV, HD));
        if (backends().cpu === be) cpuOut = out.read() as Uint16Array;
        return { out, lse, dq, dk, dv };
      });
      const what = `bf16 attention B${B} T${T} NH${NH} NKV${NKV} HD${HD}`;
      expectClose({ cpu: { out: res.cpu.out! }, cuda: { out: res.cuda.out! } }, BF16, what);
      // lse comes from fp32 scores of exact bf16 products: fp32 accuracy, not bf16
      expectClose({ cpu: { lse: res.cpu.lse! }, cuda: { lse: res.cuda.lse! } }, F32, what);
      // gradients accumulate (+=) into random values: compare what each side added
      const added = (side: Record<string, Host>, n: "dq" | "dk" | "dv") => (side[n] as Float32Array).map((x, j) => x - G[n][j]!);
      const grads = (side: Record<string, Host>) => ({ dq: added(side, "dq"), dk: added(side, "dk"), dv: added(side, "dv") });
      expectClose({ cpu: grads(res.cpu), cuda: grads(res.cuda) }, BF16, what);
    });
  }

  ptest("attention decode over a KV cache", ["tl_attention_decode"], false, () => {
    for (const [B, NH, NKV, HD, maxT, pos] of [[2, 8, 2, 64, 100, 77], [1, 4, 4, 32, 16, 0], [3, 32, 4, 64, 300, 299]] as number[][]) {
      const Q = rnd(B! * NH! * HD!, 300), K = rnd(B! * maxT! * NKV! * HD!, 301), V = rnd(B! * maxT! * NKV! * HD!, 302);
      const res = onBoth(["tl_attention_decode"], (be, ops) => {
        const o = be.tensor([Q.length]);
        ok(be, "attention_decode", ops.tl_attention_decode(p(o), p(put(be, Q)), p(put(be, K)), p(put(be, V)), B!, NH!, NKV!, HD!, maxT!, pos!));
        return { o };
      });
      expectClose(res, F32, `attention_decode B${B} NH${NH}/${NKV} HD${HD} pos ${pos}`);
    }
  }, true);

  ptest("attention backward is bit-for-bit repeatable on the GPU", [], true, () => {
    const { cuda } = backends();
    const [B, T, NH, NKV, HD] = [2, 130, 8, 2, 64];
    const ops = opsOf(cuda, ["tl_attention_forward", "tl_attention_backward"]);
    const q = put(cuda, rnd(B * T * NH * HD, 1)), k = put(cuda, rnd(B * T * NKV * HD, 2)), v = put(cuda, rnd(B * T * NKV * HD, 3));
    const dout = put(cuda, rnd(B * T * NH * HD, 4)), out = cuda.tensor([B * T * NH * HD]), lse = cuda.tensor([B * NH * T]);
    ok(cuda, "attention_forward", ops.tl_attention_forward(p(out), p(lse), p(q), p(k), p(v), B, T, NH, NKV, HD));
    const run = () => {
      const dq = cuda.tensor([B * T * NH * HD]), dk = cuda.tensor([B * T * NKV * HD]), dv = cuda.tensor([B * T * NKV * HD]);
      ok(cuda, "attention_backward", ops.tl_attention_backward(p(dq), p(dk), p(dv), p(dout), p(q), p(k), p(v), p(out), p(lse), B, T, NH, NKV, HD));
      return [dq.read(), dk.read(), dv.read()].map((a) => Buffer.from((a as Float32Array).buffer).toString("base64"));
    };
    expect(run()).toEqual(run());
  });

  ptest("reductions without atomics are bit-for-bit repeatable (embedding, rmsnorm, dbias, sumsq)", [], true, () => {
    const { cuda } = backends();
    const ops = opsOf(cuda, ["tl_embedding_backward", "tl_rmsnorm_backward", "tl_matmul_backward", "tl_sumsq"]);
    const N = 4096, C = 256, V = 64;
    const rng = mulberry32(77);
    const tok = put(cuda, Int32Array.from({ length: N }, () => Math.floor(rng() * V)));
    const dout = put(cuda, rnd(N * C, 78)), x = put(cuda, rnd(N * C, 79)), w = put(cuda, rnd(C, 80)), r = put(cuda, rnd(N, 81));
    const W = put(cuda, rnd(C * C, 82));
    const run = () => {
      const dwte = cuda.tensor([V * C]), dx = cuda.tensor([N * C]), dw = cuda.tensor([C]), db = cuda.tensor([C]);
      ok(cuda, "embedding_backward", ops.tl_embedding_backward(p(dwte), p(dout), p(tok), N, C, V));
      ok(cuda, "rmsnorm_backward", ops.tl_rmsnorm_backward(p(dx), p(dw), p(dout), p(x), p(w), p(r), N, C));
      ok(cuda, "matmul_backward", ops.tl_matmul_backward(null, null, p(db), p(dout), p(x), p(W), N, C, C));
      const s = new Float64Array(1);
      ok(cuda, "sumsq", ops.tl_sumsq(ptr(s), p(dout), N * C));
      return [dwte.read(), dx.read(), dw.read(), db.read()].map((a) => Buffer.from((a as Float32Array).buffer).toString("base64")).concat(String(s[0]));
    };
    expect(run()).toEqual(run());
  });

  ptest("swiglu forward/backward and add / accumulate / scale", ["tl_swiglu_forward", "tl_swiglu_backward", "tl_add", "tl_accumulate", "tl_scale"], false, () => {
    const N = 100_003;
    const G = rnd(N, 15, 3), U = rnd(N, 16), DO = rnd(N, 17), DG = rnd(N, 18), DU = rnd(N, 19);
    const res = onBoth(["tl_swiglu_forward", "tl_swiglu_backward", "tl_add", "tl_accumulate", "tl_scale"], (be, ops) => {
      const g = put(be, G), u = put(be, U), out = be.tensor([N]), dg = put(be, DG), du = put(be, DU);
      ok(be, "swiglu_forward", ops.tl_swiglu_forward(p(out), p(g), p(u), N));
      ok(be, "swiglu_backward", ops.tl_swiglu_backward(p(dg), p(du), p(put(be, DO)), p(g), p(u), N));
      const sum = be.tensor([N]);
      ok(be, "add", ops.tl_add(p(sum), p(g), p(u), N));
      const acc = put(be, DO);
      ok(be, "accumulate", ops.tl_accumulate(p(acc), p(u), N));
      const sc = put(be, U);
      ok(be, "scale", ops.tl_scale(p(sc), -0.37, N));
      return { out, dg, du, sum, acc, sc };
    });
    expectClose(res, F32, "elementwise");
  });

  ptest("cross-entropy (ignored rows, separate and in-place dlogits) and a bad target", ["tl_crossentropy_forward_backward"], false, () => {
    const N = 13, V = 1000, IGN = -100;
    const rng = mulberry32(23);
    const tgt = Int32Array.from({ length: N }, (_, i) => (i === 2 || i === 7 ? IGN : Math.floor(rng() * V)));
    const L = rnd(N * V, 24, 3);
    const res = onBoth(["tl_crossentropy_forward_backward"], (be, ops) => {
      const logits = put(be, L), t = put(be, tgt), losses = be.tensor([N]), dlogits = be.tensor([N * V]), losses2 = be.tensor([N]);
      ok(be, "crossentropy", ops.tl_crossentropy_forward_backward(p(losses), p(dlogits), p(logits), p(t), N, V, IGN, 1 / 11));
      const inplace = put(be, L);
      ok(be, "crossentropy", ops.tl_crossentropy_forward_backward(p(losses2), p(inplace), p(inplace), p(t), N, V, IGN, 1 / 11));
      return { losses, dlogits, losses2, inplace };
    });
    expectClose(res, F32, "crossentropy");
    expect(Array.from(res.cuda.losses!)).toEqual(Array.from(res.cuda.losses2!));
    const { cpu, cuda } = backends();
    for (const be of [cpu, cuda]) {
      const ops = opsOf(be, ["tl_crossentropy_forward_backward"]);
      const bad = put(be, Int32Array.from([1, V]));
      expect(ops.tl_crossentropy_forward_backward(p(be.tensor([2])), null, p(put(be, L.subarray(0, 2 * V))), p(bad), 2, V, IGN, 1)).toBe(3);
    }
  }, true);

  ptest("sumsq (double, fixed order) and AdamW", ["tl_sumsq", "tl_adamw_step"], false, () => {
    const N = 1_000_003;
    const X = rnd(N, 25);
    const sums = [backends().cpu, backends().cuda].map((be: Backend) => {
      const out = new Float64Array(1);
      ok(be, "sumsq", opsOf(be, ["tl_sumsq"]).tl_sumsq(ptr(out), p(put(be, X)), N));
      return out[0]!;
    });
    // both sum in double; 1e-9 allows for a CPU that squares in fp32 before widening
    expect(Math.abs(sums[1]! - sums[0]!) / sums[0]!).toBeLessThan(1e-9);
    const M = 10_001;
    const P0 = rnd(M, 26), grads = [rnd(M, 27), rnd(M, 28), rnd(M, 29)];
    const res = onBoth(["tl_adamw_step"], (be, ops) => {
      const prm = put(be, P0), m = be.tensor([M]), v = be.tensor([M]);
      grads.forEach((g, i) => ok(be, "adamw", ops.tl_adamw_step(p(prm), p(put(be, g)), p(m), p(v), M, 1e-2, 0.9, 0.95, 1e-8, 0.1, 0.5, i + 1)));
      return { prm, m, v };
    });
    expectClose(res, F32, "adamw");
  }, true);

  ptest("bf16: casts bit for bit, AdamW with its bf16 copy", ["tl_cast_f32_to_bf16", "tl_cast_bf16_to_f32", "tl_adamw_step_bf16"], false, () => {
    const N = 4099;
    const X = rnd(N, 30, 5);
    const casts = onBoth(["tl_cast_f32_to_bf16", "tl_cast_bf16_to_f32"], (be, ops) => {
      const b = be.tensor([N], "bf16"), back = be.tensor([N]);
      ok(be, "cast", ops.tl_cast_f32_to_bf16(p(b), p(put(be, X)), N));
      ok(be, "cast", ops.tl_cast_bf16_to_f32(p(back), p(b), N));
      return { b, back };
    });
    expect(Buffer.from(casts.cuda.b!.buffer).equals(Buffer.from(casts.cpu.b!.buffer))).toBe(true);
    expect(Buffer.from(casts.cuda.back!.buffer).equals(Buffer.from(casts.cpu.back!.buffer))).toBe(true);

    const M = 10_001;
    const P0 = rnd(M, 36), G = rnd(M, 37);
    const res = onBoth(["tl_adamw_step_bf16", "tl_cast_f32_to_bf16"], (be, ops) => {
      const prm = put(be, P0), pb = be.tensor([M], "bf16"), m = be.tensor([M]), v = be.tensor([M]);
      ok(be, "adamw_bf16", ops.tl_adamw_step_bf16(p(prm), p(pb), p(put(be, G)), p(m), p(v), M, 1e-2, 0.9, 0.95, 1e-8, 0.1, 1, 1));
      const again = be.tensor([M], "bf16");
      ok(be, "cast", ops.tl_cast_f32_to_bf16(p(again), p(prm), M));
      return { prm, m, v, pb, again };
    });
    expectClose({ cpu: { prm: res.cpu.prm!, m: res.cpu.m!, v: res.cpu.v! }, cuda: { prm: res.cuda.prm!, m: res.cuda.m!, v: res.cuda.v! } }, F32, "adamw_bf16");
    // the bf16 copy is exactly the rounding of the fp32 master weights it wrote
    expect(Buffer.from(res.cuda.pb!.buffer).equals(Buffer.from(res.cuda.again!.buffer))).toBe(true);
  });

  ptest("bf16 matmul within 1e-2 (its fp32 master gradient within 1e-4)", ["tl_matmul_forward_bf16", "tl_matmul_backward_bf16"], false, () => {
    const bits = (a: Float32Array) => Uint16Array.from(a, (v) => new Uint32Array(new Float32Array([v]).buffer)[0]! >>> 16);
    for (const [n, C, OC] of [[37, 64, 96], [256, 288, 768], [3, 17, 5]] as [number, number, number][]) {
      // truncation is fine for making bf16 inputs: both sides get the same bits
      const XB = bits(rnd(n * C, 31)), WB = bits(rnd(OC * C, 32)), DOB = bits(rnd(n * OC, 33)), DXB = bits(rnd(n * C, 34));
      const DW = rnd(OC * C, 35);
      const res = onBoth(["tl_matmul_forward_bf16", "tl_matmul_backward_bf16"], (be, ops) => {
        const x = put(be, XB, [n, C]), w = put(be, WB, [OC, C]), out = be.tensor([n, OC], "bf16");
        ok(be, "matmul_forward_bf16", ops.tl_matmul_forward_bf16(p(out), p(x), p(w), n, C, OC));
        const dx = put(be, DXB), dw = put(be, DW);
        ok(be, "matmul_backward_bf16", ops.tl_matmul_backward_bf16(p(dx), p(dw), p(put(be, DOB)), p(x), p(w), n, C, OC));
        return { out, dx, dw };
      });
      expectClose({ cpu: { out: res.cpu.out!, dx: res.cpu.dx! }, cuda: { out: res.cuda.out!, dx: res.cuda.dx! } }, BF16, `bf16 matmul ${n}x${C}x${OC}`);
      expectClose({ cpu: { dw: res.cpu.dw! }, cuda: { dw: res.cuda.dw! } }, F32, `bf16 matmul ${n}x${C}x${OC}`);
    }
  });

  ptest("bf16 matmul with fp32 results (the model's bf16 mode) within 1e-4", ["tl_matmul_forward_bf16_f32", "tl_matmul_backward_bf16_f32"], false, () => {
    const bits = (a: Float32Array) => Uint16Array.from(a, (v) => new Uint32Array(new Float32Array([v]).buffer)[0]! >>> 16);
    for (const [n, C, OC] of [[37, 64, 96], [256, 288, 768], [3, 17, 5]] as [number, number, number][]) {
      const XB = bits(rnd(n * C, 41)), WB = bits(rnd(OC * C, 42)), DOB = bits(rnd(n * OC, 43));
      const DX = rnd(n * C, 44), DW = rnd(OC * C, 45);
      const res = onBoth(["tl_matmul_forward_bf16_f32", "tl_matmul_backward_bf16_f32"], (be, ops) => {
        const x = put(be, XB, [n, C]), w = put(be, WB, [OC, C]), out = be.tensor([n, OC]);
        ok(be, "matmul_forward_bf16_f32", ops.tl_matmul_forward_bf16_f32(p(out), p(x), p(w), n, C, OC));
        // both gradients accumulate (+=) into random fp32 values; then dinp alone, dweight alone
        const dx = put(be, DX), dw = put(be, DW), dx1 = put(be, DX), dw1 = put(be, DW), g = put(be, DOB);
        ok(be, "matmul_backward_bf16_f32", ops.tl_matmul_backward_bf16_f32(p(dx), p(dw), p(g), p(x), p(w), n, C, OC));
        ok(be, "matmul_backward_bf16_f32", ops.tl_matmul_backward_bf16_f32(p(dx1), null, p(g), p(x), p(w), n, C, OC));
        ok(be, "matmul_backward_bf16_f32", ops.tl_matmul_backward_bf16_f32(null, p(dw1), p(g), p(x), p(w), n, C, OC));
        return { out, dx, dw, dx1, dw1 };
      });
      expectClose(res, F32, `bf16->fp32 matmul ${n}x${C}x${OC}`);
    }
  });

  ptest("matmul with bf16-stored weights (fp32 activations and result)", ["tl_matmul_forward_wbf16"], false, () => {
    const bits = (a: Float32Array) => Uint16Array.from(a, (v) => new Uint32Array(new Float32Array([v]).buffer)[0]! >>> 16);
    for (const [n, C, OC] of [[1, 2048, 300], [4, 288, 768], [37, 64, 96], [3, 17, 5]] as [number, number, number][]) {
      const X = rnd(n * C, 41), WB = bits(rnd(OC * C, 42));
      const res = onBoth(["tl_matmul_forward_wbf16"], (be, ops) => {
        const out = be.tensor([n, OC]);
        ok(be, "matmul_forward_wbf16", ops.tl_matmul_forward_wbf16(p(out), p(put(be, X)), p(put(be, WB, [OC, C])), n, C, OC));
        return { out };
      });
      expectClose(res, F32, `matmul_wbf16 ${n}x${C}x${OC}`);
    }
  });
});
