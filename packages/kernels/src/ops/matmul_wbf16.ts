/**
 * The Linear layer with bf16-stored weights (inference): fp32 activations times bf16 weights,
 * accumulated and returned in fp32. Widening bf16 is exact, so the result is the fp32 matmul of
 * the bf16-rounded weights, while the weights take half the memory and half the bytes per token.
 */
import { ShapeError, fmtShape } from "../errors.ts";
import type { Tensor } from "../tensor.ts";
import * as chk from "./check.ts";

/** out (..., OC) f32 = inp (..., C) f32 @ float(weight (OC, C) bf16)^T. No bias. */
export function matmulForwardWbf16(out: Tensor, inp: Tensor, weight: Tensor): void {
  const op = "matmul_forward_wbf16";
  const be = chk.sameBackend(op, { out, inp, weight });
  chk.dtype(op, "out", out, "f32");
  chk.dtype(op, "inp", inp, "f32");
  if (weight.dtype !== "bf16")
    throw new ShapeError(`${op}: 'weight' must be bf16 (raw bf16 bits), got ${weight.dtype} ${fmtShape(weight.shape)}; f32 weights go through matmulForward`);
  if (weight.shape.length !== 2) throw new ShapeError(`${op}: 'weight' must be 2-D (OC, C), got ${fmtShape(weight.shape)}`);
  const [OC, C] = weight.shape as [number, number];
  const ic = chk.lastDim(op, "inp", inp);
  if (ic !== C)
    throw new ShapeError(`${op}: 'inp' ${fmtShape(inp.shape)} has last dim ${ic} but 'weight' ${fmtShape(weight.shape)} expects ${C}`);
  const N = inp.shape.slice(0, -1).reduce((a, b) => a * b, 1);
  chk.int32Range(op, "N", N);
  chk.int32Range(op, "C", C);
  chk.int32Range(op, "OC", OC);
  chk.shape(op, "out", out, [...inp.shape.slice(0, -1), OC]);
  if (N === 0 || OC === 0) return;
  if (C === 0) {
    be.zero(out); // an empty sum
    return;
  }
  be.check(op, be.lib.tl_matmul_forward_wbf16(out.ptr(op), inp.ptr(op), weight.ptr(op), N, C, OC));
}

