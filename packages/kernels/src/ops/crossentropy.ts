/** Softmax cross-entropy over the last dimension, fused with its backward. */
import { ShapeError, fmtShape } from "../errors.ts";
import type { Tensor } from "../tensor.ts";
import * as chk from "./check.ts";
import { checkTokenIds } from "./embedding.ts";

export interface CrossEntropyOptions {
  /** Rows whose target equals this get loss 0 and gradient 0 (PyTorch's default, -100). */
  ignoreIndex?: number;
  /** dlogits = (softmax - onehot) * gradScale; 1/(number of counted rows) gives a mean loss's gradient. */
  gradScale?: number;
}

/**
 * losses (...) = -log softmax(logits)[target] per row; when dlogits is given it is OVERWRITTEN
 * (not accumulated) with (softmax - onehot(target)) * gradScale, and may be logits itself.
 * logits (..., V) f32, targets (...) i32.
 */
export function crossEntropy(losses: Tensor, dlogits: Tensor | null, logits: Tensor, targets: Tensor, opts: CrossEntropyOptions = {}): void {
  const op = "crossentropy";
  const ignoreIndex = opts.ignoreIndex ?? -100;
  const gradScale = opts.gradScale ?? 1;
  const be = chk.sameBackend(op, { losses, dlogits, logits, targets });
  for (const [n, t] of Object.entries({ losses, dlogits, logits })) chk.dtype(op, n, t, "f32");
  chk.dtype(op, "targets", targets, "i32");
  const V = chk.lastDim(op, "logits", logits);
  const rows = logits.shape.slice(0, -1);
  chk.shape(op, "targets", targets, rows);
  chk.shape(op, "losses", losses, rows);
  chk.shape(op, "dlogits", dlogits, logits.shape);
  if (!Number.isInteger(ignoreIndex) || ignoreIndex < -0x80000000 || ignoreIndex > 0x7fffffff)
    throw new ShapeError(`${op}: ignoreIndex must be an int32, got ${ignoreIndex}`);
  if (typeof gradScale !== "number" || !Number.isFinite(gradScale)) throw new ShapeError(`${op}: gradScale must be finite, got ${gradScale}`);
  if (overlaps(losses, logits) || (dlogits && overlaps(losses, dlogits)))
    throw new ShapeError(`${op}: 'losses' ${fmtShape(losses.shape)} overlaps the logits or their gradient`);
  if (dlogits && overlaps(dlogits, logits) && dlogits.byteOffset !== logits.byteOffset)
    throw new ShapeError(`${op}: 'dlogits' may be 'logits' itself but must not partially overlap it`);
  const N = targets.numel;
  chk.int32Range(op, "N", N);
  chk.int32Range(op, "V", V);
  if (N === 0) return;
  if (V === 0) throw new ShapeError(`${op}: 'logits' ${fmtShape(logits.shape)} has no classes`);
  checkTokenIds(op, "targets", targets, V, ignoreIndex);
  be.check(op, be.lib.tl_crossentropy_forward_backward(losses.ptr(op), dlogits ? dlogits.ptr(op) : null, logits.ptr(op), targets.ptr(op), N, V, ignoreIndex, gradScale));
}

function overlaps(a: Tensor, b: Tensor): boolean {
  return a.buffer === b.buffer && a.byteOffset < b.byteOffset + b.bytes && b.byteOffset < a.byteOffset + a.bytes;
}
