/**
 * GPU kernel benchmark (tools/gpu/check.sh runs it): every op at TinyLlama shapes (B=4, T=2048,
 * C=2048, FF=5632, NH=32, NKV=4, HD=64, V=32000), printing time per call and TFLOP/s or TB/s on random inputs (zeros flatter tensor cores),
 * and the ratio to a ceiling measured in the same run: a 2 GiB device-to-device copy for
 * memory-bound kernels, the best large matmul (fp32 or bf16, same precision) for compute-bound
 * ones; then one TinyLlama layer forward + backward composed from the ops, projected to a full
 * 22-layer step. `--quick` uses fewer iterations.
 *
 *   bun tools/gpu/bench.ts [--quick]
 */
import { ptr } from "bun:ffi";
import { existsSync } from "node:fs";
import { Backend, openBackend, type Tensor } from "@tinyllama/kernels";
import { mulberry32, randn } from "@tinyllama/testing";
import { buildEmulatedCudaLibrary } from "../../test/cuda/emu.ts";
import { gpuReason, opsOf, put, setNativeEnv, type AbiName } from "../../test/cuda/harness.ts";

// TINYLLAMA_BENCH_EMU=1: tiny shapes on the CPU CUDA emulator, to check this script itself without a GPU.
const emu = process.env.TINYLLAMA_BENCH_EMU === "1";
if (gpuReason !== null && !emu) {
  console.log(`bench: skipped: no CUDA GPU (${gpuReason})`);
  process.exit(0);
}
const quick = process.argv.includes("--quick") || emu;
const be = emu ? new Backend("cuda", buildEmulatedCudaLibrary()) : openBackend({ device: "cuda" });
console.log(`backend: ${be.buildInfo}`);
const ops = opsOf(be, [
  "tl_copy", "tl_matmul_forward", "tl_matmul_backward", "tl_matmul_forward_bf16", "tl_matmul_backward_bf16",
  "tl_attention_forward", "tl_attention_backward", "tl_rmsnorm_forward", "tl_rmsnorm_backward", "tl_rope_forward",
  "tl_rope_backward", "tl_swiglu_forward", "tl_swiglu_backward", "tl_crossentropy_forward_backward", "tl_adamw_step",
  "tl_adamw_step_bf16", "tl_sumsq", "tl_embedding_forward", "tl_embedding_backward", "tl_add", "tl_cast_f32_to_bf16",
  "tl_rope_tables", "tl_accumulate", "tl_attention_forward_bf16", "tl_attention_backward_bf16",
] as AbiName[]);
const p = (t: Tensor) => t.ptr("bench");
const check = (op: string, rc: number) => be.check(op, rc);

/** Milliseconds per call: warm up, then `iters` calls between two device synchronisations. */
function time(fn: () => void, iters: number): number {
  fn();
  fn();
  be.sync();
  const t0 = performance.now();
  for (let i = 0; i < iters; i++) fn();
  be.sync();
  return (performance.now() - t0) / iters;
}
const IT = (n: number) => (quick ? Math.max(2, Math.ceil(n / 5)) : n);

interface Row { name: string; ms: number; amount: number; unit: "TFLOP/s" | "TB/s"; ceiling?: number }
const rows: Row[] = [];
function report(r: Row): void {
  rows.push(r);
  const rate = r.amount / (r.ms / 1e3) / 1e12;
  const ratio = r.ceiling && Number.isFinite(r.ceiling) ? `${((rate / r.ceiling) * 100).toFixed(0).padStart(4)}% of ${r.ceiling.toFixed(2)} ${r.unit}` : "";
  console.log(`${r.name.padEnd(44)} ${r.ms.toFixed(3).padStart(9)} ms ${rate.toFixed(2).padStart(8)} ${r.unit.padEnd(7)} ${ratio}`);
}

/** Runs one group of measurements; a failure is printed and the next group still runs. */
function section(fn: () => void): void {
  try {
    fn();
  } catch (e) {
    console.log(`  (failed: ${(e as Error).message.split("\n")[0]})`);
  }
}
/** A ceiling measurement, or NaN (printed) when it fails. */
function ceiling(fn: () => number): number {
  try {
    return fn();
  } catch (e) {
    console.log(`  (ceiling failed: ${(e as Error).message.split("\n")[0]})`);
    return NaN;
  }
}

