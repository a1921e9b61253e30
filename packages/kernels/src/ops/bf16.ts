/**
 * bf16 mixed precision: casts, the bf16 Linear layer (fp32 accumulation, fp32 master weight
 * gradient) and AdamW that keeps fp32 master weights and refreshes their bf16 copy. bf16 tensors
 * hold raw bf16 bits (dtype "bf16", read() gives a Uint16Array); `bf16ToNumber` decodes one.
 */
import { ShapeError, fmtShape } from "../errors.ts";
import type { Tensor } from "../tensor.ts";
import * as chk from "./check.ts";

/** Rounds each fp32 of `inp` to the nearest bf16 (ties to even) into `out` (same element count). */
export function castF32ToBf16(out: Tensor, inp: Tensor): void {
  const op = "cast_f32_to_bf16";
  const be = chk.sameBackend(op, { out, inp });
  chk.dtype(op, "out", out, "bf16");
  chk.dtype(op, "inp", inp, "f32");
  chk.numel(op, "out", out, inp.numel, "one output per input");
  if (inp.numel === 0) return;
  be.check(op, be.lib.tl_cast_f32_to_bf16(out.ptr(op), inp.ptr(op), inp.numel));
}

/** Widens each bf16 of `inp` to fp32 (exact) into `out` (same element count). */
export function castBf16ToF32(out: Tensor, inp: Tensor): void {
  const op = "cast_bf16_to_f32";
  const be = chk.sameBackend(op, { out, inp });
  chk.dtype(op, "out", out, "f32");
  chk.dtype(op, "inp", inp, "bf16");
  chk.numel(op, "out", out, inp.numel, "one output per input");
  if (inp.numel === 0) return;
  be.check(op, be.lib.tl_cast_bf16_to_f32(out.ptr(op), inp.ptr(op), inp.numel));
}

function dims(op: string, inp: Tensor, weight: Tensor): { N: number; C: number; OC: number } {
  if (weight.shape.length !== 2) throw new ShapeError(`${op}: 'weight' must be 2-D (OC, C), got ${fmtShape(weight.shape)}`);
  const [OC, C] = weight.shape as [number, number];
  const ic = chk.lastDim(op, "inp", inp);
  if (ic !== C)
    throw new ShapeError(`${op}: 'inp' ${fmtShape(inp.shape)} has last dim ${ic} but 'weight' ${fmtShape(weight.shape)} expects ${C}`);
  const N = C === 0 ? 0 : inp.numel / C;
  chk.int32Range(op, "N", N);
  chk.int32Range(op, "C", C);
  chk.int32Range(op, "OC", OC);
  return { N, C, OC };
}

/**
 * out (..., OC) = inp (..., C) bf16 @ weight (OC, C)^T bf16, accumulated in fp32. `out` decides the
 * result type: bf16 (rounded once) or f32 (the fp32 accumulator as is, what the model's bf16 mode uses).
 */
export function matmulForwardBf16(out: Tensor, inp: Tensor, weight: Tensor): void {
  const op = "matmul_forward_bf16";
  const be = chk.sameBackend(op, { out, inp, weight });
  for (const [n, t] of Object.entries({ inp, weight })) chk.dtype(op, n, t, "bf16");
  if (out.dtype !== "bf16" && out.dtype !== "f32") throw new ShapeError(`${op}: 'out' must be bf16 or f32, got ${out.dtype} ${fmtShape(out.shape)}`);
  const { N, C, OC } = dims(op, inp, weight);
  chk.shape(op, "out", out, [...inp.shape.slice(0, -1), OC]);
  if (N === 0 || C === 0 || OC === 0) return;
  if (out.dtype === "f32") be.check(op, be.lib.tl_matmul_forward_bf16_f32(out.ptr(op), inp.ptr(op), weight.ptr(op), N, C, OC));
  else be.check(op, be.lib.tl_matmul_forward_bf16(out.ptr(op), inp.ptr(op), weight.ptr(op), N, C, OC));
}

/**
 * dinp += dout @ weight; dweight (fp32 master gradient) += dout^T @ inp. dout, inp, weight are
 * bf16. `dinp` is bf16 (dinp = bf16(dinp + ...)) or f32 (plain fp32 accumulation). Either gradient may be null.
 */
export function matmulBackwardBf16(
  grads: { dinp?: Tensor | null; dweight?: Tensor | null },
  dout: Tensor,
  inp: Tensor,
  weight: Tensor,
): void {
  const op = "matmul_backward_bf16";
  const { dinp, dweight } = grads;
  const be = chk.sameBackend(op, { dinp, dweight, dout, inp, weight });
  for (const [n, t] of Object.entries({ dout, inp, weight })) chk.dtype(op, n, t, "bf16");
  if (dinp && dinp.dtype !== "bf16" && dinp.dtype !== "f32") throw new ShapeError(`${op}: 'dinp' must be bf16 or f32, got ${dinp.dtype} ${fmtShape(dinp.shape)}`);
  chk.dtype(op, "dweight", dweight, "f32");
  const { N, C, OC } = dims(op, inp, weight);
  chk.shape(op, "dout", dout, [...inp.shape.slice(0, -1), OC]);
  chk.shape(op, "dinp", dinp, inp.shape);
  chk.shape(op, "dweight", dweight, weight.shape);
  if (N === 0 || C === 0 || OC === 0) return;
  const fn = dinp && dinp.dtype === "f32" ? be.lib.tl_matmul_backward_bf16_f32 : be.lib.tl_matmul_backward_bf16;
  be.check(op, fn(dinp ? dinp.ptr(op) : null, dweight ? dweight.ptr(op) : null, dout.ptr(op), inp.ptr(op), weight.ptr(op), N, C, OC));
}

