/**
 * Central finite differences in float64, for checking a kernel's backward against a float64
 * re-implementation of its forward on a tiny shape.
 */

/** grad[i] ≈ (f(x + h e_i) − f(x − h e_i)) / 2h. `x` is copied, never modified. */
export function finiteDiff(f: (x: Float64Array) => number, x: ArrayLike<number>, h = 1e-5): Float64Array {
  const xx = Float64Array.from(x);
  const grad = new Float64Array(xx.length);
  for (let i = 0; i < xx.length; i++) {
    const x0 = xx[i]!;
    xx[i] = x0 + h;
    const fp = f(xx);
    xx[i] = x0 - h;
    const fm = f(xx);
    xx[i] = x0;
    grad[i] = (fp - fm) / (2 * h);
  }
  return grad;
}

/** Σ a·b in float64: the scalar loss L = Σ out·dout whose gradient w.r.t. out is dout. */
export function dot(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`dot: lengths differ (${a.length} vs ${b.length})`);
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i]! * b[i]!;
  return s;
}
