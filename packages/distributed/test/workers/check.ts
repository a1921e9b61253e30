/** Tiny assertion helpers for workers run under mpirun (bun:test's expect is not available there). */
export function check(cond: boolean, what: string): void {
  if (!cond) throw new Error(`check failed: ${what}`);
}

export function sameBits(a: Float32Array, b: Float32Array, what: string): void {
  check(a.length === b.length, `${what}: lengths ${a.length} vs ${b.length}`);
  for (let i = 0; i < a.length; i++)
    if (!Object.is(a[i], b[i])) throw new Error(`check failed: ${what}: element ${i} is ${a[i]} but expected ${b[i]}`);
}

/** ‖a−b‖/‖b‖ in float64. */
export function rel(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let num = 0, den = 0;
  for (let i = 0; i < a.length; i++) {
    num += (a[i]! - b[i]!) ** 2;
    den += b[i]! ** 2;
  }
  return den === 0 ? Math.sqrt(num) : Math.sqrt(num / den);
}

export function throws(f: () => void, pattern: RegExp, what: string): void {
  try {
    f();
  } catch (e) {
    const msg = (e as Error).message;
    if (!pattern.test(msg)) throw new Error(`check failed: ${what}: threw '${msg}', expected ${pattern}`);
    return;
  }
  throw new Error(`check failed: ${what}: did not throw`);
}