// Every input is random, never zeros or whatever cudaMalloc returned: tensor cores run measurably faster
// on zeros (KINDS.md: 894 against 788 TFLOP/s for the same bf16 product), which would flatter both the
// ceilings and the kernels. One random block per dtype, copied across each tensor on the device.
const NOISE = emu ? 1 << 12 : 1 << 24;
const noise = {
  f32: put(be, randn(NOISE, mulberry32(1))),
  bf16: put(be, Uint16Array.from(randn(NOISE, mulberry32(2)), (x) => new Uint32Array(new Float32Array([x]).buffer)[0]! >>> 16)),
};
function fill<T extends Tensor>(t: T): T {
  const src = noise[t.dtype === "bf16" ? "bf16" : "f32"], flat = t.view([t.numel]);
  for (let off = 0; off < t.numel; off += NOISE) {
    const c = Math.min(NOISE, t.numel - off);
    be.copy(flat.rows(off, c), c === NOISE ? src : src.rows(0, c));
  }
  return t;
}

// ---- ceilings
const GiB = 1 << 30;
const copyBytes = emu ? 1 << 20 : 2 * GiB;
const bw = ceiling(() => {
  const src = be.tensor([copyBytes / 4]), dst = be.tensor([copyBytes / 4]);
  const copyMs = time(() => check("copy", ops.tl_copy(p(dst), p(src), copyBytes)), IT(10));
  report({ name: `ceiling: copy ${copyBytes >> 20} MiB (read+write)`, ms: copyMs, amount: 2 * copyBytes, unit: "TB/s" });
  src.buffer.free();
  dst.buffer.free();
  return (2 * copyBytes) / (copyMs / 1e3) / 1e12; // read + write
});

const M = emu ? 64 : 8192;
const peak32 = ceiling(() => {
  const A32 = fill(be.tensor([M, M])), B32 = fill(be.tensor([M, M])), C32 = be.tensor([M, M]);
  try {
    const mm32 = time(() => check("mm32", ops.tl_matmul_forward(p(C32), p(A32), p(B32), null, M, M, M)), IT(5));
    report({ name: `ceiling: fp32 matmul ${M}^3${process.env.TINYLLAMA_TF32 === "1" ? " (TF32)" : ""}`, ms: mm32, amount: 2 * M ** 3, unit: "TFLOP/s" });
    return (2 * M ** 3) / (mm32 / 1e3) / 1e12;
  } finally {
    for (const t of [A32, B32, C32]) t.buffer.free();
  }
});
const peak16 = ceiling(() => {
  const A16 = fill(be.tensor([M, M], "bf16")), B16 = fill(be.tensor([M, M], "bf16")), C16 = be.tensor([M, M], "bf16");
  try {
    const mm16 = time(() => check("mm16", ops.tl_matmul_forward_bf16(p(C16), p(A16), p(B16), M, M, M)), IT(20));
    report({ name: `ceiling: bf16 matmul ${M}^3`, ms: mm16, amount: 2 * M ** 3, unit: "TFLOP/s" });
    return (2 * M ** 3) / (mm16 / 1e3) / 1e12;
  } finally {
    for (const t of [A16, B16, C16]) t.buffer.free();
  }
});
console.log("");

// ---- kernels at TinyLlama shapes
const [B, T, C, FF, NH, NKV, HD, V] = emu ? [1, 64, 64, 160, 4, 2, 16, 100] : [4, 2048, 2048, 5632, 32, 4, 64, 32000];
const N = B * T;
const f = (n: number) => fill(be.tensor([n]));
const h = (n: number) => fill(be.tensor([n], "bf16"));

