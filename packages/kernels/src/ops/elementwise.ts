/** Residual-stream elementwise ops over whole tensors (any shapes with equal element counts). */
import { ShapeError } from "../errors.ts";
import type { Tensor } from "../tensor.ts";
import * as chk from "./check.ts";

/** out = a + b. out may alias a or b. */
export function add(out: Tensor, a: Tensor, b: Tensor): void {
  const op = "add";
  const be = chk.sameBackend(op, { out, a, b });
  for (const [n, t] of Object.entries({ out, a, b })) chk.dtype(op, n, t, "f32");
  chk.numel(op, "b", b, a.numel, "same element count as 'a'");
  chk.numel(op, "out", out, a.numel, "same element count as 'a'");
  if (a.numel === 0) return;
  be.check(op, be.lib.tl_add(out.ptr(op), a.ptr(op), b.ptr(op), a.numel));
}

/** dst += src (the residual's backward; gradient accumulation). */
export function accumulate(dst: Tensor, src: Tensor): void {
  const op = "accumulate";
  const be = chk.sameBackend(op, { dst, src });
  for (const [n, t] of Object.entries({ dst, src })) chk.dtype(op, n, t, "f32");
  chk.numel(op, "src", src, dst.numel, "same element count as 'dst'");
  if (dst.numel === 0) return;
  be.check(op, be.lib.tl_accumulate(dst.ptr(op), src.ptr(op), dst.numel));
}

/** x *= s. */
export function scale(x: Tensor, s: number): void {
  const op = "scale";
  const be = chk.sameBackend(op, { x });
  chk.dtype(op, "x", x, "f32");
  if (typeof s !== "number" || Number.isNaN(s)) throw new ShapeError(`${op}: 's' must be a number, got ${s}`);
  if (x.numel === 0) return;
  be.check(op, be.lib.tl_scale(x.ptr(op), s, x.numel));
}
