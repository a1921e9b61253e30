/** Shape, dtype and backend checks shared by every op wrapper: each failure names the op. */
import { ShapeError, fmtShape } from "../errors.ts";
import type { DType, Tensor } from "../tensor.ts";
import type { Backend } from "../backend.ts";

export type Tensorish = Tensor | null | undefined;

/** All tensors must be on one backend, alive, and of the given dtype; returns that backend. */
export function sameBackend(op: string, named: Record<string, Tensorish>): Backend {
  let backend: Backend | undefined;
  let first = "";
  for (const [name, t] of Object.entries(named)) {
    if (t === null || t === undefined) continue;
    if (!t.buffer.alive) throw new ShapeError(`${op}: '${name}' ${fmtShape(t.shape)} belongs to a freed buffer`);
    if (!backend) {
      backend = t.backend;
      first = name;
    } else if (t.backend !== backend)
      throw new ShapeError(`${op}: '${name}' is on another backend (${t.backend.kind}) than '${first}' (${backend.kind})`);
  }
  if (!backend) throw new ShapeError(`${op}: no tensors given`);
  return backend;
}

export function dtype(op: string, name: string, t: Tensorish, want: DType): void {
  if (t && t.dtype !== want) throw new ShapeError(`${op}: '${name}' must be ${want}, got ${t.dtype} ${fmtShape(t.shape)}`);
}

/** Checks t's shape; -1 in `want` matches any size. */
export function shape(op: string, name: string, t: Tensorish, want: readonly number[]): void {
  if (!t) return;
  const ok = t.shape.length === want.length && want.every((d, i) => d === -1 || d === t.shape[i]);
  if (!ok) throw new ShapeError(`${op}: '${name}' must have shape ${fmtShape(want.map((d) => (d === -1 ? "*" : d)) as unknown as number[])}, got ${fmtShape(t.shape)}`);
}

/** Checks that t holds exactly n elements (any shape). */
export function numel(op: string, name: string, t: Tensorish, n: number, why: string): void {
  if (t && t.numel !== n) throw new ShapeError(`${op}: '${name}' ${fmtShape(t.shape)} has ${t.numel} elements, expected ${n} (${why})`);
}

/** Last dimension of t, which must exist. */
export function lastDim(op: string, name: string, t: Tensor): number {
  const d = t.shape[t.shape.length - 1];
  if (d === undefined) throw new ShapeError(`${op}: '${name}' must have at least one dimension, got a scalar`);
  return d;
}

export function positiveInt(op: string, name: string, v: number): void {
  if (!Number.isInteger(v) || v <= 0) throw new ShapeError(`${op}: '${name}' must be a positive integer, got ${v}`);
}

export function int32Range(op: string, name: string, v: number): void {
  if (v > 0x7fffffff) throw new ShapeError(`${op}: '${name}' = ${v} exceeds the kernels' int32 range`);
}