section(() => {
  const x = f(N * C), w = f(FF * C), y = f(N * FF), dx = f(N * C), dw = f(FF * C);
  report({ name: `matmul fwd fp32 ${N}x${C}->${FF}`, ms: time(() => check("mm", ops.tl_matmul_forward(p(y), p(x), p(w), null, N, C, FF)), IT(10)), amount: 2 * N * C * FF, unit: "TFLOP/s", ceiling: peak32 });
  report({ name: `matmul bwd fp32 (dinp+dweight)`, ms: time(() => check("mmb", ops.tl_matmul_backward(p(dx), p(dw), null, p(y), p(x), p(w), N, C, FF)), IT(10)), amount: 4 * N * C * FF, unit: "TFLOP/s", ceiling: peak32 });
  for (const t of [x, w, y, dx, dw]) t.buffer.free();
  const xb = h(N * C), wb = h(FF * C), yb = h(N * FF), dxb = h(N * C), dwf = f(FF * C);
  report({ name: `matmul fwd bf16 ${N}x${C}->${FF}`, ms: time(() => check("mm", ops.tl_matmul_forward_bf16(p(yb), p(xb), p(wb), N, C, FF)), IT(20)), amount: 2 * N * C * FF, unit: "TFLOP/s", ceiling: peak16 });
  report({ name: `matmul bwd bf16 (dinp bf16 + dweight fp32)`, ms: time(() => check("mmb", ops.tl_matmul_backward_bf16(p(dxb), p(dwf), p(yb), p(xb), p(wb), N, C, FF)), IT(20)), amount: 4 * N * C * FF, unit: "TFLOP/s", ceiling: peak16 });
  for (const t of [xb, wb, yb, dxb, dwf]) t.buffer.free();
});
section(() => {
  const q = f(N * NH * HD), k = f(N * NKV * HD), v = f(N * NKV * HD), o = f(N * NH * HD), lse = f(B * NH * T);
  const dq = f(N * NH * HD), dk = f(N * NKV * HD), dv = f(N * NKV * HD);
  const fl = 4 * B * NH * T * T * HD * 0.5; // QK^T and PV, causal half
  report({ name: `attention fwd fp32 B${B} T${T} NH${NH}/${NKV} HD${HD}`, ms: time(() => check("attn", ops.tl_attention_forward(p(o), p(lse), p(q), p(k), p(v), B, T, NH, NKV, HD)), IT(5)), amount: fl, unit: "TFLOP/s", ceiling: peak32 });
  report({ name: `attention bwd fp32 (2.5x fwd flops)`, ms: time(() => check("attnb", ops.tl_attention_backward(p(dq), p(dk), p(dv), p(o), p(q), p(k), p(v), p(o), p(lse), B, T, NH, NKV, HD)), IT(3)), amount: 2.5 * fl, unit: "TFLOP/s", ceiling: peak32 });
  const cos = f(T * HD / 2), sin = f(T * HD / 2);
  check("tables", ops.tl_rope_tables(p(cos), p(sin), T, HD, 10000));
  report({ name: `rope fwd (q)`, ms: time(() => check("rope", ops.tl_rope_forward(p(o), p(q), p(cos), p(sin), B, T, NH, HD, 0, T)), IT(20)), amount: 2 * N * NH * HD * 4, unit: "TB/s", ceiling: bw });
  report({ name: `rope bwd (q)`, ms: time(() => check("ropeb", ops.tl_rope_backward(p(dq), p(o), p(cos), p(sin), B, T, NH, HD, 0, T)), IT(20)), amount: 3 * N * NH * HD * 4, unit: "TB/s", ceiling: bw });
  for (const t of [q, k, v, o, lse, dq, dk, dv, cos, sin]) t.buffer.free();
});
section(() => {
  // Issue 8's target: the tensor-core forward at T=2048 >= 50% of the bf16 matmul ceiling.
  const q = h(N * NH * HD), k = h(N * NKV * HD), v = h(N * NKV * HD), o = h(N * NH * HD), lse = f(B * NH * T);
  const fl = 4 * B * NH * T * T * HD * 0.5;
  const fwd = () => check("attn16", ops.tl_attention_forward_bf16(p(o), p(lse), p(q), p(k), p(v), B, T, NH, NKV, HD));
  report({ name: `attention fwd bf16 mma.sync T${T} HD${HD}`, ms: time(fwd, IT(10)), amount: fl, unit: "TFLOP/s", ceiling: peak16 });
  setNativeEnv("TINYLLAMA_ATTENTION_KERNEL", "wmma"); // the previous kernel, side by side
  try {
    report({ name: `attention fwd bf16 WMMA (previous kernel)`, ms: time(fwd, IT(10)), amount: fl, unit: "TFLOP/s", ceiling: peak16 });
  } finally {
    setNativeEnv("TINYLLAMA_ATTENTION_KERNEL", null);
  }
  const dq = f(N * NH * HD), dk = f(N * NKV * HD), dv = f(N * NKV * HD);
  const bwd = () => check("attn16b", ops.tl_attention_backward_bf16(p(dq), p(dk), p(dv), p(o), p(q), p(k), p(v), p(o), p(lse), B, T, NH, NKV, HD));
  report({ name: `attention bwd bf16 mma.sync (2.5x fwd flops)`, ms: time(bwd, IT(5)), amount: 2.5 * fl, unit: "TFLOP/s", ceiling: peak16 });
  setNativeEnv("TINYLLAMA_ATTENTION_KERNEL", "wmma");
  try {
    report({ name: `attention bwd bf16 WMMA (previous kernels)`, ms: time(bwd, IT(5)), amount: 2.5 * fl, unit: "TFLOP/s", ceiling: peak16 });
  } finally {
    setNativeEnv("TINYLLAMA_ATTENTION_KERNEL", null);
  }
  for (const t of [q, k, v, o, lse, dq, dk, dv]) t.buffer.free();
});
section(() => {
  const x = f(N * C), w = f(C), y = f(N * C), r = f(N), dx = f(N * C), dw = f(C);
  report({ name: `rmsnorm fwd ${N}x${C}`, ms: time(() => check("rms", ops.tl_rmsnorm_forward(p(y), p(r), p(x), p(w), N, C, 1e-5)), IT(20)), amount: 2 * N * C * 4, unit: "TB/s", ceiling: bw });
  report({ name: `rmsnorm bwd (dinp pass + dweight pass)`, ms: time(() => check("rmsb", ops.tl_rmsnorm_backward(p(dx), p(dw), p(y), p(x), p(w), p(r), N, C)), IT(20)), amount: 6 * N * C * 4, unit: "TB/s", ceiling: bw });
  report({ name: `add ${N}x${C}`, ms: time(() => check("add", ops.tl_add(p(y), p(x), p(dx), N * C)), IT(20)), amount: 3 * N * C * 4, unit: "TB/s", ceiling: bw });
  const tok = be.tensor([N], "i32"), wte = f(V * C), dwte = f(V * C);
  be.zero(tok); // valid ids; all 0 is the backward's worst case (one row takes every update)
  report({ name: `embedding fwd`, ms: time(() => check("emb", ops.tl_embedding_forward(p(y), p(tok), p(wte), N, C, V)), IT(20)), amount: 2 * N * C * 4, unit: "TB/s", ceiling: bw });
  report({ name: `embedding bwd (all tokens 0: worst case)`, ms: time(() => check("embb", ops.tl_embedding_backward(p(dwte), p(y), p(tok), N, C, V)), IT(5)), amount: 3 * N * C * 4, unit: "TB/s", ceiling: bw });
  for (const t of [x, w, y, r, dx, dw, tok, wte, dwte]) t.buffer.free();
});
section(() => {
  const g = f(N * FF), u = f(N * FF), o = f(N * FF), dg = f(N * FF), du = f(N * FF);
  report({ name: `swiglu fwd ${N}x${FF}`, ms: time(() => check("sw", ops.tl_swiglu_forward(p(o), p(g), p(u), N * FF)), IT(20)), amount: 3 * N * FF * 4, unit: "TB/s", ceiling: bw });
  report({ name: `swiglu bwd`, ms: time(() => check("swb", ops.tl_swiglu_backward(p(dg), p(du), p(o), p(g), p(u), N * FF)), IT(20)), amount: 7 * N * FF * 4, unit: "TB/s", ceiling: bw });
  for (const t of [g, u, o, dg, du]) t.buffer.free();
});
section(() => {
  const logits = f(N * V), tgt = be.tensor([N], "i32"), losses = f(N);
  be.zero(tgt);
  report({ name: `cross-entropy fwd+bwd ${N}x${V} (in place)`, ms: time(() => check("ce", ops.tl_crossentropy_forward_backward(p(losses), p(logits), p(logits), p(tgt), N, V, -100, 1 / N)), IT(10)), amount: 2 * N * V * 4, unit: "TB/s", ceiling: bw });
  logits.buffer.free();
});
section(() => {
  const P = emu ? 1 << 16 : 256 * 1024 * 1024;
  const prm = f(P), grad = f(P), m = f(P), v = f(P), pb = h(P);
  report({ name: `adamw ${P / (1 << 20)}M params`, ms: time(() => check("adamw", ops.tl_adamw_step(p(prm), p(grad), p(m), p(v), P, 1e-4, 0.9, 0.95, 1e-8, 0.1, 1, 1)), IT(10)), amount: 7 * P * 4, unit: "TB/s", ceiling: bw });
  report({ name: `adamw bf16 ${P / (1 << 20)}M params (+bf16 copy)`, ms: time(() => check("adamwb", ops.tl_adamw_step_bf16(p(prm), p(pb), p(grad), p(m), p(v), P, 1e-4, 0.9, 0.95, 1e-8, 0.1, 1, 1)), IT(10)), amount: (7 * 4 + 2) * P, unit: "TB/s", ceiling: bw });
  const out = new Float64Array(1);
  report({ name: `sumsq ${P / (1 << 20)}M floats (incl. the host copy)`, ms: time(() => check("sumsq", ops.tl_sumsq(ptr(out), p(prm), P)), IT(10)), amount: 4 * P, unit: "TB/s", ceiling: bw });
  report({ name: `cast f32->bf16 ${P / (1 << 20)}M`, ms: time(() => check("cast", ops.tl_cast_f32_to_bf16(p(pb), p(prm), P)), IT(10)), amount: 6 * P, unit: "TB/s", ceiling: bw });
  for (const t of [prm, grad, m, v, pb]) t.buffer.free();
});

