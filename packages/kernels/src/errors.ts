/** Thrown when TypeScript rejects a call before it reaches C: wrong shape, dtype, length or a freed buffer. */
export class ShapeError extends Error {
  override name = "ShapeError";
}

/** Thrown when a kernel returned a non-zero ABI error code. */
export class KernelError extends Error {
  override name = "KernelError";
  constructor(
    readonly op: string,
    readonly code: number,
    detail: string,
  ) {
    super(`${op}: ${detail}`);
  }
}

export function fmtShape(shape: readonly number[]): string {
  return `[${shape.join(", ")}]`;
}