/**
 * The bf16 Linear backward from an fp32 output gradient (the model's bf16 mode): dout is rounded
 * into `scratch` (bf16, at least dout.numel elements; overwritten), then matmulBackwardBf16.
 */
export function matmulBackwardBf16FromF32(
  grads: { dinp?: Tensor | null; dweight?: Tensor | null },
  dout: Tensor,
  inp: Tensor,
  weight: Tensor,
  scratch: Tensor,
): void {
  const op = "matmul_backward_bf16";
  chk.dtype(op, "scratch", scratch, "bf16");
  if (scratch.numel < dout.numel)
    throw new ShapeError(`${op}: 'scratch' ${fmtShape(scratch.shape)} holds fewer than the ${dout.numel} elements of 'dout' ${fmtShape(dout.shape)}`);
  const db = scratch.view([scratch.numel]).rows(0, dout.numel).view(dout.shape);
  castF32ToBf16(db, dout);
  matmulBackwardBf16(grads, db, inp, weight);
}

export interface AdamWBf16Options {
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
  /** Multiplies the gradient first (e.g. the clipping factor); default 1. */
  gradScale?: number;
  /** The step number, >= 1 (bias correction). */
  step: number;
}

/** One AdamW step on the fp32 master weights `param`, then `paramBf16` = bf16(param). All fp32 but paramBf16. */
export function adamwStepBf16(param: Tensor, paramBf16: Tensor, grad: Tensor, m: Tensor, v: Tensor, o: AdamWBf16Options): void {
  const op = "adamw_step_bf16";
  const be = chk.sameBackend(op, { param, paramBf16, grad, m, v });
  for (const [n, t] of Object.entries({ param, grad, m, v })) chk.dtype(op, n, t, "f32");
  chk.dtype(op, "paramBf16", paramBf16, "bf16");
  for (const [n, t] of Object.entries({ paramBf16, grad, m, v })) chk.numel(op, n, t, param.numel, "one per parameter");
  if (!Number.isInteger(o.step) || o.step < 1 || o.step > 0x7fffffff) throw new ShapeError(`${op}: 'step' must be an integer >= 1, got ${o.step}`);
  for (const k of ["lr", "beta1", "beta2", "eps", "weightDecay"] as const)
    if (!Number.isFinite(o[k])) throw new ShapeError(`${op}: '${k}' must be a finite number, got ${o[k]}`);
  if (!(o.beta1 >= 0 && o.beta1 < 1 && o.beta2 >= 0 && o.beta2 < 1))
    throw new ShapeError(`${op}: betas must lie in [0, 1), got ${o.beta1}, ${o.beta2}`);
  const gradScale = o.gradScale ?? 1;
  if (!Number.isFinite(gradScale)) throw new ShapeError(`${op}: 'gradScale' must be finite, got ${gradScale}`);
  if (param.numel === 0) return;
  be.check(
    op,
    be.lib.tl_adamw_step_bf16(param.ptr(op), paramBf16.ptr(op), grad.ptr(op), m.ptr(op), v.ptr(op), param.numel, o.lr, o.beta1, o.beta2, o.eps, o.weightDecay, gradScale, o.step),
  );
}

/** The number a raw bf16 bit pattern stands for. */
export function bf16ToNumber(bits: number): number {
  const u = new Uint32Array([(bits & 0xffff) << 16]);
  return new Float32Array(u.buffer)[0]!;
}

/** Round-to-nearest-even bf16 bits of a number (as fp32 first), matching the kernels. */
export function numberToBf16(x: number): number {
  const f = new Float32Array([x]);
  const u = new Uint32Array(f.buffer)[0]!;
  if ((u & 0x7fffffff) > 0x7f800000) return 0x7fff;
  return ((u + 0x7fff + ((u >>> 16) & 1)) >>> 16) & 0xffff;
}

/**
 * How a model computes: "fp32" everywhere, or "bf16" mixed precision (fp32 master weights,
 * gradients and optimizer state; bf16 copies of the Linear weights and bf16 matmul inputs; fp32
 * accumulation; norms, RoPE, softmax, SwiGLU and the loss in fp32).
 */
export type Precision = "fp32" | "bf16";
export const PRECISIONS: readonly Precision[] = ["fp32", "bf16"];

/** bf16 on a GPU (tensor cores, as TinyLlama trains), fp32 on the CPU. */
export function defaultPrecision(kind: "cpu" | "cuda"): Precision {
  return kind === "cuda" ? "bf16" : "fp32";
}

/** `value` as a Precision, or a ShapeError naming `who` and the accepted values. */
export function checkPrecision(who: string, value: unknown): Precision {
  if (value === "fp32" || value === "bf16") return value;
  throw new ShapeError(`${who}: precision must be "fp32" or "bf16", got ${typeof value === "string" ? `"${value}"` : String(value)}`);
}
