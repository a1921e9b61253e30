/**
 * Rotary position embedding (rotate-half, as in Hugging Face Llama) and its tables.
 * cos/sin have shape (maxT, HD/2): row t holds cos/sin(t * theta^(-2i/HD)).
 */
import { ShapeError, fmtShape } from "../errors.ts";
import type { Tensor } from "../tensor.ts";
import * as chk from "./check.ts";

function tableDims(op: string, cos: Tensor, sin: Tensor): { maxT: number; H2: number } {
  if (cos.shape.length !== 2) throw new ShapeError(`${op}: 'cos' must be 2-D (maxT, HD/2), got ${fmtShape(cos.shape)}`);
  if (sin.shape.length !== cos.shape.length || sin.shape.some((d, i) => d !== cos.shape[i]))
    throw new ShapeError(`${op}: 'sin' ${fmtShape(sin.shape)} must have the same shape as 'cos' ${fmtShape(cos.shape)}`);
  const [maxT, H2] = cos.shape as [number, number];
  return { maxT, H2 };
}

/** Fills cos, sin (maxT, HD/2) for base `theta` (10000 in Llama). */
export function ropeTables(cos: Tensor, sin: Tensor, theta: number): void {
  const op = "rope_tables";
  const be = chk.sameBackend(op, { cos, sin });
  chk.dtype(op, "cos", cos, "f32");
  chk.dtype(op, "sin", sin, "f32");
  const { maxT, H2 } = tableDims(op, cos, sin);
  chk.positiveInt(op, "maxT (cos.shape[0])", maxT);
  chk.positiveInt(op, "HD/2 (cos.shape[1])", H2);
  chk.int32Range(op, "maxT", maxT);
  chk.int32Range(op, "HD", 2 * H2);
  if (!(typeof theta === "number" && Number.isFinite(theta) && theta > 0))
    throw new ShapeError(`${op}: 'theta' must be a positive finite number, got ${theta}`);
  be.check(op, be.lib.tl_rope_tables(cos.ptr(op), sin.ptr(op), maxT, 2 * H2, theta));
}

function dims(op: string, x: Tensor, xname: string, cos: Tensor, sin: Tensor, pos0: number) {
  if (x.shape.length !== 4) throw new ShapeError(`${op}: '${xname}' must be 4-D (B, T, NH, HD), got ${fmtShape(x.shape)}`);
  const [B, T, NH, HD] = x.shape as [number, number, number, number];
  const { maxT, H2 } = tableDims(op, cos, sin);
  if (HD % 2 !== 0) throw new ShapeError(`${op}: head dim HD=${HD} of '${xname}' ${fmtShape(x.shape)} must be even`);
  if (H2 * 2 !== HD)
    throw new ShapeError(`${op}: tables 'cos' ${fmtShape(cos.shape)} have ${H2} columns but '${xname}' ${fmtShape(x.shape)} needs HD/2 = ${HD / 2}`);
  if (!Number.isInteger(pos0) || pos0 < 0) throw new ShapeError(`${op}: 'pos0' must be a non-negative integer, got ${pos0}`);
  if (pos0 + T > maxT)
    throw new ShapeError(`${op}: positions [${pos0}, ${pos0 + T}) of '${xname}' ${fmtShape(x.shape)} exceed the tables 'cos' ${fmtShape(cos.shape)} (maxT = ${maxT})`);
  chk.int32Range(op, "B*T", B * T);
  return { B, T, NH, HD, maxT };
}

function sameShape(op: string, aName: string, a: Tensor, bName: string, b: Tensor): void {
  if (a.shape.length !== b.shape.length || a.shape.some((d, i) => d !== b.shape[i]))
    throw new ShapeError(`${op}: '${aName}' ${fmtShape(a.shape)} must have the same shape as '${bName}' ${fmtShape(b.shape)}`);
}

/** out = RoPE(inp) for positions pos0 .. pos0+T-1. out (B,T,NH,HD) may be inp itself (in place). */
export function ropeForward(out: Tensor, inp: Tensor, cos: Tensor, sin: Tensor, pos0 = 0): void {
  const op = "rope_forward";
  const be = chk.sameBackend(op, { out, inp, cos, sin });
  for (const [n, t] of Object.entries({ out, inp, cos, sin })) chk.dtype(op, n, t, "f32");
  const { B, T, NH, HD, maxT } = dims(op, inp, "inp", cos, sin, pos0);
  sameShape(op, "out", out, "inp", inp);
  if (inp.numel === 0) return;
  const inPlace = out.buffer === inp.buffer && out.byteOffset === inp.byteOffset;
  if (!inPlace && out.buffer === inp.buffer && out.byteOffset < inp.byteOffset + inp.bytes && inp.byteOffset < out.byteOffset + out.bytes)
    throw new ShapeError(`${op}: 'out' ${fmtShape(out.shape)} partly overlaps 'inp' ${fmtShape(inp.shape)}; pass the same tensor for in place, or a separate one`);
  be.check(op, be.lib.tl_rope_forward(out.ptr(op), inp.ptr(op), cos.ptr(op), sin.ptr(op), B, T, NH, HD, pos0, maxT));
}

/** dinp (B,T,NH,HD) += RoPE^T(dout). dinp must not overlap dout. */
export function ropeBackward(dinp: Tensor, dout: Tensor, cos: Tensor, sin: Tensor, pos0 = 0): void {
  const op = "rope_backward";
  const be = chk.sameBackend(op, { dinp, dout, cos, sin });
  for (const [n, t] of Object.entries({ dinp, dout, cos, sin })) chk.dtype(op, n, t, "f32");
  const { B, T, NH, HD, maxT } = dims(op, dout, "dout", cos, sin, pos0);
  sameShape(op, "dinp", dinp, "dout", dout);
  if (dout.numel === 0) return;
  if (dinp.buffer === dout.buffer && dinp.byteOffset < dout.byteOffset + dout.bytes && dout.byteOffset < dinp.byteOffset + dinp.bytes)
    throw new ShapeError(`${op}: 'dinp' ${fmtShape(dinp.shape)} overlaps 'dout' ${fmtShape(dout.shape)}; the backward accumulates, so give it a separate gradient buffer`);
  be.check(op, be.lib.tl_rope_backward(dinp.ptr(op), dout.ptr(op), cos.ptr(op), sin.ptr(op), B, T, NH, HD, pos0, maxT));
}
