import { describe, expect, test } from "bun:test";
import { ShapeError, crossEntropy, getBackend, openBackend, type Backend } from "@tinyllama/kernels";
import { mulberry32, readSafetensors, finiteDiff, randn, relErr } from "@tinyllama/testing";
import { join } from "node:path";

const OPS = () => readSafetensors(join(import.meta.dir, "../../../test/fixtures/ops_layers.safetensors"));
const f32 = (m: ReturnType<typeof OPS>, k: string) => m.get(k)!.data as Float32Array;
const i32 = (m: ReturnType<typeof OPS>, k: string) => m.get(k)!.data as Int32Array;

const BACKENDS: [string, () => Backend][] = [
  ["native", () => getBackend()],
  ["portable x86-64", () => openBackend({ device: "cpu", arch: "x86-64" })],
];

/** float64 per-row losses and (softmax - onehot) * scale. */
function ref(logits: ArrayLike<number>, targets: Int32Array, N: number, V: number, scale: number, ignore = -100) {
  const losses = new Float64Array(N), d = new Float64Array(N * V);
  for (let n = 0; n < N; n++) {
    const t = targets[n]!;
    if (t === ignore) continue;
    let mx = -Infinity;
    for (let v = 0; v < V; v++) mx = Math.max(mx, logits[n * V + v]!);
    let s = 0;
    for (let v = 0; v < V; v++) s += Math.exp(logits[n * V + v]! - mx);
    const lse = mx + Math.log(s);
    losses[n] = lse - logits[n * V + t]!;
    for (let v = 0; v < V; v++) d[n * V + v] = (Math.exp(logits[n * V + v]! - lse) - (v === t ? 1 : 0)) * scale;
  }
  return { losses, d };
}

function targetsOf(N: number, V: number, seed: number, ignoreEvery = 0): Int32Array {
  const rng = mulberry32(seed);
  return Int32Array.from({ length: N }, (_, i) => (ignoreEvery && i % ignoreEvery === 1 ? -100 : Math.floor(rng() * V)));
}

