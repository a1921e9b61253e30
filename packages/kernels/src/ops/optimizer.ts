/** Optimizer ops over flat parameter ranges: the sum of squares (for the global gradient norm) and the fused AdamW step. */
import { ptr as addressOf } from "bun:ffi";
import { ShapeError, fmtShape } from "../errors.ts";
import type { Tensor } from "../tensor.ts";
import * as chk from "./check.ts";

/** sum(x^2) over every element of x, accumulated in float64 in a fixed order (same result for any thread count). */
export function sumsq(x: Tensor): number {
  const op = "sumsq";
  const be = chk.sameBackend(op, { x });
  chk.dtype(op, "x", x, "f32");
  if (x.numel === 0) return 0;
  const out = new Float64Array(1);
  be.check(op, be.lib.tl_sumsq(addressOf(out), x.ptr(op), x.numel));
  return out[0]!;
}

export interface AdamWStepOptions {
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
  /** Multiplies the gradient before anything else: carries the clipping factor (and 1/accumulation steps). */
  gradScale: number;
  /** The step number t >= 1 used by the bias corrections. */
  step: number;
}

function finiteIn(op: string, name: string, v: number, lo: number, hi: number, hiOpen: boolean): void {
  const ok = typeof v === "number" && Number.isFinite(v) && v >= lo && (hiOpen ? v < hi : v <= hi);
  if (!ok) throw new ShapeError(`${op}: '${name}' must be a finite number in [${lo}, ${hi}${hiOpen ? ")" : "]"}, got ${v}`);
}

/** Byte ranges of two tensors in the same buffer overlap (an in-place AdamW needs four distinct arrays). */
function overlaps(a: Tensor, b: Tensor): boolean {
  return a.buffer === b.buffer && a.byteOffset < b.byteOffset + b.bytes && b.byteOffset < a.byteOffset + a.bytes;
}

/**
 * One AdamW step in place (torch.optim.AdamW semantics, decoupled weight decay applied first):
 * g = grad*gradScale; m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2; p -= lr*wd*p;
 * p -= lr * (m/(1-b1^t)) / (sqrt(v/(1-b2^t)) + eps). param, grad, m, v: f32, one shape.
 */
export function adamwStep(param: Tensor, grad: Tensor, m: Tensor, v: Tensor, o: AdamWStepOptions): void {
  const op = "adamw_step";
  const be = chk.sameBackend(op, { param, grad, m, v });
  const named = { param, grad, m, v };
  for (const [n, t] of Object.entries(named)) {
    chk.dtype(op, n, t, "f32");
    chk.shape(op, n, t, param.shape);
  }
  const list = Object.entries(named);
  for (let i = 0; i < list.length; i++)
    for (let j = i + 1; j < list.length; j++)
      if (overlaps(list[i]![1], list[j]![1]))
        throw new ShapeError(`${op}: '${list[i]![0]}' and '${list[j]![0]}' ${fmtShape(param.shape)} overlap in memory; all four must be distinct`);
  if (o === null || typeof o !== "object") throw new ShapeError(`${op}: options { lr, beta1, beta2, eps, weightDecay, gradScale, step } are required`);
  finiteIn(op, "lr", o.lr, 0, Number.MAX_VALUE, false);
  finiteIn(op, "beta1", o.beta1, 0, 1, true);
  finiteIn(op, "beta2", o.beta2, 0, 1, true);
  finiteIn(op, "eps", o.eps, 0, Number.MAX_VALUE, false);
  finiteIn(op, "weightDecay", o.weightDecay, 0, Number.MAX_VALUE, false);
  finiteIn(op, "gradScale", o.gradScale, -Number.MAX_VALUE, Number.MAX_VALUE, false);
  if (!Number.isInteger(o.step) || o.step < 1 || o.step > 0x7fffffff)
    throw new ShapeError(`${op}: 'step' must be an integer in [1, 2^31), got ${o.step}`);
  if (param.numel === 0) return;
  be.check(
    op,
    be.lib.tl_adamw_step(param.ptr(op), grad.ptr(op), m.ptr(op), v.ptr(op), param.numel, o.lr, o.beta1, o.beta2, o.eps, o.weightDecay, o.gradScale, o.step),
  );
}
