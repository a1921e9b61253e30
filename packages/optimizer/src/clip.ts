/** Global gradient norm and PyTorch's clip_grad_norm_ factor. */
import { ShapeError, sumsq, type Arena } from "@tinyllama/kernels";

/** Throws unless every tensor of the arena is f32 (the flat fp32 view would misread anything else). */
export function requireF32(op: string, arena: Arena): void {
  for (const s of arena.specs)
    if ((s.dtype ?? "f32") !== "f32") throw new ShapeError(`${op}: tensor '${s.name}' is ${s.dtype}; only f32 arenas are supported`);
}

/**
 * The global L2 norm of every gradient in the arena: sqrt of one fixed-order float64 sum of squares
 * over the flat memory (the 64-byte padding between tensors holds zeros and adds nothing).
 */
export function gradNorm(grads: Arena): number {
  requireF32("gradNorm", grads);
  if (grads.buffer.bytes === 0) return 0;
  return Math.sqrt(sumsq(grads.flat()));
}

/**
 * torch.nn.utils.clip_grad_norm_'s factor: min(1, maxNorm / (norm + 1e-6)). Pass it to
 * `AdamW.step(lr, gradScale)`; the kernel multiplies each gradient by it on the fly. As in PyTorch
 * an infinite norm gives 0 and a NaN norm gives NaN: check `Number.isFinite(norm)` to skip such steps.
 */
export function clipFactor(norm: number, maxNorm: number): number {
  if (typeof maxNorm !== "number" || !(maxNorm > 0) || !Number.isFinite(maxNorm)) throw new RangeError(`clipFactor: maxNorm must be a finite number > 0, got ${maxNorm}`);
  if (typeof norm !== "number" || norm < 0) throw new RangeError(`clipFactor: norm must be >= 0 (or NaN/Infinity), got ${norm}`);
  return Math.min(1, maxNorm / (norm + 1e-6));
}
