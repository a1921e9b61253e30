/**
 * Where the time goes: a per-op profile of every kernel call, collected by wrapping the FFI
 * functions while profiling is on (no cost when it is off). Each row: calls, time, share of kernel
 * time and, where the op's FLOPs follow from its shape arguments, achieved GFLOP/s.
 */
import type { KernelSymbols } from "./symbols.ts";

type Args = readonly unknown[];
const n = (a: Args, i: number) => Number(a[i] ?? 0);
const set = (a: Args, i: number) => (a[i] === null || a[i] === undefined || a[i] === 0 ? 0 : 1);

/** FLOPs of one call, from its arguments (the ABI's explicit shapes). */
const FLOPS: Partial<Record<keyof KernelSymbols, (a: Args) => number>> = {
  // out, inp, weight, bias, N, C, OC
  tl_matmul_forward: (a) => 2 * n(a, 4) * n(a, 5) * n(a, 6),
  // dinp, dweight, dbias, dout, inp, weight, N, C, OC: one GEMM per requested gradient
  tl_matmul_backward: (a) => 2 * n(a, 6) * n(a, 7) * n(a, 8) * (set(a, 0) + set(a, 1)),
  // out, lse, q, k, v, B, T, NH, NKV, HD: QK^T and PV over the causal half
  tl_attention_forward: (a) => 2 * n(a, 5) * n(a, 7) * n(a, 6) * n(a, 6) * n(a, 9),
  // dq, dk, dv, dout, q, k, v, out, lse, B, T, NH, NKV, HD: recompute QK^T plus four products
  tl_attention_backward: (a) => 5 * n(a, 9) * n(a, 11) * n(a, 10) * n(a, 10) * n(a, 13),
  // out, inp, weight, N, C, OC
  tl_matmul_forward_wbf16: (a) => 2 * n(a, 3) * n(a, 4) * n(a, 5),
  // bf16 inputs (mixed precision): out, inp, weight, N, C, OC; dinp, dweight, dout, inp, weight, N, C, OC
  tl_matmul_forward_bf16: (a) => 2 * n(a, 3) * n(a, 4) * n(a, 5),
  tl_matmul_forward_bf16_f32: (a) => 2 * n(a, 3) * n(a, 4) * n(a, 5),
  tl_matmul_backward_bf16: (a) => 2 * n(a, 5) * n(a, 6) * n(a, 7) * (set(a, 0) + set(a, 1)),
  tl_matmul_backward_bf16_f32: (a) => 2 * n(a, 5) * n(a, 6) * n(a, 7) * (set(a, 0) + set(a, 1)),
  // the same arguments as the fp32 attention kernels
  tl_attention_forward_bf16: (a) => 2 * n(a, 5) * n(a, 7) * n(a, 6) * n(a, 6) * n(a, 9),
  tl_attention_backward_bf16: (a) => 5 * n(a, 9) * n(a, 11) * n(a, 10) * n(a, 10) * n(a, 13),
  // out, q, k_cache, v_cache, B, NH, NKV, HD, maxT, pos: q.k and p.v over pos+1 keys
  tl_attention_decode: (a) => 4 * n(a, 4) * n(a, 5) * (n(a, 9) + 1) * n(a, 7),
};

/** Bytes one call must move through memory at least (its inputs once, its outputs once), for the
 * memory-bound ops of inference, where GB/s says more than GFLOP/s (decode streams the weights). */