describe("crossentropy", () => {
  for (const [label, open] of BACKENDS) {
    test(`${label}: dlogits matches float64 finite differences of the scaled loss sum`, () => {
      const be = open();
      const N = 4, V = 23, scale = 0.25;
      const x = randn(N * V, mulberry32(1), 2), tg = targetsOf(N, V, 2, 3);
      const losses = be.tensor([N]), dl = be.tensor([N, V]);
      crossEntropy(losses, dl, be.fromArray(x, [N, V]), be.fromArray(tg), { gradScale: scale });
      const L = (l: Float64Array) => scale * ref(l, tg, N, V, 1).losses.reduce((a, b) => a + b, 0);
      expect(relErr(dl.read(), finiteDiff(L, x))).toBeLessThan(1e-4);
      expect(relErr(losses.read(), ref(x, tg, N, V, scale).losses)).toBeLessThan(1e-5);
    }, 300_000);

    test(`${label}: vocab-sized rows, in place, with ignored rows`, () => {
      const be = open();
      for (const [N, V] of [[1, 1], [3, 17], [9, 32000], [33, 515]] as const) {
        const x = randn(N * V, mulberry32(N + V), 3), tg = targetsOf(N, V, V, 4);
        const r = ref(x, tg, N, V, 1 / N);
        const logits = be.fromArray(x, [N, V]), losses = be.tensor([N]);
        crossEntropy(losses, logits, logits, be.fromArray(tg), { gradScale: 1 / N }); // dlogits aliases logits
        expect(relErr(losses.read(), r.losses)).toBeLessThan(1e-5);
        expect(relErr(logits.read(), r.d)).toBeLessThan(1e-5);
        const got = logits.read();
        for (let n = 0; n < N; n++) if (tg[n] === -100) for (let v = 0; v < V; v++) expect(got[n * V + v]).toBe(0);
        // without dlogits only the losses are written
        const l2 = be.tensor([N]);
        crossEntropy(l2, null, be.fromArray(x, [N, V]), be.fromArray(tg));
        expect(relErr(l2.read(), r.losses)).toBeLessThan(1e-5);
      }
    }, 300_000);

    test(`${label}: extreme logits stay finite and exact`, () => {
      const be = open();
      const V = 40, x = new Float32Array(2 * V).fill(-1e4);
      x[3] = 1e4; // row 0: one dominant logit, target elsewhere -> loss 2e4
      x[V + 5] = 50; // row 1: target is the dominant logit -> loss ~0
      const tg = Int32Array.from([7, 5]);
      const losses = be.tensor([2]), dl = be.tensor([2, V]);
      crossEntropy(losses, dl, be.fromArray(x, [2, V]), be.fromArray(tg));
      const l = losses.read(), d = dl.read();
      expect(l[0]).toBe(2e4);
      expect(l[1]).toBe(0);
      expect(d[3]).toBe(1);
      expect(d[7]).toBe(-1);
      expect(d.every(Number.isFinite)).toBe(true);
    }, 300_000);
  }

  test("a NaN logit makes that row's loss and gradient NaN (divergence must not be hidden)", () => {
    for (const be of [getBackend(), openBackend({ device: "cpu", arch: "x86-64" })]) {
      const V = 37, x = randn(2 * V, mulberry32(5));
      x[V + 20] = Number.NaN; // row 1, a non-target class, in the vector body
      const losses = be.tensor([2]), dl = be.tensor([2, V]);
      crossEntropy(losses, dl, be.fromArray(x, [2, V]), be.fromArray(Int32Array.from([3, 4])));
      const l = losses.read(), d = dl.read();
      expect(Number.isFinite(l[0]!)).toBe(true);
      expect(Number.isNaN(l[1]!)).toBe(true);
      expect(Number.isNaN(d[V + 4]!)).toBe(true);
    }
  }, 300_000);

  test("bit-identical for 1 and 2 threads", () => {
    const be = getBackend();
    const before = be.threads;
    const N = 64, V = 1000, x = randn(N * V, mulberry32(7)), tg = targetsOf(N, V, 8, 5);
    const runs: ArrayBufferView[] = [];
    try {
      for (const th of [1, 2]) {
        be.threads = th;
        const logits = be.fromArray(x, [N, V]), losses = be.tensor([N]);
        crossEntropy(losses, logits, logits, be.fromArray(tg), { gradScale: 0.1 });
        runs.push(logits.read(), losses.read());
      }
    } finally {
      be.threads = before;
    }
    expect(Buffer.from(runs[0]!.buffer).equals(Buffer.from(runs[2]!.buffer))).toBe(true);
    expect(Buffer.from(runs[1]!.buffer).equals(Buffer.from(runs[3]!.buffer))).toBe(true);
  }, 300_000);

  test("a target outside [0, V) is an Error naming it; the kernel writes nothing", () => {
    const be = getBackend();
    const N = 3, V = 8;
    const x = randn(N * V, mulberry32(3));
    const logits = be.fromArray(x, [N, V]), losses = be.fromArray(new Float32Array(N).fill(7));
    const bad = be.fromArray(Int32Array.from([1, -100, 8]));
    expect(() => crossEntropy(losses, logits, logits, bad)).toThrow(/targets\[2\] = 8 is outside the vocabulary \[0, 8\)/);
    expect(() => crossEntropy(losses, logits, logits, be.fromArray(Int32Array.from([1, -1, 2])))).toThrow(/targets\[1\] = -1/);
    // -100 is only special when it is the ignore index
    expect(() => crossEntropy(losses, null, logits, bad, { ignoreIndex: -1 })).toThrow(/= -100/);
    expect(be.lib.tl_crossentropy_forward_backward(losses.ptr(), logits.ptr(), logits.ptr(), bad.ptr(), N, V, -100, 1)).toBe(3);
    expect(be.lib.tl_last_error()).toContain("row 2");
    expect(logits.read()).toEqual(x);
    expect(losses.read()).toEqual(new Float32Array(N).fill(7));
  }, 300_000);

  test("shape misuse throws a ShapeError", () => {
    const be = getBackend();
    const logits = be.tensor([2, 3, 10]);
    const tg = be.tensor([2, 3], "i32");
    expect(() => crossEntropy(be.tensor([6]), null, logits, tg)).toThrow(/'losses' must have shape \[2, 3\]/);
    expect(() => crossEntropy(be.tensor([2, 3]), null, logits, be.tensor([2, 4], "i32"))).toThrow(/'targets'/);
    expect(() => crossEntropy(be.tensor([2, 3]), be.tensor([2, 3, 9]), logits, tg)).toThrow(/'dlogits'/);
    expect(() => crossEntropy(be.tensor([2, 3]), null, logits, be.tensor([2, 3]))).toThrow(/'targets' must be i32/);
    expect(() => crossEntropy(logits.view([60]).rows(0, 6).view([2, 3]), null, logits, tg)).toThrow(ShapeError);
  }, 300_000);
  test("matches the PyTorch fixture (tools/reference/model_fixtures.py)", () => {
    const be = getBackend(), m = OPS();
    const [N, V] = m.get("crossentropy.logits")!.shape as [number, number];
    const logits = be.fromArray(f32(m, "crossentropy.logits"), [N, V]), losses = be.tensor([N]);
    crossEntropy(losses, logits, logits, be.fromArray(i32(m, "crossentropy.targets")), { gradScale: 1 / 5 });
    expect(relErr(losses.read(), f32(m, "crossentropy.losses"))).toBeLessThan(1e-5);
    expect(relErr(logits.read(), f32(m, "crossentropy.dlogits"))).toBeLessThan(1e-4);
  }, 300_000);
});
