/** RMSNorm over the last dimension: out = inp * rstd * weight, rstd = 1/sqrt(mean(inp^2) + eps). */
import { ShapeError, fmtShape } from "../errors.ts";
import type { Tensor } from "../tensor.ts";
import * as chk from "./check.ts";

function dims(op: string, inp: Tensor, weight: Tensor, rstd: Tensor): { N: number; C: number } {
  const C = chk.lastDim(op, "inp", inp);
  chk.shape(op, "weight", weight, [C]);
  const N = C === 0 ? 0 : inp.numel / C;
  chk.numel(op, "rstd", rstd, N, "one value per row of inp");
  chk.int32Range(op, "N", N);
  return { N, C };
}

/** out (..., C), rstd (N rows, any shape), inp (..., C), weight (C). out may alias inp. */
export function rmsnormForward(out: Tensor, rstd: Tensor, inp: Tensor, weight: Tensor, eps: number): void {
  const op = "rmsnorm_forward";
  const be = chk.sameBackend(op, { out, rstd, inp, weight });
  for (const [n, t] of Object.entries({ out, rstd, inp, weight })) chk.dtype(op, n, t, "f32");
  const { N, C } = dims(op, inp, weight, rstd);
  chk.shape(op, "out", out, inp.shape);
  if (typeof eps !== "number" || !Number.isFinite(eps) || eps < 0)
    throw new ShapeError(`${op}: eps must be a finite number >= 0, got ${eps}`);
  if (N === 0 || C === 0) return;
  be.check(op, be.lib.tl_rmsnorm_forward(out.ptr(op), rstd.ptr(op), inp.ptr(op), weight.ptr(op), N, C, eps));
}

/** dinp (..., C) and dweight (C) accumulate (either may be omitted); rstd is the forward's. */
export function rmsnormBackward(
  grads: { dinp?: Tensor | null; dweight?: Tensor | null },
  dout: Tensor,
  inp: Tensor,
  weight: Tensor,
  rstd: Tensor,
): void {
  const op = "rmsnorm_backward";
  const { dinp, dweight } = grads;
  const be = chk.sameBackend(op, { dinp, dweight, dout, inp, weight, rstd });
  for (const [n, t] of Object.entries({ dinp, dweight, dout, inp, weight, rstd })) chk.dtype(op, n, t, "f32");
  const { N, C } = dims(op, inp, weight, rstd);
  chk.shape(op, "dout", dout, inp.shape);
  chk.shape(op, "dinp", dinp, inp.shape);
  chk.shape(op, "dweight", dweight, [C]);
  if (dinp && dinp.buffer === dout.buffer && dinp.byteOffset === dout.byteOffset)
    throw new ShapeError(`${op}: 'dinp' ${fmtShape(dinp.shape)} must not alias 'dout' (dinp accumulates while dout is read)`);
  if (N === 0 || C === 0 || (!dinp && !dweight)) return;
  be.check(
    op,
    be.lib.tl_rmsnorm_backward(dinp ? dinp.ptr(op) : null, dweight ? dweight.ptr(op) : null, dout.ptr(op), inp.ptr(op), weight.ptr(op), rstd.ptr(op), N, C),
  );
}