const BYTES: Partial<Record<keyof KernelSymbols, (a: Args) => number>> = {
  // out, inp, weight, bias, N, C, OC
  tl_matmul_forward: (a) => 4 * (n(a, 6) * n(a, 5) + n(a, 4) * n(a, 5) + n(a, 4) * n(a, 6)),
  // out, inp, weight (bf16), N, C, OC
  tl_matmul_forward_wbf16: (a) => 2 * n(a, 5) * n(a, 4) + 4 * (n(a, 3) * n(a, 4) + n(a, 3) * n(a, 5)),
  // the K and V rows 0..pos of every sequence, plus q and out
  tl_attention_decode: (a) => 4 * (2 * n(a, 4) * (n(a, 9) + 1) * n(a, 6) * n(a, 7) + 2 * n(a, 4) * n(a, 5) * n(a, 7)),
  // out, rstd, inp, weight, N, C
  tl_rmsnorm_forward: (a) => 4 * (2 * n(a, 4) * n(a, 5) + n(a, 5)),
  // out, inp, cos, sin, B, T, NH, HD, pos0, maxT
  tl_rope_forward: (a) => 4 * (2 * n(a, 4) * n(a, 5) * n(a, 6) * n(a, 7) + n(a, 5) * n(a, 7)),
  // out, tokens, wte, N, C, V
  tl_embedding_forward: (a) => 8 * n(a, 3) * n(a, 4),
  tl_add: (a) => 12 * n(a, 3),
  tl_swiglu_forward: (a) => 12 * n(a, 3),
  tl_copy: (a) => 2 * n(a, 2),
};

export interface OpStat {
  op: string;
  calls: number;
  seconds: number;
  flops: number;
  bytes: number;
}

export class Profiler {
  readonly stats = new Map<string, OpStat>();
  readonly started = performance.now();

  record(op: string, seconds: number, flops: number, bytes = 0): void {
    const s = this.stats.get(op) ?? { op, calls: 0, seconds: 0, flops: 0, bytes: 0 };
    s.calls++;
    s.seconds += seconds;
    s.flops += flops;
    s.bytes += bytes;
    this.stats.set(op, s);
  }

  /** A markdown table; `per` divides calls and times (e.g. the number of profiled steps). */
  table(per = 1, wallSeconds?: number): string {
    const rows = [...this.stats.values()].sort((a, b) => b.seconds - a.seconds);
    const kernel = rows.reduce((t, r) => t + r.seconds, 0);
    // GB/s: the bytes an op must move at least, over its time (memory-bound ops: decode matvecs, attention decode).
    const lines = ["| op | calls | ms | share | GFLOP/s | GB/s |", "|---|---:|---:|---:|---:|---:|"];
    const rate = (x: number, s: number): string => (x > 0 && s > 0 ? (x / s / 1e9).toFixed(1) : "-");
    for (const r of rows)
      lines.push(`| ${r.op.replace(/^tl_/, "")} | ${(r.calls / per).toFixed(0)} | ${((r.seconds / per) * 1000).toFixed(2)} | ${((100 * r.seconds) / kernel).toFixed(1)}% | ${rate(r.flops, r.seconds)} | ${rate(r.bytes, r.seconds)} |`);
    const sum = (k: "calls" | "flops" | "bytes"): number => rows.reduce((t, r) => t + r[k], 0);
    lines.push(`| all kernels | ${(sum("calls") / per).toFixed(0)} | ${((kernel / per) * 1000).toFixed(2)} | 100% | ${(sum("flops") / kernel / 1e9).toFixed(1)} | ${rate(sum("bytes"), kernel)} |`);
    if (wallSeconds !== undefined)
      lines.push(`\nkernels ${((kernel / per) * 1000).toFixed(1)} ms of ${((wallSeconds / per) * 1000).toFixed(1)} ms per step; the rest (${((100 * (wallSeconds - kernel)) / wallSeconds).toFixed(1)}%) is TypeScript, data loading and FFI overhead`);
    return lines.join("\n");
  }
}

/** Wraps every function of `lib` so each call is timed into `profiler`; `sync` makes async backends honest. */
export function profiledSymbols<L extends Record<string, (...args: never[]) => unknown>>(lib: L, profiler: Profiler, sync?: () => void): L {
  const out: Record<string, unknown> = {};
  for (const [name, fn] of Object.entries(lib)) {
    const flops = FLOPS[name as keyof KernelSymbols], bytes = BYTES[name as keyof KernelSymbols];
    const timed = name.startsWith("tl_error") || name === "tl_last_error" || name === "tl_sync";
    out[name] = timed
      ? fn
      : (...args: unknown[]) => {
          const t0 = performance.now();
          const r = (fn as (...a: unknown[]) => unknown)(...args);
          sync?.();
          profiler.record(name, (performance.now() - t0) / 1000, flops ? flops(args) : 0, bytes ? bytes(args) : 0);
          return r;
        };
  }
  return out as L;
}