// ---- one TinyLlama layer, forward + backward, fp32, composed from the raw ops (a training-step proxy)
section(() => {
  const KV = NKV * HD;
  const x = f(N * C), h = f(N * C), r1 = f(N), r2 = f(N), q = f(N * C), k = f(N * KV), v = f(N * KV), att = f(N * C), lse = f(B * NH * T);
  const x2 = f(N * C), h2 = f(N * C), g = f(N * FF), u = f(N * FF), a = f(N * FF), y = f(N * C);
  const wn1 = f(C), wn2 = f(C), wq = f(C * C), wk = f(KV * C), wv = f(KV * C), wo = f(C * C), wg = f(FF * C), wu = f(FF * C), wd = f(C * FF);
  const grads = [C, C, C * C, KV * C, KV * C, C * C, FF * C, FF * C, C * FF].map((n) => f(n));
  const [dwn1, dwn2, dwq, dwk, dwv, dwo, dwg, dwu, dwd] = grads as [Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor];
  const dy = f(N * C), dx = f(N * C), dh = f(N * C), dq = f(N * C), dk = f(N * KV), dv = f(N * KV), datt = f(N * C), da = f(N * FF), dg = f(N * FF), du = f(N * FF), dh2 = f(N * C), dqr = f(N * C), dkr = f(N * KV);
  const cos = f(T * HD / 2), sin = f(T * HD / 2);
  check("tables", ops.tl_rope_tables(p(cos), p(sin), T, HD, 10000));
  // On the emulator (no cuBLASLt) the matmuls only check their operands' sizes, so the rest of the layer still runs.
  const fits = (t: Tensor, n: number) => {
    if (t.numel !== n) throw new Error(`layer: buffer of ${t.numel} elements where ${n} are needed`);
  };
  const mm = (o: Tensor, i: Tensor, w: Tensor, n: number, ci: number, co: number) => {
    if (emu) {
      fits(o, n * co), fits(i, n * ci), fits(w, co * ci);
      return;
    }
    check("mm", ops.tl_matmul_forward(p(o), p(i), p(w), null, n, ci, co));
  };
  const mmb = (di: Tensor, dw: Tensor, dout: Tensor, i: Tensor, w: Tensor, n: number, ci: number, co: number) => {
    if (emu) {
      fits(di, n * ci), fits(dw, co * ci), fits(dout, n * co), fits(i, n * ci), fits(w, co * ci);
      return;
    }
    check("mmb", ops.tl_matmul_backward(p(di), p(dw), null, p(dout), p(i), p(w), n, ci, co));
  };
  const layer = () => {
    // forward (q, k roped in place: fine for timing)
    check("rms", ops.tl_rmsnorm_forward(p(h), p(r1), p(x), p(wn1), N, C, 1e-5));
    mm(q, h, wq, N, C, C); mm(k, h, wk, N, C, KV); mm(v, h, wv, N, C, KV);
    check("rope", ops.tl_rope_forward(p(q), p(q), p(cos), p(sin), B, T, NH, HD, 0, T));
    check("rope", ops.tl_rope_forward(p(k), p(k), p(cos), p(sin), B, T, NKV, HD, 0, T));
    check("attn", ops.tl_attention_forward(p(att), p(lse), p(q), p(k), p(v), B, T, NH, NKV, HD));
    mm(x2, att, wo, N, C, C);
    check("add", ops.tl_add(p(x2), p(x2), p(x), N * C));
    check("rms", ops.tl_rmsnorm_forward(p(h2), p(r2), p(x2), p(wn2), N, C, 1e-5));
    mm(g, h2, wg, N, C, FF); mm(u, h2, wu, N, C, FF);
    check("sw", ops.tl_swiglu_forward(p(a), p(g), p(u), N * FF));
    mm(y, a, wd, N, FF, C);
    check("add", ops.tl_add(p(y), p(y), p(x2), N * C));
    // backward (dy is the incoming gradient; dx collects the residual stream's gradient)
    mmb(da, dwd, dy, a, wd, N, FF, C);
    check("swb", ops.tl_swiglu_backward(p(dg), p(du), p(da), p(g), p(u), N * FF));
    mmb(dh2, dwg, dg, h2, wg, N, C, FF); mmb(dh2, dwu, du, h2, wu, N, C, FF);
    check("acc", ops.tl_accumulate(p(dx), p(dy), N * C));
    check("rmsb", ops.tl_rmsnorm_backward(p(dx), p(dwn2), p(dh2), p(x2), p(wn2), p(r2), N, C));
    mmb(datt, dwo, dx, att, wo, N, C, C);
    check("attnb", ops.tl_attention_backward(p(dqr), p(dkr), p(dv), p(datt), p(q), p(k), p(v), p(att), p(lse), B, T, NH, NKV, HD));
    check("ropeb", ops.tl_rope_backward(p(dq), p(dqr), p(cos), p(sin), B, T, NH, HD, 0, T));
    check("ropeb", ops.tl_rope_backward(p(dk), p(dkr), p(cos), p(sin), B, T, NKV, HD, 0, T));
    mmb(dh, dwq, dq, h, wq, N, C, C); mmb(dh, dwk, dk, h, wk, N, C, KV); mmb(dh, dwv, dv, h, wv, N, C, KV);
    check("rmsb", ops.tl_rmsnorm_backward(p(dx), p(dwn1), p(dh), p(x), p(wn1), p(r1), N, C));
  };
  const ms = time(layer, IT(5));
  const linear = 2 * N * (2 * C * C + 2 * C * KV + 3 * C * FF);
  const attnFl = 4 * B * NH * T * T * HD * 0.5;
  const flops = 3 * linear + 3.5 * attnFl; // fwd + 2x for backward matmuls; attention bwd counted 2.5x
  report({ name: `one layer fwd+bwd fp32 (${N} tokens)`, ms, amount: flops, unit: "TFLOP/s", ceiling: peak32 });
  const head = 3 * 2 * N * C * V; // LM head fwd + bwd, at the fp32 matmul ceiling
  const stepMs = 22 * ms + (head / (peak32 * 1e12)) * 1e3;
  console.log(`  -> 22 layers + LM head (at the fp32 matmul ceiling): ~${stepMs.toFixed(0)} ms per ${N}-token step, ~${((N / stepMs) * 1e3).toFixed(0)} tokens/s fp32`);
});

console.log("");
if (existsSync("packages/model/src/index.ts"))
  console.log("training step: packages/model exists; its own bench (packages/model/bench) measures a full step on this backend.");
else console.log("training step: skipped (no packages/model in this tree yet)");
