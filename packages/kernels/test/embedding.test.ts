import { describe, expect, test } from "bun:test";
import { ShapeError, embeddingBackward, embeddingForward, getBackend, openBackend, type Backend } from "@tinyllama/kernels";
import { mulberry32, readSafetensors, finiteDiff, randn, relErr } from "@tinyllama/testing";
import { join } from "node:path";

const OPS = () => readSafetensors(join(import.meta.dir, "../../../test/fixtures/ops_layers.safetensors"));
const f32 = (m: ReturnType<typeof OPS>, k: string) => m.get(k)!.data as Float32Array;
const i32 = (m: ReturnType<typeof OPS>, k: string) => m.get(k)!.data as Int32Array;

const BACKENDS: [string, () => Backend][] = [
  ["native", () => getBackend()],
  ["portable x86-64", () => openBackend({ device: "cpu", arch: "x86-64" })],
];

function tokensOf(n: number, V: number, seed: number): Int32Array {
  const rng = mulberry32(seed);
  return Int32Array.from({ length: n }, () => Math.floor(rng() * V));
}

describe("embedding", () => {
  for (const [label, open] of BACKENDS) {
    test(`${label}: forward gathers rows; backward matches finite differences`, () => {
      const be = open();
      const B = 2, T = 5, C = 7, V = 6;
      const tok = tokensOf(B * T, V, 1), wte = randn(V * C, mulberry32(2)), dout = randn(B * T * C, mulberry32(3));
      const tt = be.fromArray(tok, [B, T]), tw = be.fromArray(wte, [V, C]), out = be.tensor([B, T, C]);
      embeddingForward(out, tt, tw);
      const o = out.read();
      for (let n = 0; n < B * T; n++) for (let c = 0; c < C; c++) expect(o[n * C + c]).toBe(wte[tok[n]! * C + c]!);
      const dw = be.fromArray(new Float32Array(V * C).fill(1), [V, C]);
      embeddingBackward(dw, be.fromArray(dout, [B, T, C]), tt);
      const L = (w: Float64Array) => {
        let s = 0;
        for (let n = 0; n < B * T; n++) for (let c = 0; c < C; c++) s += w[tok[n]! * C + c]! * dout[n * C + c]!;
        return s;
      };
      expect(relErr(dw.read().map((v) => v - 1), finiteDiff(L, wte))).toBeLessThan(1e-4);
    }, 300_000);

    test(`${label}: backward with many repeats (C not a multiple of 16) is exact in position order`, () => {
      const be = open();
      const N = 3000, C = 37, V = 5;
      const tok = tokensOf(N, V, 9), dout = randn(N * C, mulberry32(8));
      const dw = be.tensor([V, C]);
      embeddingBackward(dw, be.fromArray(dout, [N, C]), be.fromArray(tok));
      // sequential float32 sums in position order: the kernel's documented order, so exactly equal
      const want = new Float32Array(V * C);
      for (let n = 0; n < N; n++) for (let c = 0; c < C; c++) want[tok[n]! * C + c] = Math.fround(want[tok[n]! * C + c]! + dout[n * C + c]!);
      expect(dw.read()).toEqual(want);
    }, 300_000);
  }

  test("bit-identical for 1 and 2 threads", () => {
    const be = getBackend();
    const before = be.threads;
    const N = 4096, C = 64, V = 50;
    const tok = be.fromArray(tokensOf(N, V, 4)), dout = be.fromArray(randn(N * C, mulberry32(5)), [N, C]);
    const runs: ArrayBufferView[] = [];
    try {
      for (const th of [1, 2]) {
        be.threads = th;
        const dw = be.tensor([V, C]);
        embeddingBackward(dw, dout, tok);
        runs.push(dw.read());
      }
    } finally {
      be.threads = before;
    }
    expect(Buffer.from(runs[0]!.buffer).equals(Buffer.from(runs[1]!.buffer))).toBe(true);
  }, 300_000);

  test("an out-of-vocabulary id is an Error naming it and its position; nothing is written", () => {
    const be = getBackend();
    const V = 10, C = 4;
    const wte = be.fromArray(randn(V * C, mulberry32(1)), [V, C]);
    const tok = be.fromArray(Int32Array.from([1, 2, 3, 4, 10, 5]), [2, 3]);
    const out = be.tensor([2, 3, C]);
    expect(() => embeddingForward(out, tok, wte)).toThrow(/tokens\[1, 1\] = 10 is outside the vocabulary \[0, 10\)/);
    expect(() => embeddingBackward(be.tensor([V, C]), out, be.fromArray(Int32Array.from([0, -1, 0, 0, 0, 0]), [2, 3]))).toThrow(/tokens\[0, 1\] = -1/);
    // the C kernel checks too, before writing: call it directly
    const rc = be.lib.tl_embedding_forward(out.ptr(), tok.ptr(), wte.ptr(), 6, C, V);
    expect(rc).toBe(3); // TL_ERR_OUT_OF_RANGE
    expect(be.lib.tl_last_error()).toContain("position 4");
    expect(out.read().every((v) => v === 0)).toBe(true);
    const dw = be.tensor([V, C]);
    expect(be.lib.tl_embedding_backward(dw.ptr(), out.ptr(), tok.ptr(), 6, C, V)).toBe(3);
    expect(dw.read().every((v) => v === 0)).toBe(true);
  }, 300_000);

  test("shape misuse throws a ShapeError", () => {
    const be = getBackend();
    const wte = be.tensor([10, 4]);
    expect(() => embeddingForward(be.tensor([2, 3, 5]), be.tensor([2, 3], "i32"), wte)).toThrow(ShapeError);
    expect(() => embeddingForward(be.tensor([2, 3, 4]), be.tensor([2, 3]), wte)).toThrow(/'tokens' must be i32/);
    expect(() => embeddingForward(be.tensor([2, 3, 4]), be.tensor([2, 3], "i32"), be.tensor([40]))).toThrow(/'wte' must be 2-D/);
  }, 300_000);
  test("matches the PyTorch fixture (tools/reference/model_fixtures.py)", () => {
    const be = getBackend(), m = OPS();
    const wte = be.fromArray(f32(m, "embedding.wte"), m.get("embedding.wte")!.shape);
    const tok = be.fromArray(i32(m, "embedding.tokens"), m.get("embedding.tokens")!.shape);
    const out = be.tensor(m.get("embedding.out")!.shape);
    embeddingForward(out, tok, wte);
    expect(relErr(out.read(), f32(m, "embedding.out"))).toBeLessThan(1e-5);
    const dw = be.tensor(wte.shape);
    embeddingBackward(dw, be.fromArray(f32(m, "embedding.dout"), out.shape), tok);
    expect(relErr(dw.read(), f32(m, "embedding.dwte"))).toBeLessThan(1e-4);
  }, 300_000);
});
