/** The Linear layer: out = inp @ weight^T (+ bias), and its backward. */
import { ShapeError, fmtShape } from "../errors.ts";
import type { Tensor } from "../tensor.ts";
import * as chk from "./check.ts";

function dims(op: string, inp: Tensor, weight: Tensor): { N: number; C: number; OC: number } {
  if (weight.shape.length !== 2) throw new ShapeError(`${op}: 'weight' must be 2-D (OC, C), got ${fmtShape(weight.shape)}`);
  const [OC, C] = weight.shape as [number, number];
  const ic = chk.lastDim(op, "inp", inp);
  if (ic !== C)
    throw new ShapeError(`${op}: 'inp' ${fmtShape(inp.shape)} has last dim ${ic} but 'weight' ${fmtShape(weight.shape)} expects ${C}`);
  const N = C === 0 ? 0 : inp.numel / C;
  chk.int32Range(op, "N", N);
  return { N, C, OC };
}

/** out (..., OC) = inp (..., C) @ weight (OC, C)^T + bias (OC). */
export function matmulForward(out: Tensor, inp: Tensor, weight: Tensor, bias?: Tensor | null): void {
  const op = "matmul_forward";
  const be = chk.sameBackend(op, { out, inp, weight, bias });
  for (const [n, t] of Object.entries({ out, inp, weight, bias })) chk.dtype(op, n, t, "f32");
  const { N, C, OC } = dims(op, inp, weight);
  chk.shape(op, "out", out, [...inp.shape.slice(0, -1), OC]);
  chk.shape(op, "bias", bias, [OC]);
  if (N === 0 || C === 0 || OC === 0) return;
  be.check(op, be.lib.tl_matmul_forward(out.ptr(op), inp.ptr(op), weight.ptr(op), bias ? bias.ptr(op) : null, N, C, OC));
}

/** dinp += dout @ weight; dweight += dout^T @ inp; dbias += column sums of dout. Any gradient may be null. */
export function matmulBackward(
  grads: { dinp?: Tensor | null; dweight?: Tensor | null; dbias?: Tensor | null },
  dout: Tensor,
  inp: Tensor,
  weight: Tensor,
): void {
  const op = "matmul_backward";
  const { dinp, dweight, dbias } = grads;
  const be = chk.sameBackend(op, { dinp, dweight, dbias, dout, inp, weight });
  for (const [n, t] of Object.entries({ dinp, dweight, dbias, dout, inp, weight })) chk.dtype(op, n, t, "f32");
  const { N, C, OC } = dims(op, inp, weight);
  chk.shape(op, "dout", dout, [...inp.shape.slice(0, -1), OC]);
  chk.shape(op, "dinp", dinp, inp.shape);
  chk.shape(op, "dweight", dweight, weight.shape);
  chk.shape(op, "dbias", dbias, [OC]);
  if (N === 0 || C === 0 || OC === 0) return;
  be.check(
    op,
    be.lib.tl_matmul_backward(
      dinp ? dinp.ptr(op) : null,
      dweight ? dweight.ptr(op) : null,
      dbias ? dbias.ptr(op) : null,
      dout.ptr(op),
      inp.ptr(op),
      weight.ptr(op),
      N,
      C,
      OC,
    ),
  );
}
